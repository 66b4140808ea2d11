"""Load, compile and launch the CUDA C kernels in ``kernels/*.cu`` on ``cuda`` and ``emu``.

    k = cuda.get_kernel("emu", "conv2d.cu", "conv2d_forward")   # or "cuda"
    k(grid, block, (x, w, y, np.int32(n)), shared_mem=0)

- ``cuda``: the file, its ``#include "..."`` files inlined, goes to ``cupy.RawModule`` (NVRTC).
  Launches are asynchronous; ``synchronize("cuda")`` waits, and MICROST_CUDA_SYNC=1 waits and
  checks for errors after every launch.
- ``emu``: the same source, compiled by g++ against ``kernels/emu/cuda_emu.h`` into a shared
  object (cached under $MICROST_CACHE or ~/.cache/microst, in ``emu/``) and called through ctypes.
  Blocks run one at a time; kernels with ``__syncthreads`` or warp functions run one fiber per
  CUDA thread. Extra g++ flags: MICROST_EMU_CXXFLAGS (e.g. "-O0 -g" to step through a kernel in
  gdb); fiber stack size: MICROST_EMU_STACK_KIB (default 128).

Arguments are checked against the kernel's parameter list, parsed from the source: arrays must
be C-contiguous arrays of the device's kind with the parameter's dtype, scalars NumPy scalars of
the parameter's type (a Python int or float is refused: CuPy would pass it as a 64-bit value).
"""
import contextlib
import ctypes
import hashlib
import os
import re
import struct
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

KERNEL_DIR = Path(__file__).resolve().parent.parent / "kernels"
EMU_HEADER_DIR = KERNEL_DIR / "emu"
EMU_HEADER = EMU_HEADER_DIR / "cuda_emu.h"
EMU_RUNTIME = EMU_HEADER_DIR / "emu_runtime.cpp"
_REPO = KERNEL_DIR.parent

MAX_THREADS_PER_BLOCK = 1024
MAX_DYNAMIC_SHARED = 227 * 1024  # an H100 block; above 48 KiB, cuda launches opt in for the kernel
_OPT_IN_SHARED = 48 * 1024

# g++ flags for emu. The kernels are CUDA C, so: no strict aliasing (float4 casts of float
# arrays), wrapping int overflow (as on the GPU), page-by-page stack probes (a big local array
# hits the fiber's guard page instead of jumping over it), no _FORTIFY_SOURCE longjmp checks
# (a stack overflow leaves its fiber by siglongjmp), and no locks around function-local statics
# (launches run one at a time).
EMU_CXXFLAGS = ("-O2", "-std=c++17", "-fPIC", "-shared", "-fvisibility=hidden", "-pthread",
                "-fno-strict-aliasing", "-fwrapv", "-fstack-clash-protection", "-U_FORTIFY_SOURCE",
                "-fno-threadsafe-statics", "-Wno-unknown-pragmas")
# CuPy adds -ftz=true to every NVRTC compile (denormal floats flush to zero); emu sets the
# CPU's flush-to-zero and denormals-are-zero modes while a kernel runs, to match.
CUDA_OPTIONS = ("-std=c++17",)

emu_compiles = 0  # g++ builds of emu modules in this process (the tests check the cache with it)


class CompileError(RuntimeError):
    """A kernel source did not compile (the message holds the compiler's)."""


# --- poisoning and emu scheduling order ----------------------------------------------------------

_state = threading.local()


def _setting(name, default):
    return getattr(_state, name, default)


def poisoning():
    """True inside ``poisoned()`` (in this thread) or when MICROST_POISON=1."""
    return _setting("poison", 0) > 0 or os.environ.get("MICROST_POISON") == "1"


@contextlib.contextmanager
def poisoned():
    """Inside, ``empty`` fills arrays with NaN (floats) or the dtype's maximum (ints), so that a
    kernel that leaves an output element unwritten shows it."""
    _state.poison = _setting("poison", 0) + 1
    try:
        yield
    finally:
        _state.poison -= 1


