"""The report's statistics: 95% intervals over seeds (the runs of one configuration),
paired comparisons over held-out images (two configurations on the same images), and the
PSNR a configuration gains over its last fifth of training. Student-t intervals (scipy),
and the cluster bootstrap over source photos (:mod:`dcvq.report.cluster`).

Three intervals, for three questions. Over seeds (:func:`ci95`, and
:func:`seed_difference` for two configurations): how much a configuration's number moves
when it is trained again. Over images (:func:`paired`): on these images, does
configuration A (averaged over its seeds) reconstruct better than B. Over source photos
(the cluster bootstrap): would it on other photos, the tiles of one photo being drawn
together. The image interval includes neither training noise nor the photos' own
correlation; the verdicts ask the photo interval and the seed interval.

Every number is on the row's judged split (:attr:`Configuration.judged`): the test split
where the runs scored one, else the validation split.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats as st

from dcvq.report.cluster import ClusterInterval, SourceMean, cluster_intervals, source_means
from dcvq.report.collect import CODEBOOK_ORDER, PerImage, Run, source_of
from dcvq.report.rows import Configuration

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
#: how the report writes each metric, and to how many decimals
NAMES = {"fid": "FID", "psnr": "PSNR", "l1": "L1", "l2": "L2", "ssim": "SSIM", "lpips": "LPIPS"}
DIGITS = {"fid": 2, "psnr": 2, "l1": 4, "l2": 4, "ssim": 4, "lpips": 4}
#: metrics summarised over seeds (fid and lpips only where measured); usage follows
SEED_METRICS = ("psnr", "l1", "l2", "ssim", "lpips", "fid")
#: metrics compared image by image (per_image.csv's columns; FID has no per-image value)
PAIRED_METRICS = ("psnr", "l1", "l2", "ssim", "lpips")
#: the final part of training whose PSNR gain the curves show (a picture of convergence;
#: the evidence is the budget check, :mod:`dcvq.report.budget`)
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


def seed_values(config: Configuration, kind: str | None = None) -> dict[str, list[float]]:
    """Per metric, the value of each finished seed on the ``kind`` split (``val`` or
    ``test``; default: the row's judged split): :data:`SEED_METRICS` that some seed
    measured, ``usage_<codebook>`` (percent of codes used) and, where measured,
    ``distinct_<codebook>`` (percent of codes used and distinct) per codebook, then the token
    prior's ``prior_bits_per_token`` (and per codebook, and ``prior_fid``) where measured."""
    runs = config.finished
    kind = kind or config.judged
    out: dict[str, list[float]] = {}
    for m in SEED_METRICS:
        values = finite([(r.results_on(kind) or {}).get(m) for r in runs])
        if values:
            out[m] = values
    books_of = [r.codebooks_on(kind) for r in runs]
    books = [n for n in CODEBOOK_ORDER if any(n in b for b in books_of)]
    books += [n for b in books_of for n in b if n not in books]
    for name in dict.fromkeys(books):
        out[f"usage_{name}"] = finite([b.get(name, {}).get("usage") for b in books_of])
        # distinct code vectors among the used ones (eval.json from before had none)
        distinct = finite([b.get(name, {}).get("distinct_usage") for b in books_of])
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


def combined_outcome(cluster: str, seeds: str | None) -> str:
    """A pair's outcome on one metric: ``better`` (``worse``) when the interval over
    source photos and the interval over seeds both exclude 0 on that side, else
    ``inconclusive`` (also without an interval over seeds: one seed)."""
    return cluster if seeds is not None and cluster == seeds else "inconclusive"


@dataclass
class Comparison:
    """One configuration against its reference: image by image (with the image and the
    source-photo intervals) and over seeds, on the rows' judged split."""

    config: Configuration
    reference: Configuration
    metrics: dict[str, Paired] = field(default_factory=dict)  # over images
    cluster: dict[str, ClusterInterval] = field(default_factory=dict)  # over source photos
    seeds: dict[str, SeedDifference] = field(default_factory=dict)  # over seeds
    per_source: dict[str, list[SourceMean]] = field(default_factory=dict)
    n_images: int = 0
    n_seeds: int = 0
    n_seeds_reference: int = 0
    notes: list[str] = field(default_factory=list)
    device_flag: str | None = None  # the rows trained on different devices / torch
    problem: str | None = None  # why there are no numbers

    @property
    def ok(self) -> bool:
        return self.problem is None and bool(self.metrics)

    @property
    def n_sources(self) -> int:
        return max((c.n_sources for c in self.cluster.values()), default=0)

    def cluster_outcome(self, metric: str) -> str:
        c = self.cluster.get(metric)
        if c is None:
            return "inconclusive"
        return side_of_zero(c.low, c.high, HIGHER_IS_BETTER.get(metric, True))

    def seed_outcome(self, metric: str) -> str | None:
        """``better`` / ``worse`` / ``inconclusive`` over seeds; None for one seed."""
        s = self.seeds.get(metric)
        return s.outcome if s is not None and s.low is not None else None

    def outcome(self, metric: str) -> str:
        """:func:`combined_outcome` of the photo and seed intervals."""
        return combined_outcome(self.cluster_outcome(metric), self.seed_outcome(metric))


def seed_mean_per_image(config: Configuration) -> tuple[PerImage | None, list[str], str | None]:
    """``(per-image values averaged over the finished seeds, notes, problem)`` on the
    row's judged split.

    Seeds are aligned by image name; images some seed lacks are left out (noted)."""
    kind = config.judged
    found = [(r, r.per_image_on(kind)) for r in config.finished]
    runs = [(r, pi) for r, pi in found if pi is not None]
    if not runs:
        why = next((r.per_image_problem for r in config.finished if r.per_image_problem), None)
        if why is None and config.finished:
            why = f"per_image.csv has no rows of split `{config.split}`"
        return None, [], f"{config.label}: no per-image results ({why or 'no finished run'})"
    first = runs[0][1]
    common = set(first.names).intersection(*(pi.names for _, pi in runs[1:]))
    names = [n for n in first.names if n in common]
    notes = []
    if any(len(pi.names) != len(names) for _, pi in runs):
        notes.append(
            f"{config.label}: its seeds evaluated different images; the {len(names)}"
            " they share are used"
        )
    metrics = [m for m in first.values if all(m in pi.values for _, pi in runs)]
    stacks: dict[str, list[np.ndarray]] = {m: [] for m in metrics}
    for _, pi in runs:
        index = {n: i for i, n in enumerate(pi.names)}
        order = np.fromiter((index[n] for n in names), dtype=np.int64, count=len(names))
        for m in metrics:
            stacks[m].append(pi.values[m][order])
    return PerImage(names, {m: np.mean(v, axis=0) for m, v in stacks.items()}), notes, None


def device_difference(config: Configuration, reference: Configuration) -> str | None:
    """``cuda · torch 2.11 against cpu · torch 2.14`` when the two rows did not train on
    one device type and torch version; None when they did."""
    if config.devices == reference.devices:
        return None
    return f"{config.device_text} against {reference.device_text}"


def compare(config: Configuration, reference: Configuration) -> Comparison:
    """``config - reference`` per image (each averaged over its seeds), for every metric
    of :data:`PAIRED_METRICS` both measured, on the images both evaluated (by name) of
    the rows' judged split; with the interval over source photos and over seeds. Made
    once per pair (kept on ``config``)."""
    if id(reference) in config.compared:
        return config.compared[id(reference)]
    out = config.compared[id(reference)] = Comparison(config, reference)
    for what, a, b in (
        ("split", config.split, reference.split),
        ("protocol", config.protocol, reference.protocol),
    ):
        if a != b:
            out.problem = f"not comparable: {what} `{a}` against the reference's `{b}`"
            return out
    out.device_flag = device_difference(config, reference)
    if config.max_steps != reference.max_steps:
        out.notes.append(
            f"trained for different budgets: {config.max_steps} against {reference.max_steps} steps"
        )
    mine, notes, problem = seed_mean_per_image(config)
    ref, ref_notes, ref_problem = seed_mean_per_image(reference)
    out.notes += notes + ref_notes
    if mine is None or ref is None:
        out.problem = problem or ref_problem
        return out
    out.n_seeds = sum(r.per_image_on(config.judged) is not None for r in config.finished)
    out.n_seeds_reference = sum(
        r.per_image_on(reference.judged) is not None for r in reference.finished
    )
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
    sources = [source_of(mine.names[i]) for i in keep]
    mine_seeds, ref_seeds = seed_values(config), seed_values(reference)
    diffs = {}
    for m in PAIRED_METRICS:
        if m in mine.values and m in ref.values:
            a, b = mine.values[m][keep_idx], ref.values[m][ref_order]
            if (np.isfinite(a) & np.isfinite(b)).any():
                out.metrics[m] = paired(m, a, b)
                diffs[m] = np.where(np.isfinite(a) & np.isfinite(b), a - b, np.nan)
                out.per_source[m] = source_means(diffs[m], sources)
        if mine_seeds.get(m) and ref_seeds.get(m):
            out.seeds[m] = seed_difference(m, mine_seeds[m], ref_seeds[m])
    out.cluster = cluster_intervals(diffs, sources) if diffs else {}
    out.n_images = len(keep)
    return out


def find_reference(
    config: Configuration, section: Sequence[Configuration], name: str | None = None
) -> Configuration | None:
    """The row ``config`` is compared with, among the finished rows of its ``section``.

    ``name`` (``--reference``): a row answering to it (:meth:`Configuration.names`), the
    one with ``config``'s codebook size when there are several. Default: VQ-GAN, the
    ``vq`` option at ``config``'s codebook size when there is one, else the first VQ-GAN
    row. Among equals, one trained on ``config``'s device and torch version. None when
    there is none, or when it is ``config`` itself."""
    rows = [c for c in section if c.ok]
    if name is not None:
        found = [c for c in rows if name.lower() in c.names()]
    else:
        found = [c for c in rows if c.representative.model == "VQ-GAN"]
        plain = [c for c in found if c.representative.quantizer in ("vq", "")]
        found = plain + [c for c in found if c not in plain]
    same = [c for c in found if c.codebook_size == config.codebook_size]
    candidates = same or found
    here = [c for c in candidates if c.devices == config.devices]
    chosen = (here or candidates or [None])[0]
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
