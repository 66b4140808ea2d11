"""The shape of the package, read from its source: imports point one way (no module below the command
lines imports one, nothing imports from the package face, no circles) and no module is over 400 lines.

Every import counts, also those inside functions: a lazy import is still a dependency."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "microst"
MAX_LINES = 400
# the command-line modules (python -m microst.NAME); microst.lab is a package of them
CLIS = ("microst.train", "microst.stylize", "microst.optimize", "microst.weights", "microst.export", "microst.lab")


def is_cli(module):
    return any(module == c or module.startswith(c + ".") for c in CLIS) or module.endswith(".__main__")


def cli_of(module):
    """The command a module belongs to (a CLI package's modules belong to one command), or None."""
    return next((c for c in CLIS if module == c or module.startswith(c + ".")), None)


def modules():
    """{module name: file} for every module of the package."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(name, path, known):
    """The microst modules that module `name` imports: `from P import x` counts as P.x when P.x is a
    module, else as P itself (a name taken from P's __init__)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "microst"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base.split(".")[0] != "microst":
                continue
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    found.discard(name)
    return found


def graph():
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def test_the_walker_sees_the_imports():
    g = graph()
    assert {"microst.cli", "microst.training"} <= g["microst.train"]
    assert "microst.models.vgg16_h5" in g["microst.models.vgg16"]
    assert "microst.checkpoint" in g["microst"] and "microst.version" in g["microst.checkpoint"]


def test_no_module_below_the_command_lines_imports_one():
    wrong = [f"{a} -> {b}" for a, targets in graph().items() for b in targets
             if is_cli(b) and cli_of(a) != cli_of(b)]
    assert not wrong, "imports of command-line modules (move what they share below them): " + ", ".join(wrong)


def test_no_module_takes_names_from_the_package_face():
    """microst/__init__.py hands names on to users (and the command lines, which are users too); the
    modules below import a name from where it is defined."""
    wrong = [a for a, targets in graph().items() if "microst" in targets and a != "microst" and not is_cli(a)]
    assert not wrong, f"these import from microst/__init__.py: {', '.join(wrong)}"


def test_no_circles():
    g = graph()
    index, low, stack, on_stack, circles = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in g.get(v, ()):
            if w not in g:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in sorted(g):
        if v not in index:
            visit(v)
    assert not circles, "modules that import each other: " + "; ".join(" <-> ".join(c) for c in circles)


def test_no_module_is_over_400_lines():
    long = {str(path.relative_to(ROOT)): n for path in modules().values()
            if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split them by what they do): {long}"
