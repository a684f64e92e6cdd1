"""CI (.ci/run) and the Makefile: lint before the tests; CPU-only PyTorch on request,
the default install unchanged."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def commands(script: Path) -> list[str]:
    lines = (line.strip() for line in script.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def make_dry_run(*args: str) -> list[str]:
    """The commands ``make -n -B`` would run (every prerequisite treated as outdated)."""
    # under `make test` (CI) make's own variables would make this a sub-make that prints
    # the directories it enters
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    proc = subprocess.run(
        ["make", "--no-print-directory", "-n", "-B", *args],
        cwd=REPO, capture_output=True, text=True, check=True, env=env,
    )  # fmt: skip
    return [line for line in proc.stdout.splitlines() if line and not line.startswith("#")]


def test_ci_lints_before_it_tests():
    run = commands(REPO / ".ci" / "run")
    assert "make lint" in run and "make test" in run
    assert run.index("make lint") < run.index("make test")
    lint = make_dry_run("lint")
    assert lint[-2:] == [".venv/bin/ruff check .", ".venv/bin/ruff format --check ."]


def test_cpu_only_torch_is_installed_first_on_request():
    index = "https://download.pytorch.org/whl/cpu"
    default = make_dry_run("install")
    cpu = make_dry_run("install", f"TORCH_INDEX={index}")
    first = f".venv/bin/python -m pip install -q torch torchvision --index-url {index}"
    install = ".venv/bin/python -m pip install -q -e '.[dev,reference]'"
    assert cpu.index(first) == cpu.index(install) - 1
    assert [line for line in cpu if line != first] == default and not any(
        "--index-url" in line for line in default
    )
