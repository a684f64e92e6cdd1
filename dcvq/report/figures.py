"""A report's figures, drawn with matplotlib on its Agg canvas (no display, no pyplot
state): codebook usage by code index as in the paper's Figure 3 and the same inputs
reconstructed by every row as in its Figure 4 (one run per configuration: its lowest
seed), each metric per configuration with its 95% interval over seeds, validation PSNR
over training steps, the codebooks' geometry over training steps (distinct codes,
effective rank, nearest-neighbour distance), validation PSNR against the values
``--select`` chose among, and PSNR against bits per image (rate-distortion)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure, SubFigure
from matplotlib.font_manager import FontProperties
from PIL import Image

from dcvq.images import split_reconstruction_grid
from dcvq.report.collect import CODEBOOK_ORDER, DUAL, TEST, Run
from dcvq.report.rate import config_bits
from dcvq.report.rows import Configuration, Value, show_values, steps_text
from dcvq.report.sections import Section
from dcvq.report.stats import (
    LAST_FRACTION,
    NAMES,
    ci95,
    config_gain_last_fifth,
    estimate,
    psnr_curve,
    psnr_points,
    seed_values,
)

# The paper's Figure 3 draws the global codebook red, local (and VQ-GAN's single codebook)
# blue. RGB 0-255, as they appear in the PNG.
COLOURS = {"global": (214, 39, 40), "local": (31, 119, 180)}
DEFAULT_COLOUR = (31, 119, 180)
DEAD_COLOUR = (170, 170, 170)
DPI = 100
PANEL_INCHES = (6.4, 2.2)  # one codebook's usage panel
MAX_COLUMNS = 512  # usage columns per panel (>= 1 px each): more codes are folded
FONT_SIZE = 9
MIN_ROW_PX = 48  # tiny grids are enlarged (pixel-exact) to at least this height


def fmt(value: Any, digits: int) -> str:
    """``value`` to ``digits`` decimals; "?" for none."""
    return "?" if not isinstance(value, int | float) else f"{value:.{digits}f}"


def new_figure(width: float, height: float, **kwargs: Any) -> Figure:
    """A figure of ``width`` x ``height`` inches on an Agg canvas."""
    fig = Figure(figsize=(width, height), dpi=DPI, **kwargs)
    FigureCanvasAgg(fig)  # Agg, never the interactive backend: reports run headless
    return fig


def save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, facecolor="white")
    return path


def _rgb(colour: tuple[int, int, int]) -> tuple[float, ...]:
    return tuple(c / 255 for c in colour)


def _text_px(text: str, size: float = FONT_SIZE) -> tuple[float, float]:
    """Width and height in pixels of (multi-line) ``text`` as the Agg renderer draws it."""
    renderer = FigureCanvasAgg(Figure(dpi=DPI)).get_renderer()
    prop = FontProperties(size=size)
    sizes = [
        renderer.get_text_width_height_descent(ln or " ", prop, ismath=False)
        for ln in text.splitlines()
    ]
    return max(w for w, _, _ in sizes), 1.2 * size * DPI / 72 * len(sizes)


# ---- Figure 3: codebook usage --------------------------------------------------------
def fold_counts(
    counts: np.ndarray, max_columns: int = MAX_COLUMNS
) -> tuple[np.ndarray, np.ndarray, int]:
    """``(peak, dead, codes per column)``: adjacent codes share a column when there are
    more than ``max_columns``; a column shows its busiest code and counts as dead when
    any of its codes is, so neither a used nor a dead code drops out of the picture."""
    n = counts.size
    per_col = max(1, math.ceil(n / max_columns))
    padded = np.zeros(math.ceil(n / per_col) * per_col, dtype=np.int64)
    padded[:n] = counts
    cols = padded.reshape(-1, per_col)
    dead = (cols == 0).any(axis=1)
    if n % per_col:  # the padding of the last column is not a dead code
        dead[-1] = (counts[(len(cols) - 1) * per_col :] == 0).any()
    return cols.max(axis=1), dead, per_col


def usage_panel(ax: Axes, name: str, stats: dict[str, Any]) -> None:
    """Code counts by code index for one codebook; dead codes as a grey strip below."""
    counts = np.asarray(stats.get("counts") or [], dtype=np.int64)
    n = counts.size
    peak, dead, per_col = fold_counts(counts)
    edges = np.minimum(np.arange(peak.size + 1) * per_col, n)
    top = max(int(peak.max(initial=0)), 1)
    colour = _rgb(COLOURS.get(name, DEFAULT_COLOUR))
    ax.stairs(peak, edges, fill=True, color=colour, linewidth=0)
    strip = 0.1 * top
    ax.stairs(
        np.where(dead, -0.03 * top, -strip),
        edges,
        baseline=-strip,
        fill=True,
        color=_rgb(DEAD_COLOUR),
        linewidth=0,
    )
    ax.set_xlim(0, max(n, 1))
    ax.set_ylim(-strip, 1.05 * top)
    ax.set_yticks([0, top], [f"{0}", f"{top:,}"])
    ax.set_xlabel("code index", fontsize=FONT_SIZE - 1, labelpad=1)
    ax.tick_params(labelsize=FONT_SIZE - 1)
    ax.spines[["top", "right"]].set_visible(False)
    used = stats.get("used", int((counts > 0).sum()))
    ax.set_title(
        f"{name}: {used}/{n} codes used ({fmt(stats.get('usage'), 1)}%), "
        f"{stats.get('dead', '?')} dead, perplexity {fmt(stats.get('perplexity'), 1)}",
        fontsize=FONT_SIZE,
        loc="left",
    )


def _books(run: Run) -> dict[str, dict[str, Any]]:
    """The codebooks of its judged split (test where it has one) that have counts."""
    books = run.codebooks_on(TEST) or run.codebooks
    return {n: b for n, b in books.items() if b.get("counts")}


def _draw_usage(fig: Figure | SubFigure, run: Run, ncols: int) -> None:
    books = _books(run)
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    for ax, (name, stats) in zip(axes, books.items(), strict=False):
        usage_panel(ax, name, stats)
    for ax in axes[len(books) :]:
        ax.set_visible(False)
    header = f"{run.dataset} · {run.paper_name_sized} · step {run.step} · {run.rel}"
    fig.suptitle(header, fontsize=FONT_SIZE + 1, x=0.01, ha="left")


def usage_section_figure(runs: Sequence[Run]) -> Figure | None:
    """Every run of a section, one under another, a panel per codebook side by side
    (global left, local right) in the same columns."""
    runs = [r for r in runs if _books(r)]
    if not runs:
        return None
    ncols = max(len(_books(r)) for r in runs)
    fig = new_figure(PANEL_INCHES[0] * ncols, PANEL_INCHES[1] * len(runs), layout="constrained")
    for sub, run in zip(fig.subfigures(len(runs), 1, squeeze=False)[:, 0], runs, strict=True):
        _draw_usage(sub, run, ncols)
    return fig


# ---- Figure 4: reconstructions -------------------------------------------------------
def reconstruction_figure(runs: Sequence[Run]) -> Figure | None:
    """The inputs, then each run's reconstructions of them, labelled; one axes per row.

    Runs of one section share their inputs (the first evaluation batch of the same
    split); a run whose inputs differ gets its own inputs row above its reconstructions.
    Images are shown pixel for pixel (tiny grids enlarged by a whole factor).
    """
    rows: list[tuple[str, Image.Image]] = []
    inputs: Image.Image | None = None
    for run in runs:
        if run.sample is None:
            continue
        try:
            top, bottom = split_reconstruction_grid(run.sample)
        except OSError:
            continue  # a grid being written while we read: skip it, not the report
        if inputs is None or top.size != inputs.size or top.tobytes() != inputs.tobytes():
            inputs = top
            rows.append(("inputs" if not rows else f"inputs of\n{run.rel}", top))
        step = re.search(r"(\d+)", run.sample.stem)
        size = f"{run.codebook_size} codes" if run.codebook_size else "?"
        text = f"{run.paper_name}\n{size}, step {int(step.group(1)) if step else '?'}"
        text += f", seed {run.seed}" if run.seed is not None and run.seed != 0 else ""
        text += "" if run.ok else " (unfinished)"
        rows.append((text, bottom))
    if not rows:
        return None
    labels = [_text_px(t) for t, _ in rows]
    min_h = max(MIN_ROW_PX, max(h for _, h in labels) + 12)
    scale = max(1, math.ceil(min_h / min(im.height for _, im in rows)))
    label_w = max(160, math.ceil(max(w for w, _ in labels)) + 16)
    width = label_w + scale * max(im.width for _, im in rows)
    height = scale * sum(im.height for _, im in rows)
    fig = new_figure(width / DPI, height / DPI)
    y = height
    for text, im in rows:
        w, h = im.width * scale, im.height * scale
        y -= h
        ax = fig.add_axes((label_w / width, y / height, w / width, h / height))
        ax.imshow(np.asarray(im), interpolation="nearest", aspect="auto")
        ax.set_axis_off()
        fig.text(8 / width, (y + h / 2) / height, text, fontsize=FONT_SIZE, va="center")
    return fig


# ---- metrics with their intervals over seeds -----------------------------------------
METRIC_NAMES = NAMES | {"usage_global": "usage global %", "usage_local": "usage local %"}
METRIC_NAMES |= {"usage_codebook": "usage %", "distinct_global": "distinct global %"}
METRIC_NAMES |= {"distinct_local": "distinct local %", "distinct_codebook": "distinct %"}


def metrics_figure(configs: Sequence[Configuration]) -> Figure | None:
    """One panel per metric (PSNR, L1, L2, SSIM, LPIPS and FID where measured, usage per
    codebook): each configuration's mean over seeds with its 95% t-interval as an error
    bar, and each seed's value as a dot."""
    configs = [c for c in configs if c.ok]
    values = [seed_values(c) for c in configs]
    metrics = [m for m in METRIC_NAMES if any(v.get(m) for v in values)]
    for v in values:  # one panel per metric, however many rows measured it
        metrics += [m for m in v if v[m] and m not in metrics]
    if not configs or not metrics:
        return None
    labels = [c.label for c in configs]
    # rotated labels hang below each panel: leave their length (45 degrees) under it
    label_in = max(_text_px(t, FONT_SIZE - 1)[0] for t in labels) / DPI * 0.71
    cols = min(4, len(metrics))
    rows = math.ceil(len(metrics) / cols)
    width = max(2.6, 0.45 * len(configs) + 0.8)
    fig = new_figure(width * cols, rows * (2.2 + label_in) + 0.3, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    x = np.arange(len(configs))
    for ax, m in zip(axes, metrics, strict=False):
        for i, v in enumerate(values):
            seeds = np.asarray(v.get(m, []), dtype=float)
            if seeds.size == 0:
                continue
            half = ci95(seeds) or 0.0  # the interval of summary.csv; 0 for one seed
            ax.errorbar(i, seeds.mean(), yerr=half, fmt="o", color="C0", capsize=4, ms=5)
            ax.plot(np.full(seeds.size, i + 0.15), seeds, ".", color="0.5", ms=4)
        ax.set_xticks(x, labels, rotation=45, ha="right", fontsize=FONT_SIZE - 1)
        ax.set_xlim(-0.5, len(configs) - 0.5)
        ax.set_title(METRIC_NAMES.get(m, m), fontsize=FONT_SIZE)
        ax.tick_params(labelsize=FONT_SIZE - 1)
        ax.spines[["top", "right"]].set_visible(False)
    for ax in axes[len(metrics) :]:
        ax.set_visible(False)
    fig.suptitle("mean over seeds, 95% interval; grey: each seed", fontsize=FONT_SIZE)
    return fig


# ---- validation PSNR over training -----------------------------------------------------
def psnr_curve_figure(configs: Sequence[Configuration]) -> Figure | None:
    """Validation PSNR over steps, one line per configuration (mean over seeds) with the
    seeds' min-max band, its budget-check runs (twice the steps) dashed; the last fifth
    of training shaded and each row's PSNR gain over it in the legend (a picture of
    convergence: the budget check is the evidence). None when no run has two
    evaluations."""
    curves = [(c, psnr_curve(c)) for c in configs]
    curves = [(c, cv) for c, cv in curves if cv[0].size >= 2]
    if not curves:
        return None
    fig = new_figure(7.0, 4.0, layout="constrained")
    ax = fig.subplots()
    end = max(float(cv[0][-1]) for _, cv in curves)
    ax.axvspan((1 - LAST_FRACTION) * end, end, color="0.92", zorder=0, label="last fifth")
    for i, (c, (steps, mean, low, high)) in enumerate(curves):
        gain = config_gain_last_fifth(c)
        text = c.label
        if gain.mean is not None:
            text += f" ({gain.mean:+.2f} dB in the last fifth)"
        colour = f"C{i % 10}"
        ax.plot(steps, mean, "-o", color=colour, ms=3, lw=1.5, label=text)
        if len(c.finished) > 1:
            ax.fill_between(steps, low, high, color=colour, alpha=0.2, lw=0)
        for j, run in enumerate(r for r in c.budget_runs if r.ok):
            at, psnr = psnr_points(run)
            label = f"{c.label} at {steps_text(run.max_steps)} (budget check)" if j == 0 else None
            ax.plot(at, psnr, "--", color=colour, lw=1.0, label=label)
    ax.set_xlabel("step", fontsize=FONT_SIZE)
    ax.set_ylabel("validation PSNR (dB)", fontsize=FONT_SIZE)
    ax.tick_params(labelsize=FONT_SIZE - 1)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(fontsize=FONT_SIZE - 1, frameon=False)
    ax.set_title("mean over seeds, band: min to max over seeds", fontsize=FONT_SIZE)
    return fig


# ---- codebook geometry over training ---------------------------------------------------
#: eval.json's per-codebook keys the geometry figure draws, with their axis titles
GEOMETRY = {
    "distinct": "distinct codes",
    "effective_rank": "effective rank",
    "nn_distance_p5": "nearest-neighbour distance (p5) / RMS norm",
}


def codebook_curve(config: Configuration, book: str, key: str) -> tuple[np.ndarray, ...]:
    """``(steps, mean, min, max)`` over the seeds of a codebook statistic of every
    evaluation (metrics.jsonl and eval.json: ``codebooks.<book>.<key>``), at every step
    some seed has it (the finished seeds when there are any, else every run)."""
    by_step: dict[float, list[float]] = {}
    for run in config.finished or config.runs:
        for record in run.history:
            value = ((record.get("codebooks") or {}).get(book) or {}).get(key)
            if isinstance(value, int | float) and math.isfinite(value):
                by_step.setdefault(float(record["step"]), []).append(float(value))
    steps = np.array(sorted(by_step), dtype=np.float64)
    vals = [np.array(by_step[s]) for s in steps]
    return (
        steps,
        np.array([v.mean() for v in vals]),
        np.array([v.min() for v in vals]) if vals else np.array([]),
        np.array([v.max() for v in vals]) if vals else np.array([]),
    )


def codebook_geometry_figure(configs: Sequence[Configuration]) -> Figure | None:
    """The codebooks' geometry over training steps: a row of panels per statistic
    (:data:`GEOMETRY`), a column per codebook name (global, local, codebook), one line
    per configuration (mean over seeds, the seeds' min-max band). None when no
    configuration has two evaluations with these statistics (runs from before them)."""
    books: list[str] = []
    for c in configs:
        for run in c.finished or c.runs:
            for record in run.history:
                books += [b for b in record.get("codebooks") or {} if b not in books]
    books.sort(key=lambda b: (CODEBOOK_ORDER.index(b) if b in CODEBOOK_ORDER else 99, b))
    curves = {
        (i, b, k): codebook_curve(c, b, k)
        for i, c in enumerate(configs)
        for b in books
        for k in GEOMETRY
    }
    if not any(cv[0].size >= 2 for cv in curves.values()):
        return None
    # the statistics some run recorded (runs from before a statistic existed lack it)
    recorded = {k for (_, _, k), cv in curves.items() if cv[0].size}
    stats = {k: title for k, title in GEOMETRY.items() if k in recorded}
    fig = new_figure(4.2 * len(books), 2.6 * len(stats) + 0.6, layout="constrained")
    axes = fig.subplots(len(stats), len(books), squeeze=False)
    for (i, b, k), (steps, mean, low, high) in curves.items():
        if steps.size == 0:
            continue
        ax = axes[list(stats).index(k), books.index(b)]
        colour = f"C{i % 10}"
        ax.plot(steps, mean, "-o", color=colour, ms=3, lw=1.5, label=configs[i].label)
        if len(configs[i].finished) > 1:
            ax.fill_between(steps, low, high, color=colour, alpha=0.2, lw=0)
    for row, title in enumerate(stats.values()):
        for col, b in enumerate(books):
            ax = axes[row, col]
            ax.set_title(f"{b}: {title}", fontsize=FONT_SIZE)
            ax.tick_params(labelsize=FONT_SIZE - 1)
            ax.spines[["top", "right"]].set_visible(False)
            if row == len(stats) - 1:
                ax.set_xlabel("step", fontsize=FONT_SIZE)
    handles, labels = [], []
    for ax in axes.ravel():  # each configuration once, whichever panel drew it
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in labels:
                handles.append(h)
                labels.append(label)
    fig.legend(handles, labels, loc="outside lower center", fontsize=FONT_SIZE - 1,
               frameon=False, ncols=min(3, len(labels)))  # fmt: skip
    fig.suptitle("codebook geometry over training: mean over seeds, band: min to max over seeds",
                 fontsize=FONT_SIZE)  # fmt: skip
    return fig


# ---- --select: validation PSNR against the values chosen among ------------------------
def _log_scale(keys: Sequence[str], values: Sequence[Value]) -> bool:
    """A learning rate, or positive numbers spanning a decade or more: a log axis."""
    nums = [v[0] for v in values if isinstance(v[0], int | float) and not isinstance(v[0], bool)]
    if len(keys) != 1 or len(nums) != len(values) or min(nums, default=0) <= 0:
        return False
    return keys[0].rsplit(".", 1)[-1] in ("lr", "base_lr") or max(nums) >= 10 * min(nums)


def selection_figure(configs: Sequence[Configuration]) -> Figure | None:
    """Each row's selection runs: validation PSNR against the selected key's values (a
    log axis for a learning rate), each run a dot, the mean over seeds a line, the chosen
    value ringed and collapsed runs (a codebook with fewer distinct vectors than half the
    codes used) crossed. None when no row chose among two values or more."""
    rows = [c for c in configs if c.selection is not None and len(c.selection.runs) > 1]
    if not rows:
        return None
    keys = rows[0].selection.keys  # type: ignore[union-attr]
    values = sorted({v for c in rows for v in c.selection.runs}, key=str)  # type: ignore[union-attr]
    numeric = len(keys) == 1 and all(
        isinstance(v[0], int | float) and not isinstance(v[0], bool) for v in values
    )
    if numeric:
        values = sorted(values, key=lambda v: v[0])

    def x_of(v: Value) -> float:
        return float(v[0]) if numeric else float(values.index(v))

    fig = new_figure(7.0, 4.0, layout="constrained")
    ax = fig.subplots()
    collapsed_shown = False
    for i, c in enumerate(rows):
        sel = c.selection
        assert sel is not None
        colour = f"C{i % 10}"
        xs, means = [], []
        for v, runs in sorted(sel.runs.items(), key=lambda kv: x_of(kv[0])):
            psnr = sel.val_psnr(v)
            if not psnr:
                continue
            xs.append(x_of(v))
            means.append(float(np.mean(psnr)))
            ax.plot([x_of(v)] * len(psnr), psnr, ".", color=colour, ms=5)
            for r in runs:
                if r.collapsed and isinstance((r.results or {}).get("psnr"), int | float):
                    ax.plot(x_of(v), r.results["psnr"], "x", color="red", ms=10, mew=2,  # type: ignore[index]
                            label=None if collapsed_shown else "collapsed run")  # fmt: skip
                    collapsed_shown = True
        ax.plot(xs, means, "-", color=colour, lw=1.5, label=c.label)
        if sel.chosen is not None and sel.val_psnr(sel.chosen):
            best = float(np.mean(sel.val_psnr(sel.chosen)))
            ax.plot(x_of(sel.chosen), best, "o", mfc="none", mec=colour, ms=12, mew=1.5)
    if _log_scale(keys, values):
        ax.set_xscale("log")
    if not numeric:
        ax.set_xticks([x_of(v) for v in values], [show_values(keys, v) for v in values],
                      rotation=30, ha="right", fontsize=FONT_SIZE - 1)  # fmt: skip
    steps = sorted({c.selection.steps for c in rows if c.selection.steps}, key=int)  # type: ignore[union-attr]
    at = f" at {', '.join(f'{s:,}' for s in steps)} steps" if steps else ""
    ax.set_xlabel(", ".join(keys), fontsize=FONT_SIZE)
    ax.set_ylabel("validation PSNR (dB)", fontsize=FONT_SIZE)
    ax.set_title(
        f"selection on the validation split{at}: dots each seed, line the mean,"
        " ring the chosen value",
        fontsize=FONT_SIZE,
    )
    ax.tick_params(labelsize=FONT_SIZE - 1)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(fontsize=FONT_SIZE - 1, frameon=False)
    return fig


# ---- rate-distortion: PSNR against bits per image ---------------------------------------
def _is_vq(c: Configuration) -> bool:
    r = c.representative
    return r.model == "VQ-GAN" and r.quantizer in ("vq", "")


def rate_figure(configs: Sequence[Configuration]) -> Figure | None:
    """PSNR on the judged split (mean over seeds, 95% interval over seeds as error bars)
    against bits per image (log2 axis): VQ-GAN (``vq``) as a curve over its codebook
    sizes, every other row a labelled point (dual rows in colour). None with fewer than
    two rows of known rate."""
    points = []
    for c in configs:
        bits, est = config_bits(c), estimate(seed_values(c).get("psnr", []))
        if c.ok and bits is not None and est.mean is not None:
            points.append((c, bits, est))
    if len(points) < 2:
        return None
    fig = new_figure(7.0, 4.5, layout="constrained")
    ax = fig.subplots()
    vq = sorted((p for p in points if _is_vq(p[0])), key=lambda p: p[1])
    if vq:
        ax.errorbar([b for _, b, _ in vq], [e.mean for _, _, e in vq],
                    yerr=[e.ci95 or 0.0 for _, _, e in vq], fmt="-o", color="0.3", capsize=4,
                    ms=5, label="VQ-GAN (vq) over codebook sizes")  # fmt: skip
        for c, b, e in vq:
            ax.annotate(f"{c.codebook_size}", (b, e.mean), textcoords="offset points",
                        xytext=(4, -10), fontsize=FONT_SIZE - 2, color="0.3")  # fmt: skip
    others = [p for p in points if not _is_vq(p[0])]
    for i, (c, b, e) in enumerate(others):
        dual = c.representative.model == DUAL
        colour = f"C{i % 10}" if dual else "0.6"
        # rows at one rate side by side, a little apart, so that their bars stay readable
        same = [o for o in others if o[1] == b]
        shift = 2 ** (0.015 * (same.index((c, b, e)) - (len(same) - 1) / 2))
        ax.errorbar([b * shift], [e.mean], yerr=[e.ci95 or 0.0], fmt="s" if dual else "^",
                    color=colour, capsize=4, ms=6, label=c.label)  # fmt: skip
    ax.set_xscale("log", base=2)
    ticks = sorted({b for _, b, _ in points})
    ax.set_xticks(ticks, [f"{b:,.0f}" for b in ticks])
    ax.minorticks_off()
    splits = sorted({str(c.split) for c, _, _ in points})
    ax.set_xlabel("bits per image (token positions x sum of log2 codes)", fontsize=FONT_SIZE)
    ax.set_ylabel(f"PSNR (dB), split {', '.join(splits)}", fontsize=FONT_SIZE)
    ax.set_title("rate-distortion: mean over seeds, 95% interval over seeds", fontsize=FONT_SIZE)
    ax.tick_params(labelsize=FONT_SIZE - 1)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(fontsize=FONT_SIZE - 2, frameon=False, loc="best")
    return fig


#: figure kinds, file name prefixes in the order report.md shows them
KINDS = ("usage", "reconstructions", "metrics", "psnr", "codebooks", "selection", "rate")


def draw_figures(sections: Sequence[Section], fig_dir: Path) -> dict[str, list[Path]]:
    """``{section slug: [figures]}`` written to ``fig_dir``: usage and reconstructions
    (one run per configuration, its lowest seed), metrics with intervals (when a row has
    several seeds: with one seed each the table says it all), PSNR curves (when a run
    has two evaluations), the selection (when a row chose among values) and
    rate-distortion (two rows of known rate or more), the codebooks' geometry over steps
    (when a run has two evaluations that measured it)."""
    written: dict[str, list[Path]] = {}
    # figures of an earlier report (a section that is gone) must not linger beside new ones
    for kind in KINDS:
        for old in fig_dir.glob(f"{kind}_*.png"):
            old.unlink()
    for section in sections:
        reps = [c.representative for c in section.configs]
        usage = usage_section_figure([r for r in reps if r.ok])
        recon = reconstruction_figure(
            [_with_sample(c) for c in section.configs if _with_sample(c) is not None]
        )
        several = any(len(c.finished) > 1 for c in section.configs)
        metrics = metrics_figure(section.configs) if several else None
        figs = {
            "usage": usage,
            "reconstructions": recon,
            "metrics": metrics,
            "psnr": psnr_curve_figure(section.configs),
            "codebooks": codebook_geometry_figure(section.configs),
            "selection": selection_figure(section.configs),
            "rate": rate_figure(section.configs),
        }
        for kind in KINDS:
            fig = figs[kind]
            if fig is not None:
                path = save(fig, fig_dir / f"{kind}_{section.slug}.png")
                written.setdefault(section.slug, []).append(path)
    return written


def _with_sample(config: Configuration) -> Run | None:
    """The run whose reconstructions stand for ``config``: its representative when that
    has a grid, else the lowest seed with one."""
    rep = config.representative
    if rep.sample is not None:
        return rep
    return next((r for r in config.runs if r.sample is not None), None)
