"""The import structure, read from the source (ast, nothing imported): entry points on top,
the stages (training, the prior) below them, then what builds models, what every process
runs on (devices, the process group, stop signals), and the parts (models, quantizers,
losses, metrics, data, config, ...) at the bottom. No import runs upward, and the
packages import each other without cycles.

Every module must be placed: each package of dcvq has its own entry, so a new package (or
a new top-level module) fails until it is given a layer.

Function-level (lazy) imports count: they are arrows all the same.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Highest layer first; a module may import its own layer or any lower one. A name covers
# that module and, for a package, every module in it: the longest name that covers a
# module decides. Except FACADE: it covers dcvq/__init__.py alone.
FACADE = "dcvq"  # the package's facade: load_model, build_model (lazy imports)
LAYERS: list[tuple[str, set[str]]] = [
    (
        "entry points",
        {
            "train",
            "benchmarks",
            "hydra_plugins",
            FACADE,
            "dcvq.evaluate",
            "dcvq.prior.__main__",
            "dcvq.report",
            "dcvq.launcher",
        },
    ),
    ("stages", {"dcvq.trainer", "dcvq.prior"}),
    ("building", {"dcvq.build"}),
    ("runtime", {"dcvq.runtime"}),
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
            "dcvq.errors",
            "dcvq.images",
            "dcvq.weights",
        },
    ),
]
RANK = {name: rank for rank, (_, names) in enumerate(LAYERS) for name in names}
# Downward but still wrong: evaluating a checkpoint and the prior stage never load the
# training loop (what they share with it is in dcvq.runtime).
SIDEWAYS = [("dcvq.evaluate", "dcvq.trainer"), ("dcvq.prior", "dcvq.trainer")]
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


def layer_of(module: str) -> int | None:
    """The rank of the layer of ``module``; None when no name of LAYERS covers it."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        name = ".".join(parts[:n])
        if name in RANK and (name != FACADE or n == len(parts)):
            return RANK[name]
    return None


def unlisted(modules) -> list[str]:
    return sorted(m for m in modules if layer_of(m) is None)


def graph(root: Path = REPO) -> dict[str, set[str]]:
    mods = sources(root)
    return {name: imports(name, path, set(mods)) for name, path in mods.items()}


def upward(edges: dict[str, set[str]]) -> list[str]:
    """Each import of a lower layer's module from a higher one (unplaced modules aside:
    :func:`unlisted` reports them)."""
    found = []
    for a, targets in edges.items():
        for b in targets:
            la, lb = layer_of(a), layer_of(b)
            if la is not None and lb is not None and lb < la:
                found.append(f"{a} -> {b} ({LAYERS[la][0]} -> {LAYERS[lb][0]})")
    return sorted(found)


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
    assert unlisted(sources(REPO)) == []


def test_no_import_runs_upward():
    edges = graph()
    assert upward(edges) == []
    assert sideways(edges) == []


def test_packages_import_each_other_without_cycles():
    assert package_cycle(graph()) is None


def write_tree(root: Path, files: dict[str, str]) -> None:
    """A fake repository: ``files`` ({path: source}) and an empty train.py."""
    for name, text in {"train.py": "", "dcvq/__init__.py": "", **files}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.mark.parametrize(
    ("module", "target", "kind"),
    [
        ("dcvq.build", "dcvq.trainer.checkpoint", "upward"),
        ("dcvq.metrics.usage", "dcvq.losses.vqgan", "upward"),
        ("dcvq.runtime.stop", "dcvq.trainer.loop", "upward"),
        ("dcvq.data.workers", "dcvq.runtime.stop", "upward"),
        ("dcvq.prior.train", "dcvq.trainer.loop", "sideways"),
        ("dcvq.evaluate", "dcvq.trainer", "sideways"),
    ],
)
def test_an_upward_or_sideways_import_is_found(tmp_path, module, target, kind):
    """The check itself: an arrow added upward (or sideways), even inside a function, is
    reported."""
    src = f"{module.replace('.', '/')}.py"
    write_tree(tmp_path, {src: f"def f():\n    from {target} import something\n"})
    edges = graph(tmp_path)
    if kind == "upward":
        rank_a, rank_b = layer_of(module), layer_of(target)
        found = f"{module} -> {target} ({LAYERS[rank_a][0]} -> {LAYERS[rank_b][0]})"
        assert (upward(edges), sideways(edges)) == ([found], [])
    else:
        assert (upward(edges), sideways(edges)) == ([], [f"{module} -> {target}"])


def test_a_module_that_no_layer_covers_is_named(tmp_path):
    """The facade covers dcvq/__init__.py, not a new package or module next to it."""
    write_tree(
        tmp_path,
        {"dcvq/build.py": "", "dcvq/novel/__init__.py": "", "dcvq/novel/part.py": "",
         "dcvq/helpers.py": "from dcvq import build\n"},
    )  # fmt: skip
    assert unlisted(sources(tmp_path)) == ["dcvq.helpers", "dcvq.novel", "dcvq.novel.part"]
    assert layer_of("dcvq") == 0 and layer_of("dcvq.prior.__main__") == 0
    assert layer_of("dcvq.prior.stage") == RANK["dcvq.prior"]


def test_a_package_cycle_is_found():
    edges = {"dcvq.model.vqgan": {"dcvq.quantizers.base"}, "dcvq.quantizers.dual": {"dcvq.model"}}
    assert package_cycle(edges) == ["dcvq.model", "dcvq.quantizers", "dcvq.model"]


@pytest.mark.parametrize("module", ["dcvq.evaluate", "dcvq.prior.stage", "dcvq.prior.__main__"])
def test_evaluation_and_the_prior_do_not_load_the_training_loop(module):
    """In a fresh interpreter, as ``python -m`` would import it."""
    code = f"import sys, {module}; print([m for m in sys.modules if m.startswith('dcvq.trainer')])"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "[]"
