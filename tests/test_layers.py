"""The house's shape: layers import only the layers below them, and no module imports itself back.

Every `import` counts, at the top of a module or inside a function: a deferred import is
still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# bottom to top: a layer may import its own modules and those of the layers before it
LAYERS = ("config", "probes", "nn", "zoo", "data", "training", "science", "io", "viz", "sweeps", "cli")
FLAT = {"vgrun": len(LAYERS), "vgrun.api": len(LAYERS), "vgrun.recorder": len(LAYERS)}  # the public API stands on top of everything
PLUGINS = len(LAYERS)  # hydra_plugins: thin, on top (they may import any layer)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    files = list((ROOT / "vgrun").rglob("*.py")) + list((ROOT / "hydra_plugins").rglob("*.py"))
    return {module_name(p): p for p in files if "conf" not in p.relative_to(ROOT).parts}


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The vgrun modules that `name` imports (a package import counts as its __init__)."""
    out = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name and t.split(".")[0] in ("vgrun", "hydra_plugins"):
                out.add(t)
    return out


def layer(name: str) -> int:
    parts = name.split(".")
    if parts[0] == "hydra_plugins":
        return PLUGINS
    if name in FLAT:
        return FLAT[name]
    if parts[1] not in LAYERS:
        raise AssertionError(f"{name}: vgrun/{parts[1]} is not a layer ({', '.join(LAYERS)})")
    return LAYERS.index(parts[1])


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports(name, path, set(mods)) for name, path in mods.items()}


def test_every_module_lives_in_a_layer():
    flat = sorted(n for n in modules() if n.startswith("vgrun") and len(n.split(".")) == 2
                  and n.split(".")[1] not in LAYERS and n not in FLAT)
    assert flat == [], f"modules outside the layers: {flat}"


def test_imports_run_down_the_layers():
    upward = [f"{a} -> {b}" for a, targets in graph().items() for b in targets if layer(b) > layer(a)]
    assert upward == [], "imports of a higher layer:\n" + "\n".join(sorted(upward))


def test_no_import_cycles():
    g = graph()
    state: dict[str, int] = {}  # 1: on the path, 2: done
    cycles = []

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(g.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(path[path.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for n in sorted(g):
        if n not in state:
            visit(n, [n])
    assert cycles == [], "import cycles:\n" + "\n".join(cycles)


def test_the_checker_sees_a_violation(tmp_path):
    """The checks above can fail: an upward import and a cycle are found in a made-up graph."""
    assert layer("vgrun.cli.main") > layer("vgrun.config.schema")
    src = tmp_path / "m.py"
    src.write_text("from vgrun.cli.main import main\n\ndef f():\n    import vgrun.viz.plots\n")
    found = imports("vgrun.config.fake", src, {"vgrun.cli.main", "vgrun.viz.plots", "vgrun.config.fake"})
    assert found == {"vgrun.cli.main", "vgrun.viz.plots"}