def empty(device, shape, dtype=np.float32):
    """``xp.empty(shape, dtype)`` for the device, poisoned while poisoning is on."""
    from .device import array_module
    xp = array_module(device)
    a = xp.empty(shape, dtype)
    if poisoning():
        dt = np.dtype(dtype)
        a.fill(np.nan if dt.kind in "fc" else True if dt.kind == "b" else np.iinfo(dt).max)
    return a


_ORDERS = {"forward": 0, "reverse": 1, "random": 2}


@contextlib.contextmanager
def emu_order(order, seed=0):
    """Order in which emu runs the blocks of a grid, and the threads of a block between barriers,
    for the launches of this thread inside the context: "forward" (the default), "reverse" or
    "random" (seeded; each launch draws a new order). A kernel whose result changes with the
    order has a race. MICROST_EMU_ORDER=reverse, random or random:SEED sets it outside."""
    if order not in _ORDERS:
        raise ValueError(f"emu order must be one of {', '.join(_ORDERS)}, got {order!r}")
    saved = _setting("order", None)
    _state.order = (order, int(seed), [0])
    try:
        yield
    finally:
        _state.order = saved


_env_orders = {}  # MICROST_EMU_ORDER value -> (order, seed, [launch count])


def _current_order():
    """(order code, seed for this launch)."""
    setting = _setting("order", None)
    if setting is None:
        env = os.environ.get("MICROST_EMU_ORDER", "forward")
        if env not in _env_orders:
            name, _, seed = env.partition(":")
            if name not in _ORDERS or (seed and not seed.isdigit()):
                raise ValueError(f"MICROST_EMU_ORDER must be forward, reverse, random or random:SEED, got {env!r}")
            _env_orders[env] = (name, int(seed or 0), [0])
        setting = _env_orders[env]
    name, seed, launches = setting
    launches[0] += 1
    return _ORDERS[name], (seed * 0x9E3779B97F4A7C15 + launches[0]) & 0xFFFFFFFFFFFFFFFF


def synchronize(device):
    """Wait for the kernels launched on the device (emu launches are synchronous already)."""
    if device == "cuda":
        import cupy
        cupy.cuda.Device().synchronize()


# --- source: includes, parsing -------------------------------------------------------------------

_INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"')
_PRAGMA_ONCE = re.compile(r"^\s*#\s*pragma\s+once\b")
_COMMENT_OR_LITERAL = re.compile(r'//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'', re.S)
_DIRECTIVE = re.compile(r"^[ \t]*#(?:[^\n]*\\\n)*[^\n]*", re.M)
_DEFINE = re.compile(r"#\s*define\s+(\w+)(.*)", re.S)
_SYNC = re.compile(r"\b(?:__syncthreads\w*|__syncwarp|__shfl\w*_sync|__ballot_sync|__any_sync|__all_sync"
                   r"|__activemask|__reduce_\w+_sync)\b")
_ASM = re.compile(r"\b(?:asm|__asm__|__asm)\b")


def _display(path):
    """The path as error messages and __FILE__ show it: relative to the repository when inside."""
    try:
        return path.relative_to(_REPO).as_posix()
    except ValueError:
        return path.as_posix()


def _inline_includes(path):
    """The source of `path` with its #include "..." files inlined (each file once), with #line
    markers so that compilers and __FILE__/__LINE__ name the original files and lines."""
    seen = {path}
    out = []

    def inline(p):
        name = _display(p)
        out.append(f'#line 1 "{name}"\n')
        for number, line in enumerate(p.read_text().splitlines(), 1):
            m = _INCLUDE.match(line)
            if m:
                included = next((d / m.group(1) for d in (p.parent, KERNEL_DIR) if (d / m.group(1)).is_file()), None)
                if included is None:
                    raise FileNotFoundError(f'{name}:{number}: cannot find the included "{m.group(1)}" '
                                            f"(looked in {_display(p.parent)} and {_display(KERNEL_DIR)})")
                included = included.resolve()
                if included not in seen:
                    seen.add(included)
                    inline(included)
                out.append(f'#line {number + 1} "{name}"\n')
            elif _PRAGMA_ONCE.match(line):
                out.append("\n")  # each file is inlined once already
            else:
                out.append(line + "\n")

    inline(path)
    return "".join(out)


def _blank(source):
    """The source with comments and the insides of literals replaced by spaces (same length and
    lines), so that regular expressions see only code. `"C"` is kept for extern "C"."""
    def blank(m):
        s = m.group()
        if s == '"C"':
            return s
        if s[0] in "\"'":
            return s[0] + re.sub(r"[^\n]", " ", s[1:-1]) + s[-1]
        return re.sub(r"[^\n]", " ", s)
    return _COMMENT_OR_LITERAL.sub(blank, source)


def _blank_directives(code):
    return _DIRECTIVE.sub(lambda m: re.sub(r"[^\n]", " ", m.group()), code)


def _matching_brace(code, i):
    depth = 0
    for j in range(i, len(code)):
        c = code[j]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return j
    raise CompileError("unbalanced braces in kernel source")


_FUNCTION_HEAD = re.compile(r"(~?\w+)\s*\(((?:[^()]|\((?:[^()]|\([^()]*\))*\))*)\)"
                            r"(?:\s|const\b|noexcept\b|override\b|final\b|volatile\b|&)*(?:->[^{};]*)?$", re.S)
_CONTAINER_HEAD = re.compile(r'\b(?:namespace|struct|class|union|enum)\b|extern\s*"C"\s*$')
_KEYWORDS = {"if", "for", "while", "switch", "return", "sizeof", "catch"}


@dataclass
class _Function:
    name: str
    head: str
    params: str
    body: str
    extern_c: bool
    pos: int  # of the name, in the inlined text


def _functions(code):
    """Function definitions in directive-free, blanked code, and structs as a whole: namespaces,
    extern "C" blocks and structs are entered; other braced blocks at that level (initialisers)
    are skipped."""
    found = []
    containers = []  # True for an extern "C" block
    head_start = i = 0
    while i < len(code):
        c = code[i]
        if c == ";":
            head_start = i + 1
        elif c == "}":
            if containers:
                containers.pop()
            head_start = i + 1
        elif c == "{":
            head = code[head_start:i]
            m = _FUNCTION_HEAD.search(head)
            if m and m.group(1) not in _KEYWORDS:
                end = _matching_brace(code, i)
                found.append(_Function(m.group(1), head, m.group(2), code[i:end + 1],
                                       bool(re.search(r'extern\s*"C"', head)) or any(containers),
                                       head_start + m.start(1)))
                i = end
                head_start = end + 1
            elif _CONTAINER_HEAD.search(head):
                struct = re.search(r"\b(?:struct|class|union)\s+(\w+)[^{]*$", head)
                if struct:  # a struct's name stands for its member functions (operator() of a functor)
                    found.append(_Function(struct.group(1), head, "", code[i:_matching_brace(code, i) + 1], False,
                                           head_start + struct.start(1)))
                containers.append(bool(re.search(r'extern\s*"C"\s*$', head)))
                head_start = i + 1
            else:
                i = _matching_brace(code, i)
                head_start = i + 1
        i += 1
    return found


_SCALAR_TYPES = {
    "int": np.int32, "int32_t": np.int32, "signed int": np.int32, "signed": np.int32,
    "unsigned int": np.uint32, "unsigned": np.uint32, "uint32_t": np.uint32,
    "float": np.float32, "double": np.float64,
    "long long": np.int64, "long long int": np.int64, "int64_t": np.int64, "long": np.int64,
    "unsigned long long": np.uint64, "unsigned long long int": np.uint64, "uint64_t": np.uint64,
    "size_t": np.uint64, "unsigned long": np.uint64, "bool": np.bool_,
}
_POINTER_TYPES = {  # element type -> (dtype, required alignment of the data pointer)
    **{k: (v, 1) for k, v in _SCALAR_TYPES.items()},
    "unsigned char": (np.uint8, 1), "uint8_t": (np.uint8, 1), "char": (np.int8, 1), "signed char": (np.int8, 1),
    "int8_t": (np.int8, 1), "float2": (np.float32, 8), "float4": (np.float32, 16), "int2": (np.int32, 8),
    "int4": (np.int32, 16), "uint2": (np.uint32, 8), "uint4": (np.uint32, 16), "double2": (np.float64, 16),
    "void": (None, 1),
}
_STRUCT_FORMAT = {np.int32: "i4x", np.uint32: "I4x", np.float32: "f4x", np.float64: "d", np.int64: "q",
                  np.uint64: "Q", np.bool_: "?7x"}


@dataclass
class Param:
    """One kernel parameter: `pointer` params take arrays of `dtype` (None: any), others scalars."""
    name: str
    ctype: str
    pointer: bool
    dtype: object
    align: int = 1
    const: bool = False


def _split_top_level(text):
    """`text` split at the commas outside (), <> and []."""
    pieces, depth, start = [], 0, 0
    for j, c in enumerate(text):
        if c in "(<[":
            depth += 1
        elif c in ")>]":
            depth -= 1
        elif c == "," and depth == 0:
            pieces.append(text[start:j])
            start = j + 1
    return pieces + [text[start:]]


def _parse_params(kernel, params, where):
    params = params.strip()
    if params in ("", "void"):
        return []
    result = []
    for k, piece in enumerate(_split_top_level(params)):
        text = " ".join(piece.split("=")[0].split())
        m = re.match(r"(.*?)\b(\w+)$", text)
        ctype, name = (m.group(1).strip(), m.group(2)) if m and m.group(1).strip() not in ("", "const", "unsigned") \
            else (text, f"#{k}")
        base = re.sub(r"\b(?:const|volatile|__restrict__|__restrict|restrict|struct)\b|std::", " ", ctype)
        stars = base.count("*")
        base = " ".join(base.replace("*", " ").split())
        if stars > 1 or "&" in base or (base not in (_POINTER_TYPES if stars else _SCALAR_TYPES)):
            raise CompileError(f"{where}: kernel {kernel}: parameter {k} ({name}) has type {ctype!r}, which "
                               f"microst.cuda cannot pass; use a pointer to a float/int/vector type or a "
                               f"scalar of {', '.join(sorted(_SCALAR_TYPES))}")
        if stars:
            dtype, align = _POINTER_TYPES[base]
            is_const = bool(re.match(r"\s*const\b", ctype)) or bool(re.search(r"\bconst\s*\*", ctype))
            result.append(Param(name, ctype, True, None if dtype is None else np.dtype(dtype), align, is_const))
        else:
            result.append(Param(name, ctype, False, np.dtype(_SCALAR_TYPES[base])))
    return result


@dataclass
class _Source:
    """A kernel file, read and analysed once per build."""
    path: Path
    text: str            # includes inlined
    code: str            # blanked, directives blanked too
    kernels: dict        # name -> [Param]
    fibers: set          # kernels that need fibers on emu (barriers or warp functions reachable)
    other_globals: dict  # name -> why it cannot be launched (template, not extern "C")


def _analyse(path):
    text = _inline_includes(path)
    blanked = _blank(text)
    code = _blank_directives(blanked)
    functions = _functions(code)
    # Which functions and macros reach a barrier or warp function (by name: overloads merged).
    names = {}
    for f in functions:
        names.setdefault(f.name, set()).update(re.findall(r"[A-Za-z_]\w*", f.body))
    for m in _DIRECTIVE.finditer(blanked):
        d = _DEFINE.match(m.group().strip())
        if d:
            names.setdefault(d.group(1), set()).update(re.findall(r"[A-Za-z_]\w*", d.group(2)))
    syncs = {name for name, idents in names.items() if any(_SYNC.fullmatch(i) for i in idents)}
    grew = True
    while grew:
        grew = False
        for name, idents in names.items():
            if name not in syncs and idents & syncs:
                syncs.add(name)
                grew = True
    kernels, others = {}, {}
    for f in functions:
        if not re.search(r"\b__global__\b", f.head):
            continue
        if re.search(r"\btemplate\s*<", f.head) or not f.extern_c:
            others[f.name] = (f"{_origin(text, f.pos)}: kernel {f.name} must be declared extern \"C\" __global__ "
                              f"and not be a template, to be launched by name")
            continue
        kernels[f.name] = _parse_params(f.name, f.params, _origin(text, f.pos))
    return _Source(path, text, code, kernels, syncs & set(kernels), others)


# --- emu: build ------------------------------------------------------------------------------------

_SHARED_DECL = re.compile(r"(?:\b(extern|static)\s+)?\b__shared__\b([^;{}]*);")


def _declarator_names(decl):
    """Names declared by `T a[4][4], b[8]` (the text after __shared__)."""
    names = []
    for k, piece in enumerate(_split_top_level(decl)):
        piece = re.sub(r"__align__\s*\([^)]*\)|alignas\s*\([^)]*\)|__attribute__\s*\(\(.*?\)\)", " ", piece)
        piece = piece.split("[")[0]
        words = re.findall(r"[A-Za-z_]\w*", piece)
        if not words:
            return None
        names.append(words[-1] if k == 0 else words[0])
    return names


def _origin(text, pos):
    """'file:line' of position `pos` of an inlined text, from its #line markers."""
    markers = list(re.finditer(r'^#line (\d+) "([^"]*)"\n', text[:pos], re.M))
    if not markers:
        return f"line {text.count(chr(10), 0, pos) + 1}"
    m = markers[-1]
    return f"{m.group(2)}:{int(m.group(1)) + text.count(chr(10), m.end(), pos)}"


def _emu_rewrite(source):
    """Rewrite the `__shared__` declarations of the inlined text for emu (lines are kept):
    `__shared__ T x[N];` -> `static T x[N]; EMU_SHARED_FILL(x)` (0xFF before each block), and
    `extern __shared__ T x[];` -> `T* const x = (T*)emu_dynamic_smem;`."""
    out, last = [], 0
    for m in _SHARED_DECL.finditer(source.code):
        decl = source.text[m.start(2):m.end(2)]
        newlines = "\n" * decl.count("\n")
        if m.group(1) == "extern":
            d = re.fullmatch(r"(.*?)\b(\w+)\s*\[\s*\]\s*", " ".join(decl.split()))
            if not d:
                raise CompileError(f"{_origin(source.text, m.start())}: emu cannot read the "
                                   f"declaration 'extern __shared__{decl};' (expected: extern __shared__ T name[];)")
            ctype = re.sub(r"__align__\s*\([^)]*\)|alignas\s*\([^)]*\)", " ", d.group(1)).strip()
            replacement = f"{ctype}* const {d.group(2)} = reinterpret_cast<{ctype}*>(emu_dynamic_smem);"
        else:
            names = _declarator_names(decl)
            if names is None:
                continue  # leave it to the header's plain `static` definition
            replacement = f"static{decl};" + " ".join(f"EMU_SHARED_FILL({n})" for n in names)
        out.append(source.text[last:m.start()])
        out.append(" ".join(replacement.split("\n")) + newlines)
        last = m.end()
    out.append(source.text[last:])
    return "".join(out)


def _cache_dir():
    root = os.environ.get("MICROST_CACHE") or Path.home() / ".cache" / "microst"
    return Path(root) / "emu"


_compiler_ids = {}


def _compiler_id(cxx):
    if cxx not in _compiler_ids:
        try:
            r = subprocess.run([cxx, "--version"], capture_output=True, text=True, check=True)
        except (OSError, subprocess.CalledProcessError) as e:
            raise CompileError(f"the emu device needs a C++ compiler: {cxx!r} does not run ({e}); install g++ "
                               f"or set CXX") from None
        _compiler_ids[cxx] = r.stdout
    return _compiler_ids[cxx]


def _emu_flags():
    return EMU_CXXFLAGS + tuple(os.environ.get("MICROST_EMU_CXXFLAGS", "").split())


def _check_inline_ptx(source, cxx, flags):
    """Inline PTX cannot run on the CPU: find any `asm` that survives the preprocessor (so that
    one guarded by #ifdef __CUDA_ARCH__ passes) and name its file and line."""
    if not _ASM.search(source.code):
        return
    r = subprocess.run([cxx, "-E", *[f for f in flags if f.startswith(("-std", "-D", "-U"))],
                        "-include", str(EMU_HEADER), "-x", "c++", "-"],
                       input=source.text, capture_output=True, text=True)
    if r.returncode:
        return  # the compile that follows reports it
    file, line, system, header = "?", 0, False, str(EMU_HEADER)
    for text in r.stdout.splitlines():
        marker = re.match(r'#\s+(\d+)\s+"([^"]*)"((?:\s+\d)*)', text)
        if marker:
            line, file = int(marker.group(1)), marker.group(2)
            system = "3" in marker.group(3).split()
            continue
        if file != header and not system and file != "<command-line>" and _ASM.search(_blank(text)):
            raise CompileError(f"emu cannot run inline PTX in {file} line {line}; guard it with "
                               f"#ifdef __CUDA_ARCH__ ... #else <plain C++ for emu> ... #endif")
        line += 1


class _EmuLaunch(ctypes.Structure):
    """Mirror of emu::Launch in kernels/emu/cuda_emu.h."""
    _fields_ = [("grid", ctypes.c_uint32 * 3), ("block", ctypes.c_uint32 * 3), ("shared_bytes", ctypes.c_uint64),
                ("stack_bytes", ctypes.c_uint64), ("seed", ctypes.c_uint64), ("order", ctypes.c_int32),
                ("nargs", ctypes.c_int32), ("args", ctypes.c_char_p), ("err", ctypes.c_void_p),
                ("errlen", ctypes.c_uint64)]


def _compile(cxx, args, what):
    r = subprocess.run([cxx, *args], capture_output=True, text=True)
    if r.returncode:
        raise CompileError(f"{cxx} could not compile {what} for the emu device:\n{r.stderr.strip()}")


def _cached_build(name, build):
    """The cached file `name`, made by build(tmp_path) if missing. Concurrent builders (pytest
    workers) each write into their own temporary directory; the rename is atomic."""
    cache = _cache_dir()
    target = cache / name
    if not target.exists():
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache, prefix=".build-") as tmp:
            out = Path(tmp) / name
            build(out)
            os.replace(out, target)
    return target


