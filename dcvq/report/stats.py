"""The report's statistics: 95% intervals over seeds (the runs of one configuration),
paired comparisons over held-out images (two configurations on the same images), and the
PSNR a configuration gains over its last fifth of training. Student-t intervals (scipy).

Two kinds of interval, for two questions. Over seeds (:func:`ci95`, and
:func:`seed_difference` for two configurations): how much a configuration's number moves
when it is trained again. Over images (:func:`paired`): on these images, does
configuration A (averaged over its seeds) reconstruct better than B; that interval does
not include training noise, so with one seed per row it says nothing about a retraining.
The verdicts ask both.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats as st

from dcvq.report.collect import CODEBOOK_ORDER, Configuration, PerImage, Run

CONFIDENCE = 0.95
#: the metrics eval.json and per_image.csv hold, and which way is better
HIGHER_IS_BETTER = {
    "psnr": True,
    "ssim": True,
    "l1": False,
    "l2": False,
    "lpips": False,
    "fid": False,
}
#: metrics summarised over seeds (fid and lpips only where measured); usage follows
SEED_METRICS = ("psnr", "l1", "l2", "ssim", "lpips", "fid")
#: metrics compared image by image (per_image.csv's columns; FID has no per-image value)
PAIRED_METRICS = ("psnr", "l1", "l2", "ssim", "lpips")
#: the final part of training whose PSNR gain tells whether a run had converged
LAST_FRACTION = 0.2


def finite(values: Sequence[Any]) -> list[float]:
    """The numbers among ``values`` that are finite (None, NaN and infinity dropped)."""
    return [
        float(v)
        for v in values
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    ]


def ci95(values: Sequence[float] | np.ndarray) -> float | None:
    """Half-width of the 95% Student-t interval of the mean of ``values``:
    ``t.ppf(0.975, n - 1) * sd / sqrt(n)`` with ``sd`` over ``n - 1``; None below 2."""
    x = np.asarray(values, dtype=np.float64)
    if x.size < 2:
        return None
    t = st.t.ppf(0.5 + CONFIDENCE / 2, x.size - 1)
    return float(t * x.std(ddof=1) / math.sqrt(x.size))


@dataclass(frozen=True)
class Estimate:
    """A mean over seeds with its 95% half-width (None for fewer than 2 values)."""

    mean: float | None
    ci95: float | None
    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)


def estimate(values: Sequence[Any]) -> Estimate:
    """:class:`Estimate` of the finite numbers among ``values``."""
    x = finite(values)
    return Estimate(float(np.mean(x)) if x else None, ci95(x), tuple(x))


def seed_values(config: Configuration) -> dict[str, list[float]]:
    """Per metric, the value of each finished seed: :data:`SEED_METRICS` that some seed
    measured, ``usage_<codebook>`` (percent of codes used) and, where measured,
    ``distinct_<codebook>`` (percent of codes used and distinct) per codebook, then the token
    prior's ``prior_bits_per_token`` (and per codebook, and ``prior_fid``) where measured."""
    runs = config.finished
    out: dict[str, list[float]] = {}
    for m in SEED_METRICS:
        values = finite([(r.results or {}).get(m) for r in runs])
        if values:
            out[m] = values
    books = [n for n in CODEBOOK_ORDER if any(n in r.codebooks for r in runs)]
    books += [n for r in runs for n in r.codebooks if n not in books]
    for name in dict.fromkeys(books):
        out[f"usage_{name}"] = finite([r.codebooks.get(name, {}).get("usage") for r in runs])
        # distinct code vectors among the used ones (eval.json from before had none)
        distinct = finite([r.codebooks.get(name, {}).get("distinct_usage") for r in runs])
        if distinct:
            out[f"distinct_{name}"] = distinct
    # the token prior trained after the tokenizer (train.py prior=...): eval.json's section
    priors = [(r.results or {}).get("prior") or {} for r in runs]
    keys = ["bits_per_token", *(k for p in priors for k in p if k.startswith("bits_per_token_"))]
    for key in dict.fromkeys([*keys, "fid"]):
        values = finite([p.get(key) for p in priors])
        if values:
            out[f"prior_{key}"] = values
    return out


def seed_estimates(config: Configuration) -> dict[str, Estimate]:
    """:func:`seed_values` as means with 95% intervals over seeds."""
    return {m: estimate(v) for m, v in seed_values(config).items()}


# ---- paired comparisons over images --------------------------------------------------
@dataclass(frozen=True)
class Paired:
    """Mean over images of ``config - reference`` with its paired 95% t-interval."""

    metric: str
    n: int
    mean_diff: float
    low: float | None
    high: float | None
    config_mean: float
    reference_mean: float

    @property
    def higher_is_better(self) -> bool:
        return HIGHER_IS_BETTER.get(self.metric, True)

    @property
    def outcome(self) -> str:
        """``better`` / ``worse`` when the interval lies wholly on one side of 0 (for the
        configuration, in this metric's direction), else ``inconclusive``."""
        return side_of_zero(self.low, self.high, self.higher_is_better)


