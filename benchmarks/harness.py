"""Timing and memory measurement shared by every benchmark.

Timing
    The cases of one comparison (candidates and their baseline) live in one process. Each
    is warmed up, then they are called in turn, round after round, with the order rotated
    every round (A B C, B C A, C A B, ...) so that a slow spell of a shared machine hits
    every case alike. A case's time is its median over rounds; its ratio to the baseline
    is the median of the per-round ratios (paired: both measured in the same round,
    seconds apart), less sensitive to a drifting load than a ratio of medians. CUDA work
    is synchronised before each clock read.

Memory (what "peak MiB" means in the tables)
    CUDA: ``torch.cuda.max_memory_allocated()`` during one call minus the memory allocated
    before it: the tensor memory the call added on top of what already lived (weights,
    optimiser state). Caching-allocator slack is not counted.
    CPU: the process's peak resident set size during one call (``VmHWM``, reset through
    ``/proc/self/clear_refs``) minus its resident size just before, after ``gc`` and
    ``malloc_trim(0)`` handed freed heap pages back to the OS. During that call glibc's
    mmap threshold is pinned to 128 KiB, so every buffer above it is its own mapping,
    returned to the OS when freed: the peak then follows live memory (tensors, Python
    objects, library workspaces) instead of what the heap happened to keep (without the
    pin, the same call measured anywhere in 50-110 MiB; with it, within 1 MiB). Linux
    with glibc only; ``None`` elsewhere.

malloc
    Timings run with glibc's mmap threshold fixed at 32 MiB (and trim threshold 64 MiB):
    the ceiling that its dynamic threshold climbs to in a warmed-up process, set at start
    so that every comparison runs under the same allocator behaviour.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

MIB = 2**20


# ---------------------------------------------------------------- devices


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available here")
    return device


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------- timing


@dataclass
class Comparison:
    """Per-round seconds per call of each case, in the order measured."""

    times: dict[str, list[float]]
    number: dict[str, int] = field(default_factory=dict)

    def median(self, name: str) -> float:
        return statistics.median(self.times[name])

    def iqr(self, name: str) -> float:
        values = sorted(self.times[name])
        if len(values) < 4:
            return values[-1] - values[0]
        q = statistics.quantiles(values, n=4)
        return q[2] - q[0]

    def ratio(self, name: str, baseline: str) -> float:
        """Median over rounds of ``time[name] / time[baseline]`` (paired)."""
        pairs = zip(self.times[name], self.times[baseline], strict=True)
        return statistics.median(a / b for a, b in pairs)


def _timed(fn: Callable[[], Any], number: int, device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    for _ in range(number):
        fn()
    sync(device)
    return (time.perf_counter() - start) / number


def compare(
    fns: Mapping[str, Callable[[], Any]],
    *,
    device: torch.device,
    warmup: int = 1,
    repeats: int = 5,
    min_time: float = 0.0,
) -> Comparison:
    """Times every function of ``fns`` (no arguments; one call = one unit of work).

    ``warmup`` calls of each first (in turn); a call shorter than ``min_time`` seconds
    is repeated within a measurement so that timer and scheduling jitter stay small
    against it. Then ``repeats`` rounds, the order rotated every round.
    """
    names = list(fns)
    first: dict[str, float] = {}
    for _ in range(max(warmup, 1)):
        for name in names:
            first[name] = _timed(fns[name], 1, device)
    number = {n: max(1, math.ceil(min_time / max(first[n], 1e-9))) for n in names}
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            times[name].append(_timed(fns[name], number[name], device))
    return Comparison(times, number)


# ---------------------------------------------------------------- memory


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters


def _libc():
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def _libc_trim() -> None:
    libc = _libc()
    if libc is not None:
        with contextlib.suppress(AttributeError):
            libc.malloc_trim(0)


def _mallopt(mmap_threshold: int, trim_threshold: int) -> bool:
    libc = _libc()
    try:
        return bool(
            libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold)
            and libc.mallopt(_M_TRIM_THRESHOLD, trim_threshold)
        )
    except AttributeError:
        return False


def malloc_for_timing() -> bool:
    """glibc: large-buffer threshold fixed at its dynamic ceiling (see module doc)."""
    return _mallopt(32 * MIB, 64 * MIB)


def malloc_for_memory() -> bool:
    """glibc: every buffer over 128 KiB mapped on its own and unmapped when freed."""
    return _mallopt(128 * 1024, 128 * 1024)


def _status_kib(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def memory_method(device: torch.device) -> str:
    if device.type == "cuda":
        return "torch.cuda.max_memory_allocated during the call, minus allocated before"
    return (
        "process peak RSS (VmHWM) during the call minus RSS before, glibc mmap threshold "
        "pinned to 128 KiB during the call so that RSS follows live memory (Linux)"
    )


@contextlib.contextmanager
def track_peak(device: torch.device) -> Iterator[dict[str, float | None]]:
    """``with track_peak(dev) as m: ...`` then ``m["peak_mib"]`` (``None`` if unknown)."""
    out: dict[str, float | None] = {"peak_mib": None}
    gc.collect()
    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        yield out
        sync(device)
        out["peak_mib"] = (torch.cuda.max_memory_allocated(device) - before) / MIB
        return
    pinned = malloc_for_memory()
    try:
        _libc_trim()
        ok = _reset_peak_rss()
        before = _status_kib("VmRSS")
        yield out
        peak = _status_kib("VmHWM")
    finally:
        if pinned:
            malloc_for_timing()
    if ok and before is not None and peak is not None:
        out["peak_mib"] = max(peak - before, 0) * 1024 / MIB


def peak_memory(fn: Callable[[], Any], device: torch.device) -> float | None:
    """Peak memory (MiB) added by one call of ``fn``; call it after a warm-up."""
    with track_peak(device) as m:
        fn()
    return m["peak_mib"]


# ---------------------------------------------------------------- FLOPs


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of one call (forward and backward), counted by torch's FlopCounterMode
    (matrix multiplies and convolutions; element-wise work is not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


# Dense peak FLOP/s of known cards, for model-FLOP utilisation, from NVIDIA's datasheets
# ("NVIDIA H100 Tensor Core GPU" and "NVIDIA H200 Tensor Core GPU": SXM and PCIe columns;
# "NVIDIA A100 Tensor Core GPU"; "NVIDIA L40S"), whose tensor-core figures quoted with
# sparsity are halved here. ``bf16``: bf16 tensor cores, for autocast steps. ``fp32``:
# TF32 tensor cores, on which cuDNN runs PyTorch's fp32 convolutions by default (the
# steps' FLOPs are nearly all convolutions). The first key found in the device's name
# wins: PCIe before SXM.
PEAK_FLOPS: dict[str, dict[str, float]] = {
    "H100 PCIe": {"bf16": 756.5e12, "fp32": 378e12},
    "H100": {"bf16": 989.5e12, "fp32": 494.5e12},
    "H200": {"bf16": 989.5e12, "fp32": 494.5e12},
    "A100": {"bf16": 312e12, "fp32": 156e12},
    "L40S": {"bf16": 362e12, "fp32": 183e12},
}


def device_name(device: torch.device) -> str | None:
    """The card's name (``torch.cuda.get_device_name``); None for a CPU."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else None


