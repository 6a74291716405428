"""The package's layers: every module's imports (function-local ones too) point down or sideways,
never up, and no import cycle exists. Read from the source with ``ast``, not by importing."""

import ast
from pathlib import Path

import landscape_dist

ROOT = Path(landscape_dist.__file__).parent

# Bottom to top. A module belongs to the layer of its top-level package (or its own name).
LAYERS = (
    ("errors", "registry"),
    ("config",),
    ("core",),
    ("model",),
    ("planes",),
    ("execution",),
    ("store",),
    ("figures", "callbacks"),
    ("sweeping", "commands"),
    ("cli",),
)
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(("landscape_dist",) + parts)] = path
    return out


def _imports(name: str, path: Path) -> set[str]:
    """The package's modules that ``name`` imports anywhere in its source."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found |= {f"{module}.{alias.name}" for alias in node.names}  # submodules by name
    return {m for m in found if m.startswith("landscape_dist.")}


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return RANK.get(parts[1]) if len(parts) > 1 else None


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: {m for m in _imports(name, path) if m in modules and m != name}
            for name, path in modules.items()}


def test_every_module_has_a_layer():
    unplaced = [m for m in _modules() if m != "landscape_dist" and _layer(m) is None]
    assert unplaced == []


def test_imports_point_down():
    upward = [f"{name} -> {dep}" for name, deps in _graph().items() for dep in sorted(deps)
              if name != "landscape_dist" and _layer(dep) is not None
              and _layer(dep) > _layer(name)]
    assert upward == []


def test_no_import_cycle():
    graph = _graph()
    graph.pop("landscape_dist")  # the package's lazy public names import on first use
    state: dict[str, int] = {}
    cycles = []

    def visit(node, trail):
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if dep not in graph:
                continue
            if state.get(dep) == 1:
                cycles.append(trail[trail.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, trail + [dep])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_the_configuration_imports_no_plane_figure_or_keras_module():
    """The configuration knows the growth points' names from the registries' tables: a
    configuration of built-in names imports no entry (a plane kind is imported once its settings
    class is needed, through its registry)."""
    import subprocess
    import sys

    code = ("import sys, landscape_dist.config as c; c.config_from_dict({'plot': {'format': 'svg'}});"
            "print(sorted(m for m in sys.modules if m.startswith(('landscape_dist.figures',"
            "'landscape_dist.model', 'landscape_dist.execution', 'landscape_dist.store',"
            "'landscape_dist.commands', 'tensorflow', 'keras', 'matplotlib', 'ray'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
