"""Intervals that resample source photos: the held-out tiles of one photo are not
independent samples (neighbouring tiles share content, so a row that reconstructs one
photo well does so on all its tiles), and an interval that treats them as independent
is too narrow. The cluster bootstrap resamples photos with replacement, all tiles of a
photo together, and averages the paired differences of the tiles drawn; its percentile
interval is what another draw of photos could give. A dataset whose images are each
their own source (Fashion-MNIST) gets the ordinary bootstrap of images."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

#: resamples per interval, and the generator's seed: the same report twice gives the same
#: intervals
RESAMPLES = 4000
SEED = 2024
CONFIDENCE = 0.95
METHOD = (
    f"cluster bootstrap over source photos: {RESAMPLES:,} resamples of the photos with"
    " replacement (all tiles of a photo together), the mean paired difference over the"
    f" tiles drawn, {CONFIDENCE:.0%} percentile interval (numpy seed {SEED})"
)
_CHUNK = 2_000_000  # index draws per chunk of resamples: bounds the memory


@dataclass(frozen=True)
class ClusterInterval:
    """The mean paired difference over images and its percentile interval from
    resampling source photos; no interval (None) with fewer than two photos."""

    metric: str
    mean: float
    low: float | None
    high: float | None
    n_sources: int
    n_images: int


@dataclass(frozen=True)
class SourceMean:
    """One source photo's mean paired difference over its tiles."""

    source: str
    n_images: int
    mean_diff: float


def cluster_intervals(
    diffs: Mapping[str, np.ndarray],
    sources: Sequence[str],
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> dict[str, ClusterInterval]:
    """For each metric, :class:`ClusterInterval` of the per-image ``diffs`` (aligned
    with ``sources``, each image's source photo). Non-finite differences are left out;
    every metric is resampled with the same draws of photos."""
    groups = sorted(set(sources))
    index = {s: i for i, s in enumerate(groups)}
    of = np.fromiter((index[s] for s in sources), dtype=np.int64, count=len(sources))
    k = len(groups)
    metrics = list(diffs)
    sums = np.zeros((k, len(metrics)))
    counts = np.zeros((k, len(metrics)))
    for j, m in enumerate(metrics):
        d = np.asarray(diffs[m], dtype=np.float64)
        if d.shape != of.shape:
            raise ValueError(f"{m}: {d.size} differences for {of.size} images")
        keep = np.isfinite(d)
        np.add.at(sums[:, j], of[keep], d[keep])
        np.add.at(counts[:, j], of[keep], 1.0)
    total_n = counts.sum(axis=0)
    means = np.divide(
        sums.sum(axis=0), total_n, out=np.full(len(metrics), np.nan), where=total_n > 0
    )
    stats = _resample(sums, counts, k, resamples, seed) if k >= 2 else None
    out = {}
    for j, m in enumerate(metrics):
        n_src = int((counts[:, j] > 0).sum())
        low = high = None
        if stats is not None and n_src >= 2:
            col = stats[:, j]
            col = col[np.isfinite(col)]
            tail = 100 * (1 - CONFIDENCE) / 2
            low, high = (float(v) for v in np.percentile(col, [tail, 100 - tail]))
        out[m] = ClusterInterval(m, float(means[j]), low, high, n_src, int(total_n[j]))
    return out


def _resample(
    sums: np.ndarray, counts: np.ndarray, k: int, resamples: int, seed: int
) -> np.ndarray:
    """``resamples x metrics``: each resample's mean difference over the tiles of ``k``
    photos drawn with replacement (a ratio: photos have different numbers of tiles)."""
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK // k)
    out = []
    for start in range(0, resamples, chunk):
        n = min(chunk, resamples - start)
        draw = rng.integers(0, k, size=(n, k))
        # how often each photo was drawn, per resample: the weights of its sums
        weights = np.bincount((draw + k * np.arange(n)[:, None]).ravel(), minlength=n * k)
        weights = weights.reshape(n, k).astype(np.float64)
        num, den = weights @ sums, weights @ counts
        out.append(np.divide(num, den, out=np.full_like(num, np.nan), where=den > 0))
    return np.concatenate(out)


def source_means(diffs: np.ndarray, sources: Sequence[str]) -> list[SourceMean]:
    """Each source photo's mean difference over its tiles (finite values only), in order
    of first appearance."""
    d = np.asarray(diffs, dtype=np.float64)
    by: dict[str, list[float]] = {}
    for s, v in zip(sources, d, strict=True):
        if np.isfinite(v):
            by.setdefault(s, []).append(float(v))
    return [SourceMean(s, len(v), float(np.mean(v))) for s, v in by.items()]
