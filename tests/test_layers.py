"""The import structure, read from the source (ast, nothing imported): entry points on top,
the training loop below them, what builds and evaluates models below that, the parts
(models, quantizers, losses, metrics, data, config, ...) at the bottom. No import runs
upward, and the packages import each other without cycles.

Function-level (lazy) imports count: they are arrows all the same.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Highest layer first; a module may import its own layer or any lower one. A name is a
# module or package: the longest prefix that matches decides.
LAYERS: list[tuple[str, set[str]]] = [
    (
        "entry points",
        {
            "train",
            "benchmarks",
            "hydra_plugins",
            "dcvq",  # the package's facade: load_model, build_model (lazy imports)
            "dcvq.evaluate",
            "dcvq.report",
            "dcvq.launcher",
        },
    ),
    ("training loop", {"dcvq.trainer"}),
    ("building and evaluating", {"dcvq.build", "dcvq.evaluation"}),
    ("models and losses", {"dcvq.model", "dcvq.losses"}),
    (
        "parts",
        {
            "dcvq.quantizers",
            "dcvq.metrics",
            "dcvq.data",
            "dcvq.config",
            "dcvq.logger",
            "dcvq.checkpoint",
            "dcvq.images",
            "dcvq.weights",
        },
    ),
]
RANK = {name: rank for rank, (_, names) in enumerate(LAYERS) for name in names}
# Downward but still wrong: the evaluation measures with the metrics, never through the
# training loss (LPIPS is a metric both use).
SIDEWAYS = [("dcvq.evaluation", "dcvq.losses")]
LOCAL = ("dcvq", "train", "benchmarks", "hydra_plugins")


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def sources(root: Path) -> dict[str, Path]:
    files = [root / "train.py", *root.glob("dcvq/**/*.py"), *root.glob("benchmarks/**/*.py")]
    files += root.glob("hydra_plugins/**/*.py")
    return {module_name(p, root): p for p in files if p.is_file()}


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The local modules ``name`` imports (``from pkg import mod`` counts as ``pkg.mod``)."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in known else base)
    return {m for m in found if m.split(".")[0] in LOCAL and m != name}


def layer_of(module: str) -> int:
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in RANK:
            return RANK[".".join(parts[:n])]
    raise AssertionError(f"{module} is in no layer of tests/test_layers.py: add it to LAYERS")


def graph(root: Path = REPO) -> dict[str, set[str]]:
    mods = sources(root)
    return {name: imports(name, path, set(mods)) for name, path in mods.items()}


def upward(edges: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{a} -> {b} ({LAYERS[layer_of(a)][0]} -> {LAYERS[layer_of(b)][0]})"
        for a, targets in edges.items()
        for b in targets
        if layer_of(b) < layer_of(a)
    )


def within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def sideways(edges: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{a} -> {b}"
        for a, targets in edges.items()
        for b in targets
        for src, dst in SIDEWAYS
        if within(a, src) and within(b, dst)
    )


def package_of(module: str) -> str:
    """dcvq.<package> (or the module at the top of dcvq); other roots as a whole."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "dcvq" and len(parts) > 1 else parts[0]


def package_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    deps: dict[str, set[str]] = {}
    for a, targets in edges.items():
        for b in targets:
            if package_of(a) != package_of(b):
                deps.setdefault(package_of(a), set()).add(package_of(b))
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(deps.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt] if nxt in path else [*path, nxt]
            if nxt not in state and (cycle := visit(nxt, [*path, nxt])):
                return cycle
        state[node] = 2
        return None

    for start in sorted(deps):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None


def test_every_module_has_a_layer():
    for module in sources(REPO):
        layer_of(module)


def test_no_import_runs_upward():
    edges = graph()
    assert upward(edges) == []
    assert sideways(edges) == []


def test_packages_import_each_other_without_cycles():
    assert package_cycle(graph()) is None


@pytest.mark.parametrize(
    ("module", "target"),
    [("dcvq.build", "dcvq.trainer.checkpoint"), ("dcvq.metrics.usage", "dcvq.losses.vqgan")],
)
def test_an_upward_import_is_found(tmp_path, module, target):
    """The check itself: an arrow added upward, even inside a function, is reported."""
    for name in ("dcvq/__init__.py", f"{module.replace('.', '/')}.py"):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    src = tmp_path / f"{module.replace('.', '/')}.py"
    src.write_text(f"def f():\n    from {target} import something\n")
    (tmp_path / "train.py").write_text("")
    assert upward(graph(tmp_path)) == [
        f"{module} -> {target} ({LAYERS[layer_of(module)][0]} -> {LAYERS[layer_of(target)][0]})"
    ]


def test_a_package_cycle_is_found():
    edges = {"dcvq.model.vqgan": {"dcvq.quantizers.base"}, "dcvq.quantizers.dual": {"dcvq.model"}}
    assert package_cycle(edges) == ["dcvq.model", "dcvq.quantizers", "dcvq.model"]