def _emu_key(cxx, flags, *parts):
    key = hashlib.sha256()
    for part in (" ".join(flags), _compiler_id(cxx), *parts):
        key.update(part.encode() + b"\0")
    for f in sorted(EMU_HEADER_DIR.iterdir()):
        if f.is_file():
            key.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    return key.hexdigest()[:24]


def _build_emu(source):
    """The launch functions of the source's kernels: the module from the cache, or compiled now
    (with the runtime library it links to, found next to it in the cache)."""
    cxx = os.environ.get("CXX", "g++")
    flags = _emu_flags()
    runtime_name = f"libmicrost-emu-{_emu_key(cxx, flags)}.so"
    runtime = _cached_build(runtime_name, lambda out: _compile(
        cxx, [*flags, f"-Wl,-soname,{runtime_name}", "-o", str(out), str(EMU_RUNTIME)], _display(EMU_RUNTIME)))

    launchers = "".join(f"EMU_LAUNCHER({name}, {int(name in source.fibers)})\n" for name in source.kernels)
    unit = f'{_emu_rewrite(source)}\n#line 1 "<emu launchers>"\n{launchers}'

    def build(out):
        global emu_compiles
        _check_inline_ptx(source, cxx, flags)
        cpp = out.with_suffix(".cpp")
        cpp.write_text(unit)
        _compile(cxx, [*flags, "-include", str(EMU_HEADER), "-o", str(out), str(cpp), str(runtime),
                       "-Wl,-rpath,$ORIGIN"], _display(source.path))
        emu_compiles += 1

    so = _cached_build(f"{source.path.stem}-{_emu_key(cxx, flags, unit)}.so", build)
    lib = ctypes.CDLL(str(so))
    functions = {}
    for name in source.kernels:
        fn = getattr(lib, f"emu_launch_{name}")
        fn.argtypes = [ctypes.POINTER(_EmuLaunch)]
        fn.restype = ctypes.c_int
        functions[name] = fn
    return functions