def side_of_zero(low: float | None, high: float | None, higher_is_better: bool) -> str:
    """``better`` / ``worse`` / ``inconclusive`` for an interval of a difference."""
    if low is None or high is None or low <= 0 <= high:
        return "inconclusive"
    return "better" if (low > 0) == higher_is_better else "worse"


@dataclass(frozen=True)
class SeedDifference:
    """Difference of two configurations' means over their seeds (eval.json's numbers),
    with Welch's 95% interval: what a retraining could move. None bounds when either
    configuration has fewer than 2 seeds."""

    metric: str
    mean_diff: float
    low: float | None
    high: float | None
    n: int
    n_reference: int

    @property
    def outcome(self) -> str:
        return side_of_zero(self.low, self.high, HIGHER_IS_BETTER.get(self.metric, True))


def seed_difference(metric: str, a: Sequence[float], b: Sequence[float]) -> SeedDifference:
    """``mean(a) - mean(b)`` over seeds with Welch's t-interval (unequal variances,
    Welch-Satterthwaite degrees of freedom); identical seeds give a zero-width interval."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    diff = float(x.mean() - y.mean())
    if x.size < 2 or y.size < 2:
        return SeedDifference(metric, diff, None, None, x.size, y.size)
    va, vb = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    se = math.sqrt(va + vb)
    if se == 0:
        return SeedDifference(metric, diff, diff, diff, x.size, y.size)
    df = (va + vb) ** 2 / (va**2 / (x.size - 1) + vb**2 / (y.size - 1))
    half = float(st.t.ppf(0.5 + CONFIDENCE / 2, df) * se)
    return SeedDifference(metric, diff, diff - half, diff + half, x.size, y.size)


def paired(metric: str, a: np.ndarray, b: np.ndarray) -> Paired:
    """``a - b`` image by image (the same images in the same order). An image whose value
    is not finite in either (PSNR of an exact reconstruction) is left out: ``n`` counts
    the images used."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"{metric}: paired values need two equal, non-empty 1-d arrays")
    keep = np.isfinite(a) & np.isfinite(b)
    if not keep.any():
        raise ValueError(f"{metric}: no image has a finite value in both")
    a, b = a[keep], b[keep]
    d = a - b
    mean = float(d.mean())
    half = ci95(d)
    low, high = (None, None) if half is None else (mean - half, mean + half)
    return Paired(metric, d.size, mean, low, high, float(a.mean()), float(b.mean()))


@dataclass
class Comparison:
    """One configuration against its reference, image by image."""

    config: Configuration
    reference: Configuration
    metrics: dict[str, Paired] = field(default_factory=dict)
    seeds: dict[str, SeedDifference] = field(default_factory=dict)  # the same, over seeds
    n_images: int = 0
    n_seeds: int = 0
    n_seeds_reference: int = 0
    notes: list[str] = field(default_factory=list)
    problem: str | None = None  # why there are no numbers

    @property
    def ok(self) -> bool:
        return self.problem is None and bool(self.metrics)


def seed_mean_per_image(config: Configuration) -> tuple[PerImage | None, list[str], str | None]:
    """``(per-image values averaged over the finished seeds, notes, problem)``.

    Seeds are aligned by image name; images some seed lacks are left out (noted)."""
    runs: list[Run] = [r for r in config.finished if r.per_image is not None]
    if not runs:
        why = next((r.per_image_problem for r in config.finished if r.per_image_problem), None)
        return None, [], f"{config.label}: no per-image results ({why or 'no finished run'})"
    first = runs[0].per_image
    assert first is not None
    common = set(first.names).intersection(*(r.per_image.names for r in runs[1:]))  # type: ignore[union-attr]
    names = [n for n in first.names if n in common]
    notes = []
    if any(len(r.per_image.names) != len(names) for r in runs):  # type: ignore[union-attr]
        notes.append(
            f"{config.label}: its seeds evaluated different images; the {len(names)}"
            " they share are used"
        )
    metrics = [m for m in first.values if all(m in r.per_image.values for r in runs)]  # type: ignore[union-attr]
    stacks: dict[str, list[np.ndarray]] = {m: [] for m in metrics}
    for r in runs:
        pi = r.per_image
        assert pi is not None
        index = {n: i for i, n in enumerate(pi.names)}
        order = np.fromiter((index[n] for n in names), dtype=np.int64, count=len(names))
        for m in metrics:
            stacks[m].append(pi.values[m][order])
    return PerImage(names, {m: np.mean(v, axis=0) for m, v in stacks.items()}), notes, None