def peak_flops(name: str | None, precision: str) -> float | None:
    """Peak FLOP/s of the card called ``name`` at ``precision`` (``bf16``, or ``fp32``
    for everything without autocast); None for a CPU (``name`` None) or a card not in
    ``PEAK_FLOPS``."""
    for key, peaks in PEAK_FLOPS.items():
        if name is not None and key in name:
            return peaks["bf16" if precision == "bf16" else "fp32"]
    return None


def flop_fields(
    flops: float, seconds: float, peak: float | None, per: str = "step"
) -> tuple[dict[str, Any], str]:
    """Row fields for ``flops`` done in ``seconds`` (one ``per``): GFLOP per ``per``,
    achieved TFLOP/s and MFU (``None`` where the peak is unknown), and the note text."""
    achieved = flops / seconds
    extra: dict[str, Any] = {
        f"gflop_per_{per}": flops / 1e9,
        "achieved_tflops": achieved / 1e12,
        "mfu": achieved / peak if peak else None,
    }
    note = f"{flops / 1e9:.3g} GFLOP/{per} (FlopCounterMode), {achieved / 1e12:.3g} TFLOP/s"
    if peak:
        note += f", MFU {extra['mfu']:.1%}"
    return extra, note


# ---------------------------------------------------------------- machine


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "device": str(device),
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "dtype": "float32 unless a row says otherwise",
        "load_average_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    with contextlib.suppress(AttributeError, OSError):
        info["cpus_usable"] = len(os.sched_getaffinity(0))
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info |= {
            "gpu": props.name,
            "gpu_memory_gib": round(props.total_memory / 2**30, 1),
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
        }
    else:
        info["gpu"] = None
    for dist in ("taming-transformers-rom1504", "vector-quantize-pytorch", "lpips"):
        try:
            from importlib import metadata

            info[dist] = metadata.version(dist)
        except Exception:
            info[dist] = None
    return info


