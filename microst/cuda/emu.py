"""The emu device: a kernel file compiled for the CPU by g++ and launched through ctypes.

The inlined source is compiled against ``kernels/emu/cuda_emu.h`` (threadIdx, __shared__,
__syncthreads, warp functions and atomics in plain C++), with ``kernels/emu/include`` on the include
path for the CUDA headers kernels name (<mma.h>, <cuda_bf16.h>, <cuda_fp16.h>, <cuda_pipeline.h>:
WMMA, 16-bit floats and cp.async emulated), into a shared object, cached under
$MICROST_CACHE or ~/.cache/microst (in ``emu/``, keyed by a hash of the source, the flags, the
compiler and the emulation headers). Blocks run one at a time; kernels that reach a barrier or a
warp function run one fiber per CUDA thread. Extra g++ flags: MICROST_EMU_CXXFLAGS (e.g.
"-O0 -g" to step through a kernel in gdb); fiber stack size: MICROST_EMU_STACK_KIB (default 128).
"""
import ctypes
import hashlib
import os
import re
import struct
import subprocess
import tempfile
import threading
from pathlib import Path

from . import settings
from .source import ASM, KERNEL_DIR, CompileError, blank, display, origin, split_top_level

EMU_HEADER_DIR = KERNEL_DIR / "emu"
EMU_HEADER = EMU_HEADER_DIR / "cuda_emu.h"
EMU_RUNTIME = EMU_HEADER_DIR / "emu_runtime.cpp"
EMU_INCLUDE_DIR = EMU_HEADER_DIR / "include"  # emu's stand-ins for the CUDA toolkit's headers
_INCLUDE_FLAGS = ("-isystem", str(EMU_INCLUDE_DIR))

# g++ flags for emu. The kernels are CUDA C, so: no strict aliasing (float4 casts of float
# arrays), wrapping int overflow (as on the GPU), page-by-page stack probes (a big local array
# hits the fiber's guard page instead of jumping over it), no _FORTIFY_SOURCE longjmp checks
# (a stack overflow leaves its fiber by siglongjmp), and no locks around function-local statics
# (launches run one at a time).
EMU_CXXFLAGS = ("-O2", "-std=c++17", "-fPIC", "-shared", "-fvisibility=hidden", "-pthread",
                "-fno-strict-aliasing", "-fwrapv", "-fstack-clash-protection", "-U_FORTIFY_SOURCE",
                "-fno-threadsafe-statics", "-Wno-unknown-pragmas")

compiles = 0  # g++ builds of emu modules in this process (the tests check the cache with it)


_SHARED_DECL = re.compile(r"(?:\b(extern|static)\s+)?\b__shared__\b([^;{}]*);")


def _declarator_names(decl):
    """Names declared by `T a[4][4], b[8]` (the text after __shared__)."""
    names = []
    for k, piece in enumerate(split_top_level(decl)):
        piece = re.sub(r"__align__\s*\([^)]*\)|alignas\s*\([^)]*\)|__attribute__\s*\(\(.*?\)\)", " ", piece)
        piece = piece.split("[")[0]
        words = re.findall(r"[A-Za-z_]\w*", piece)
        if not words:
            return None
        names.append(words[-1] if k == 0 else words[0])
    return names



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
                raise CompileError(f"{origin(source.text, m.start())}: emu cannot read the "
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


def flags():
    return EMU_CXXFLAGS + tuple(os.environ.get("MICROST_EMU_CXXFLAGS", "").split())


def _check_inline_ptx(source, cxx, flags):
    """Inline PTX cannot run on the CPU: find any `asm` that survives the preprocessor (so that
    one guarded by #ifdef __CUDA_ARCH__ passes) and name its file and line."""
    if not ASM.search(source.code):
        return
    r = subprocess.run([cxx, "-E", *[f for f in flags if f.startswith(("-std", "-D", "-U"))], *_INCLUDE_FLAGS,
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
        if file != header and not system and file != "<command-line>" and ASM.search(blank(text)):
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
    for f in sorted(EMU_HEADER_DIR.rglob("*")):  # the headers of include/ too
        if f.is_file():
            key.update(f.relative_to(EMU_HEADER_DIR).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return key.hexdigest()[:24]


def build(source):
    """The launch functions of the source's kernels: the module from the cache, or compiled now
    (with the runtime library it links to, found next to it in the cache)."""
    cxx = os.environ.get("CXX", "g++")
    cxx_flags = flags()
    runtime_name = f"libmicrost-emu-{_emu_key(cxx, cxx_flags)}.so"
    runtime = _cached_build(runtime_name, lambda out: _compile(
        cxx, [*cxx_flags, f"-Wl,-soname,{runtime_name}", "-o", str(out), str(EMU_RUNTIME)], display(EMU_RUNTIME)))

    launchers = "".join(f"EMU_LAUNCHER({name}, {int(name in source.fibers)})\n" for name in source.kernels)
    unit = f'{_emu_rewrite(source)}\n#line 1 "<emu launchers>"\n{launchers}'

    def make(out):
        global compiles
        _check_inline_ptx(source, cxx, cxx_flags)
        cpp = out.with_suffix(".cpp")
        cpp.write_text(unit)
        _compile(cxx, [*cxx_flags, *_INCLUDE_FLAGS, "-include", str(EMU_HEADER), "-o", str(out), str(cpp), str(runtime),
                       "-Wl,-rpath,$ORIGIN"], display(source.path))
        compiles += 1

    so = _cached_build(f"{source.path.stem}-{_emu_key(cxx, cxx_flags, unit)}.so", make)
    lib = ctypes.CDLL(str(so))
    functions = {}
    for name in source.kernels:
        fn = getattr(lib, f"emu_launch_{name}")
        fn.argtypes = [ctypes.POINTER(_EmuLaunch)]
        fn.restype = ctypes.c_int
        functions[name] = fn
    return functions



_errors = threading.local()  # a message buffer per thread


def launch(function, arg_format, grid, block, values, shared_mem):
    """Run one launch of an emu launch function; the emulator's error (a fault, a deadlock, an
    overflow) is raised as a RuntimeError."""
    order, seed = settings.current_order()
    err = getattr(_errors, "buffer", None)
    if err is None:
        err = _errors.buffer = ctypes.create_string_buffer(4096)
    p = _EmuLaunch(grid, block, shared_mem, int(os.environ.get("MICROST_EMU_STACK_KIB", "128")) * 1024, seed,
                   order, len(values), struct.pack(arg_format, *values), ctypes.addressof(err), len(err))
    if function(ctypes.byref(p)):
        raise RuntimeError(err.value.decode(errors="replace"))