def compare(config: Configuration, reference: Configuration) -> Comparison:
    """``config - reference`` per image (each averaged over its seeds), for every metric
    of :data:`PAIRED_METRICS` both measured, on the images both evaluated (by name)."""
    out = Comparison(config, reference)
    for what, a, b in (
        ("split", config.split, reference.split),
        ("protocol", config.protocol, reference.protocol),
    ):
        if a != b:
            out.problem = f"not comparable: {what} `{a}` against the reference's `{b}`"
            return out
    mine, notes, problem = seed_mean_per_image(config)
    ref, ref_notes, ref_problem = seed_mean_per_image(reference)
    out.notes = notes + ref_notes
    if mine is None or ref is None:
        out.problem = problem or ref_problem
        return out
    out.n_seeds = sum(r.per_image is not None for r in config.finished)
    out.n_seeds_reference = sum(r.per_image is not None for r in reference.finished)
    ref_index = {n: i for i, n in enumerate(ref.names)}
    keep = [i for i, n in enumerate(mine.names) if n in ref_index]
    if not keep:
        out.problem = (
            f"no held-out image in common ({len(mine.names)} and {len(ref.names)} images,"
            " none of the same name): evaluated on different data"
        )
        return out
    if len(keep) != len(mine.names) or len(keep) != len(ref.names):
        out.notes.append(
            f"the image sets differ ({len(mine.names)} images against the reference's"
            f" {len(ref.names)}): compared on the {len(keep)} both evaluated"
        )
    ref_order = np.array([ref_index[mine.names[i]] for i in keep], dtype=np.int64)
    keep_idx = np.array(keep, dtype=np.int64)
    mine_seeds, ref_seeds = seed_values(config), seed_values(reference)
    for m in PAIRED_METRICS:
        if m in mine.values and m in ref.values:
            a, b = mine.values[m][keep_idx], ref.values[m][ref_order]
            if (np.isfinite(a) & np.isfinite(b)).any():
                out.metrics[m] = paired(m, a, b)
        if mine_seeds.get(m) and ref_seeds.get(m):
            out.seeds[m] = seed_difference(m, mine_seeds[m], ref_seeds[m])
    out.n_images = len(keep)
    return out


def find_reference(
    config: Configuration, section: Sequence[Configuration], name: str | None = None
) -> Configuration | None:
    """The row ``config`` is compared with, among the finished rows of its ``section``.

    ``name`` (``--reference``): a row answering to it (:meth:`Configuration.names`), the
    one with ``config``'s codebook size when there are several. Default: VQ-GAN, the
    ``vq`` option at ``config``'s codebook size when there is one, else the first VQ-GAN
    row. None when there is none, or when it is ``config`` itself."""
    rows = [c for c in section if c.ok]
    if name is not None:
        found = [c for c in rows if name.lower() in c.names()]
    else:
        found = [c for c in rows if c.representative.model == "VQ-GAN"]
        plain = [c for c in found if c.representative.quantizer in ("vq", "")]
        found = plain + [c for c in found if c not in plain]
    same = [c for c in found if c.codebook_size == config.codebook_size]
    chosen = (same or found or [None])[0]
    return None if chosen is config else chosen


def comparisons(section: Sequence[Configuration], reference: str | None = None) -> list[Comparison]:
    """Every finished row of one section against its :func:`find_reference` row."""
    out = []
    for config in section:
        if not config.ok:
            continue
        ref = find_reference(config, section, reference)
        if ref is not None:
            out.append(compare(config, ref))
    return out


# ---- training curves -----------------------------------------------------------------
def psnr_points(run: Run) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, psnr)`` of the run's evaluations (metrics.jsonl and eval.json)."""
    points = [(h["step"], h.get("psnr")) for h in run.history]
    points = [(s, p) for s, p in points if finite([p])]
    steps = np.array([s for s, _ in points], dtype=np.float64)
    return steps, np.array([p for _, p in points], dtype=np.float64)


def psnr_gain_last_fifth(run: Run) -> float | None:
    """PSNR at the final evaluation minus PSNR at 80% of its step (linear between the
    evaluations around it): what the last fifth of training still added. None when the
    run has not finished or has no evaluation at or before 80% of training."""
    if not run.ok or not isinstance(run.step, int) or run.step <= 0:
        return None
    steps, psnr = psnr_points(run)
    start = (1 - LAST_FRACTION) * run.step
    if steps.size < 2 or steps[0] > start or steps[-1] != run.step:
        return None
    return float(psnr[-1] - np.interp(start, steps, psnr))


def config_gain_last_fifth(config: Configuration) -> Estimate:
    """:func:`psnr_gain_last_fifth` over the configuration's finished seeds."""
    return estimate([psnr_gain_last_fifth(r) for r in config.finished])


def psnr_curve(config: Configuration) -> tuple[np.ndarray, ...]:
    """``(steps, mean, min, max)`` of validation PSNR over the seeds, at every step some
    seed evaluated (the finished seeds when there are any, else every run)."""
    runs = config.finished or config.runs
    by_step: dict[float, list[float]] = {}
    for run in runs:
        for s, p in zip(*psnr_points(run), strict=True):
            by_step.setdefault(float(s), []).append(float(p))
    steps = np.array(sorted(by_step), dtype=np.float64)
    vals = [np.array(by_step[s]) for s in steps]
    return (
        steps,
        np.array([v.mean() for v in vals]),
        np.array([v.min() for v in vals]),
        np.array([v.max() for v in vals]),
    )