# ---------------------------------------------------------------- results


def row(
    bench: str,
    case: str,
    config: str,
    *,
    cmp: Comparison | None = None,
    baseline: str | None = None,
    median_s: float | None = None,
    items: float | None = None,
    unit: str | None = None,
    peak_mib: float | None = None,
    note: str = "",
    **extra: Any,
) -> dict[str, Any]:
    """One result row. With ``cmp``, the median and IQR come from it and the ratio is
    paired against ``baseline``; ``items`` per call gives a throughput in ``unit``/s."""
    iqr = None
    ratio = None
    if cmp is not None:
        median_s = cmp.median(case)
        iqr = cmp.iqr(case)
        if baseline is not None:
            ratio = cmp.ratio(case, baseline)
    throughput = items / median_s if items is not None and median_s else None
    return {
        "bench": bench,
        "case": case,
        "config": config,
        "median_ms": None if median_s is None else median_s * 1e3,
        "iqr_ms": None if iqr is None else iqr * 1e3,
        "ratio": ratio,
        "vs": baseline if ratio is not None else None,
        "throughput": throughput,
        "unit": unit,
        "peak_mib": peak_mib,
        "note": note,
        **extra,
    }


def not_measured(bench: str, case: str, config: str, why: str) -> dict[str, Any]:
    return row(bench, case, config, note=f"not measured ({why})")


def target(name: str, value: float | None, threshold: float, *, note: str = "") -> dict:
    """A target "value <= threshold"; ``met`` is None when not measured."""
    met = None if value is None else bool(value <= threshold)
    return {"target": name, "value": value, "threshold": threshold, "met": met, "note": note}


# ---------------------------------------------------------------- context


@dataclass
class Context:
    """What every benchmark's ``run(ctx)`` receives.

    ``size``: ``tiny`` (tests: seconds, meaningless numbers), ``quick`` or ``full``.
    ``workdir``: a temporary folder for stand-in weight files. ``options``: switches
    from the command line (``compile``: which compiled variants the GPU step times).
    """

    device: torch.device
    size: str
    workdir: Path
    log: Callable[[str], None] = print
    options: dict[str, Any] = field(default_factory=dict)

    def pick(self, tiny: Any, quick: Any, full: Any) -> Any:
        return {"tiny": tiny, "quick": quick, "full": full}[self.size]


# ---------------------------------------------------------------- models


def paper_f16() -> dict[str, Any]:
    """The paper's f16 encoder/decoder as taming's ``ddconfig`` keys, read from
    ``conf/model/vqgan_f16.yaml`` (one source of truth for the GPU configurations)."""
    from dcvq.config import compose

    model = compose(["model=vqgan_f16"]).model
    return dict(
        ch=model.ch,
        ch_mult=tuple(model.ch_mult),
        num_res_blocks=model.num_res_blocks,
        attn_resolutions=tuple(model.attn_resolutions),
        resolution=model.resolution,
        z_channels=model.z_channels,
    )


# ---------------------------------------------------------------- stand-in weights


def standin_vgg16(folder: Path, *, with_classifier: bool = False) -> Path:
    """A randomly initialised torchvision VGG16 saved like the real file (meaningless
    values, the real loading code): features only for dcvq's LPIPS; with the classifier
    (stride-0 zeros, a few bytes on disk) for torchvision's strict load, which taming's
    LPIPS does through ``vgg16(pretrained=True)``."""
    from torchvision.models import vgg16
    from torchvision.models.vgg import cfgs, make_layers

    name = "vgg16-397923af.pth"
    path = folder / ("full" if with_classifier else "features") / name
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng():
        torch.manual_seed(1234)
        # vgg16().features without building (and initialising) the 120M-weight classifier
        features = make_layers(cfgs["D"], batch_norm=False)
        state = {f"features.{k}": v for k, v in features.state_dict().items()}
    if with_classifier:
        with torch.device("meta"):
            full = vgg16().state_dict()
        for key, value in full.items():
            if key.startswith("classifier."):
                state[key] = torch.zeros(1).expand(value.shape)
    torch.save(state, path)
    return path