# --- kernels -----------------------------------------------------------------------------------------

def _dims(value, what, kernel):
    if type(value) is int and value > 0:  # the common case, first
        return value, 1, 1
    if isinstance(value, (int, np.integer)):
        value = (value,)
    if not isinstance(value, (tuple, list)) or not 1 <= len(value) <= 3 or \
            not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value):
        raise TypeError(f"kernel {kernel}: {what} must be an int or a tuple of 1-3 ints, got {value!r}")
    value = tuple(int(v) for v in value) + (1,) * (3 - len(value))
    if min(value) < 1:
        raise ValueError(f"kernel {kernel}: {what} {value} has a zero or negative size (CUDA refuses empty "
                         f"launches: skip the launch when there is no work)")
    return value


def _type_name(a):
    return f"{type(a).__module__}.{type(a).__name__}"


class Kernel:
    """One kernel of one file on one device; call it as k(grid, block, args, shared_mem=0)."""

    def __init__(self, device, source, name, launch):
        self.device = device
        self.name = name
        self.file = source.path
        self.params = source.kernels[name]
        self.uses_fibers = name in source.fibers  # emu runs it with one fiber per thread
        self._launch = launch
        self._format = "<" + "".join("Q" if p.pointer else _STRUCT_FORMAT[p.dtype.type] for p in self.params)
        self._max_shared = _OPT_IN_SHARED

    def __repr__(self):
        return f"<Kernel {self.name} ({_display(self.file)}) on {self.device}>"

    def _check_config(self, grid, block, shared_mem):
        grid, block = _dims(grid, "grid", self.name), _dims(block, "block", self.name)
        threads = block[0] * block[1] * block[2]
        if threads > MAX_THREADS_PER_BLOCK or block[2] > 64:
            raise ValueError(f"kernel {self.name}: block {block} has {threads} threads; CUDA allows at most "
                             f"{MAX_THREADS_PER_BLOCK} per block (and blockDim.z <= 64)")
        if grid[0] >= 2 ** 31 or grid[1] > 65535 or grid[2] > 65535:
            raise ValueError(f"kernel {self.name}: grid {grid} is too large (x < 2^31, y and z <= 65535)")
        if not isinstance(shared_mem, (int, np.integer)) or not 0 <= shared_mem <= MAX_DYNAMIC_SHARED:
            raise ValueError(f"kernel {self.name}: shared_mem must be an int from 0 to {MAX_DYNAMIC_SHARED} "
                             f"bytes, got {shared_mem!r}")
        return grid, block, int(shared_mem)

    def _check_args(self, args):
        """The argument values to pack (emu): data pointers and scalars."""
        if not isinstance(args, (tuple, list)):
            raise TypeError(f"kernel {self.name}: args must be a tuple, got {type(args).__name__}")
        if len(args) != len(self.params):
            names = ", ".join(p.name for p in self.params)
            raise TypeError(f"kernel {self.name} takes {len(self.params)} arguments ({names}), got {len(args)}")
        emu = self.device == "emu"
        values = []
        for i, (a, p) in enumerate(zip(args, self.params)):
            if p.pointer:
                if emu:
                    if not isinstance(a, np.ndarray):
                        raise TypeError(f"{self._arg(i)} must be a NumPy array on emu, got {_type_name(a)}")
                    pointer = a.ctypes.data
                else:
                    if isinstance(a, np.ndarray) or not hasattr(a, "data") or not hasattr(a.data, "ptr"):
                        raise TypeError(f"{self._arg(i)} must be a CuPy array on cuda, got {_type_name(a)}")
                    pointer = a.data.ptr
                if not a.flags.c_contiguous:
                    raise ValueError(f"{self._arg(i)} must be C-contiguous (use xp.ascontiguousarray)")
                if p.dtype is not None and a.dtype != p.dtype:
                    raise TypeError(f"{self._arg(i)} must be a {p.dtype} array, got {a.dtype}")
                if pointer % p.align:
                    raise ValueError(f"{self._arg(i)}: the data must be {p.align}-byte aligned for {p.ctype}")
                if emu and not p.const and not a.flags.writeable:
                    raise ValueError(f"{self._arg(i)} is read-only, and the kernel may write to it")
                values.append(pointer)
            else:
                if type(a) in (int, float, bool):
                    raise TypeError(f"{self._arg(i)} is a Python {type(a).__name__}: wrap it as "
                                    f"numpy.{p.dtype}(...) (CuPy would pass it as a 64-bit value)")
                if not isinstance(a, np.generic) or a.dtype != p.dtype:
                    got = f"numpy.{a.dtype}" if isinstance(a, np.generic) else _type_name(a)
                    raise TypeError(f"{self._arg(i)} must be a numpy.{p.dtype} scalar, got {got}")
                values.append(a.item())
        return values

    def _arg(self, i):
        p = self.params[i]
        return f"kernel {self.name}: argument {i} ({p.ctype} {p.name})"

    def __call__(self, grid, block, args, shared_mem=0):
        grid, block, shared_mem = self._check_config(grid, block, shared_mem)
        values = self._check_args(args)
        if self.device == "cuda":
            self._launch_cuda(grid, block, args, shared_mem)
        else:
            self._launch_emu(grid, block, values, shared_mem)

    def _launch_emu(self, grid, block, values, shared_mem):
        order, seed = _current_order()
        err = getattr(_state, "err", None)
        if err is None:
            err = _state.err = ctypes.create_string_buffer(4096)
        p = _EmuLaunch(grid, block, shared_mem, int(os.environ.get("MICROST_EMU_STACK_KIB", "128")) * 1024, seed,
                       order, len(values), struct.pack(self._format, *values), ctypes.addressof(err), len(err))
        if self._launch(ctypes.byref(p)):
            raise RuntimeError(err.value.decode(errors="replace"))

    def _launch_cuda(self, grid, block, args, shared_mem):
        if shared_mem > self._max_shared:  # above 48 KiB a kernel must opt in
            self._launch.max_dynamic_shared_size_bytes = shared_mem
            self._max_shared = shared_mem
        self._launch(grid, block, tuple(args), shared_mem=shared_mem)
        if os.environ.get("MICROST_CUDA_SYNC") == "1":
            import cupy
            try:
                cupy.cuda.get_current_stream().synchronize()
            except cupy.cuda.runtime.CUDARuntimeError as e:
                raise RuntimeError(f"kernel {self.name} ({_display(self.file)}) failed: {e}") from e


