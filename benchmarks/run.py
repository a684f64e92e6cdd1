"""``python -m benchmarks.run [--quick] [--only NAME] [--device cpu|cuda]``

Runs the benchmarks, prints a markdown table and writes ``<out>/<name>.json`` and
``<out>/<name>.md`` (``latest`` for a full run of everything, ``quick`` for ``--quick``,
with ``-NAME`` appended under ``--only``). Every number is a median over alternated
rounds in one process; ratios are paired against the baseline named in each row.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from benchmarks import evaluation, prior, quantizer, taming_step, train_step
from benchmarks.harness import (
    Context,
    machine_info,
    malloc_for_timing,
    memory_method,
    resolve_device,
)

BENCHMARKS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "quantizer": quantizer.run,
    "train_step": train_step.run,
    "taming_step": taming_step.run,
    "evaluation": evaluation.run,
    "prior": prior.run,
}
RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n")[0])
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smaller shapes and fewer repeats")
    size.add_argument(
        "--tiny", action="store_true", help="smoke-test sizes (used by tests; numbers meaningless)"
    )
    p.add_argument(
        "--only",
        action="append",
        choices=list(BENCHMARKS),
        metavar="NAME",
        help=f"run only this benchmark (repeatable): {', '.join(BENCHMARKS)}",
    )
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: on a small or shared machine the ratios are far "
        "steadier; 0 keeps torch's default)",
    )
    p.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON and markdown")
    p.add_argument("--name", default=None, help="file stem (default: latest, quick, ...)")
    p.add_argument(
        "--compile",
        choices=["none", "codebook", "model", "all"],
        default="all",
        help="GPU training step: which torch.compile variants to time (default all)",
    )
    p.add_argument(
        "--in-process",
        action="store_true",
        help="run every benchmark in this process (default: one fresh process each, so that "
        "one benchmark's heap and caches do not show in the next one's memory figures)",
    )
    p.add_argument("--child", type=Path, help=argparse.SUPPRESS)  # internal: result file
    return p.parse_args(argv)


@contextlib.contextmanager
def isolated_torch_home(folder: Path):
    """Nothing real is read: the stand-in weights live in a temporary TORCH_HOME."""
    old = os.environ.get("TORCH_HOME")
    os.environ["TORCH_HOME"] = str(folder / "torch_home")
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TORCH_HOME", None)
        else:
            os.environ["TORCH_HOME"] = old


def _num(x: Any, fmt: str = ".1f") -> str:
    if x is None:
        return ""
    if isinstance(x, float):
        return format(x, fmt)
    return str(x)


def _throughput(r: dict[str, Any]) -> str:
    t = r.get("throughput")
    if t is None:
        return ""
    value = f"{t / 1e3:.1f}k" if t >= 1e4 else f"{t:.1f}"
    return f"{value} {r['unit']}/s"


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    hw = m["gpu"] or m["cpu"]
    lines = [
        f"# dcvq benchmarks ({results['size']})",
        "",
        f"`{results['command']}` on {results['date']}, {results['seconds']:.0f} s.",
        "",
        f"Machine: {hw}; {m.get('cpus_usable', m['logical_cpus'])} usable CPUs; torch "
        f"{m['torch']}, {m['torch_threads']} thread(s); {m['dtype']}; load average at start "
        f"{_loads(m.get('load_average_start'))}, at end {_loads(m.get('load_average_end'))}.",
        f"Peak MiB: {results['memory_method']}."
        + (f" Timings: {results['malloc']}." if results.get("malloc") else ""),
        "Times are medians over rounds that alternate every case of a comparison; the ratio "
        "is the median of per-round ratios against the case named in `vs` (below 1: faster).",
        "",
    ]
    for name, bench in results["benchmarks"].items():
        lines += [f"## {name}", ""]
        if bench.get("about"):
            lines += [bench["about"], ""]
        lines += [
            "| case | config | median ms | IQR ms | ratio | vs | throughput | peak MiB | note |",
            "|---|---|---:|---:|---:|---|---:|---:|---|",
        ]
        for r in bench["rows"]:
            lines.append(
                _cells(
                    r["case"], r["config"], _num(r["median_ms"]), _num(r["iqr_ms"]),
                    _num(r["ratio"], ".3f"), r["vs"] or "", _throughput(r),
                    _num(r["peak_mib"]), r["note"],
                )
            )  # fmt: skip
        lines.append("")
    lines += [
        "## Targets",
        "",
        "| target | value | threshold | met | note |",
        "|---|---:|---:|---|---|",
    ]
    for name, bench in results["benchmarks"].items():
        for t in bench["targets"]:
            met = {True: "yes", False: "**no**", None: "not measured"}[t["met"]]
            lines.append(
                _cells(
                    f"{name}: {t['target']}", _num(t["value"], ".3f"),
                    _num(t["threshold"], "g"), met, t["note"],
                )
            )  # fmt: skip
    return "\n".join(lines) + "\n"


def _cells(*cells: str) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def _loads(x: list[float] | None) -> str:
    return "n/a" if not x else "/".join(f"{v:.1f}" for v in x)


def run_here(names: list[str], ctx_args: dict[str, Any]) -> dict[str, Any]:
    """Runs ``names`` in this process; ``{name: result}``."""
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="dcvq-bench-") as tmp, isolated_torch_home(Path(tmp)):
        ctx = Context(workdir=Path(tmp), log=_log, **ctx_args)
        for name in names:
            _log(f"[{name}]")
            t0 = time.perf_counter()
            torch.manual_seed(0)
            result = BENCHMARKS[name](ctx)
            result["seconds"] = time.perf_counter() - t0
            out[name] = result
            _log(f"[{name}] {result['seconds']:.0f} s")
    return out


def run_children(names: list[str], args: argparse.Namespace, size: str) -> dict[str, Any]:
    """Runs each benchmark in a fresh ``python -m benchmarks.run --child`` process."""
    out: dict[str, Any] = {}
    flags = {"tiny": ["--tiny"], "quick": ["--quick"], "full": []}[size]
    with tempfile.TemporaryDirectory(prefix="dcvq-bench-") as tmp:
        for name in names:
            path = Path(tmp) / f"{name}.json"
            cmd = [
                sys.executable, "-m", "benchmarks.run", "--child", str(path), "--only", name,
                *flags, "--device", args.device, "--threads", str(args.threads),
                "--compile", args.compile,
            ]  # fmt: skip
            done = subprocess.run(cmd, cwd=Path(__file__).resolve().parents[1], check=False)
            if done.returncode != 0:
                raise SystemExit(f"benchmark {name} failed (exit {done.returncode})")
            out[name] = json.loads(path.read_text())[name]
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    malloc_fixed = malloc_for_timing()
    size = "tiny" if args.tiny else "quick" if args.quick else "full"
    names = [n for n in BENCHMARKS if not args.only or n in args.only]
    ctx_args = {"device": device, "size": size, "options": {"compile": args.compile}}
    if args.child:
        args.child.write_text(json.dumps(run_here(names, ctx_args)))
        return {}
    stem = args.name or ("latest" if size == "full" else size)
    if args.only and not args.name:
        stem += "-" + "-".join(names)
    command = "python -m benchmarks.run " + shlex.join(argv if argv is not None else sys.argv[1:])
    separate = not args.in_process and len(names) > 1
    results: dict[str, Any] = {
        "command": command.strip(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "size": size,
        "machine": machine_info(device),
        "memory_method": memory_method(device),
        "options": {"compile": args.compile, "process_per_benchmark": separate},
        "malloc": "glibc mmap threshold fixed at 32 MiB for timings" if malloc_fixed else None,
    }
    start = time.perf_counter()
    if separate:
        results["benchmarks"] = run_children(names, args, size)
    else:
        results["benchmarks"] = run_here(names, ctx_args)
    results["seconds"] = time.perf_counter() - start
    results["machine"]["load_average_end"] = list(os.getloadavg())
    text = markdown(results)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.out / f"{stem}.md").write_text(text)
    print(text)
    _log(f"wrote {args.out / stem}.json and .md")
    return results


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
