"""Kernel sources: find them, inline their includes, and read what the launcher must know.

A kernel file is read once per build: its `#include "..."` files are inlined (each once, with
#line markers, so that compilers and __FILE__ name the original lines), comments and literals
are blanked so that regular expressions see only code, and every `extern "C" __global__`
function is parsed for its parameter list (what a launch must pass) and for whether it can reach
a barrier or a warp function (emu then runs it with one fiber per thread).
"""
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..resources import kernel_dir

KERNEL_DIR = kernel_dir()
_REPO = KERNEL_DIR.parent


class CompileError(RuntimeError):
    """A kernel source did not compile (the message holds the compiler's)."""


_INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"')
_PRAGMA_ONCE = re.compile(r"^\s*#\s*pragma\s+once\b")
_COMMENT_OR_LITERAL = re.compile(r'//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'', re.S)
_DIRECTIVE = re.compile(r"^[ \t]*#(?:[^\n]*\\\n)*[^\n]*", re.M)
_DEFINE = re.compile(r"#\s*define\s+(\w+)(.*)", re.S)
# Barriers and warp functions, WMMA's warp-collective calls among them (kernels/emu/include/mma.h).
_SYNC = re.compile(r"\b(?:__syncthreads\w*|__syncwarp|__shfl\w*_sync|__ballot_sync|__any_sync|__all_sync"
                   r"|__activemask|__reduce_\w+_sync|load_matrix_sync|store_matrix_sync|mma_sync)\b")
ASM = re.compile(r"\b(?:asm|__asm__|__asm)\b")


def display(path):
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
        name = display(p)
        out.append(f'#line 1 "{name}"\n')
        for number, line in enumerate(p.read_text().splitlines(), 1):
            m = _INCLUDE.match(line)
            if m:
                included = next((d / m.group(1) for d in (p.parent, KERNEL_DIR) if (d / m.group(1)).is_file()), None)
                if included is None:
                    raise FileNotFoundError(f'{name}:{number}: cannot find the included "{m.group(1)}" '
                                            f"(looked in {display(p.parent)} and {display(KERNEL_DIR)})")
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


def blank(source):
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
STRUCT_FORMAT = {np.int32: "i4x", np.uint32: "I4x", np.float32: "f4x", np.float64: "d", np.int64: "q",
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


def split_top_level(text):
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
    for k, piece in enumerate(split_top_level(params)):
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
class Source:
    """A kernel file, read and analysed once per build."""
    path: Path
    text: str            # includes inlined
    code: str            # blanked, directives blanked too
    kernels: dict        # name -> [Param]
    fibers: set          # kernels that need fibers on emu (barriers or warp functions reachable)
    other_globals: dict  # name -> why it cannot be launched (template, not extern "C")


def analyse(path):
    text = _inline_includes(path)
    blanked = blank(text)
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
            others[f.name] = (f"{origin(text, f.pos)}: kernel {f.name} must be declared extern \"C\" __global__ "
                              f"and not be a template, to be launched by name")
            continue
        kernels[f.name] = _parse_params(f.name, f.params, origin(text, f.pos))
    return Source(path, text, code, kernels, syncs & set(kernels), others)



def origin(text, pos):
    """'file:line' of position `pos` of an inlined text, from its #line markers."""
    markers = list(re.finditer(r'^#line (\d+) "([^"]*)"\n', text[:pos], re.M))
    if not markers:
        return f"line {text.count(chr(10), 0, pos) + 1}"
    m = markers[-1]
    return f"{m.group(2)}:{int(m.group(1)) + text.count(chr(10), m.end(), pos)}"