_lock = threading.RLock()
_modules = {}  # (device, path, emu flags) -> (source, {name: launch function})
_kernels = {}  # (device, path, name, emu flags) -> Kernel


def _module(device, path):
    key = (device, path, _emu_flags() if device == "emu" else ())
    if key not in _modules:
        source = _analyse(path)
        if device == "emu":
            functions = _build_emu(source)
        else:
            import cupy
            module = cupy.RawModule(code=source.text, options=CUDA_OPTIONS)
            try:  # the module compiles at its first get_function
                functions = {name: module.get_function(name) for name in source.kernels}
            except cupy.cuda.compiler.CompileException as e:
                raise CompileError(f"NVRTC could not compile {_display(path)}:\n{e}") from e
        _modules[key] = (source, functions)
    return _modules[key]


def get_kernel(device, file, name):
    """The kernel `name` of `file` (relative to kernels/, or absolute) on device "cuda" or "emu",
    compiled on first use and memoized."""
    if device not in ("cuda", "emu"):
        raise ValueError(f"kernels run on 'cuda' or 'emu', not {device!r}")
    path = (KERNEL_DIR / file).resolve()
    key = (device, path, name, _emu_flags() if device == "emu" else ())
    kernel = _kernels.get(key)
    if kernel is None:
        with _lock:
            if not path.is_file():
                raise FileNotFoundError(f"no kernel file {file!r} (looked for {path})")
            source, functions = _module(device, path)
            if name not in source.kernels:
                if name in source.other_globals:
                    raise ValueError(source.other_globals[name])
                raise ValueError(f"no extern \"C\" __global__ kernel {name!r} in {_display(path)} "
                                 f"(found: {', '.join(source.kernels) or 'none'})")
            kernel = _kernels[key] = Kernel(device, source, name, functions[name])
    return kernel
