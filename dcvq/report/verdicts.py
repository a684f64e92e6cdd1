"""The paper's claims, each judged on the sweep's own rows: **supported**, **contradicted**
or **inconclusive at this scale**, with the numbers behind the verdict.

Paired claims ("A is better than B") compare A and B within one (table, dataset)
section in two ways (:func:`dcvq.report.stats.compare`): image by image, on the held-out
images both evaluated (each row averaged over its seeds: the 95% paired interval of
A − B), and over seeds (the difference of the rows' means with Welch's 95% interval: what
retraining moves, which the first interval does not see). For each pair and metric, an
interval is *better* when it lies wholly on A's better side of 0, *worse* when wholly on
the other side; the pair is *better* (*worse*) when both intervals are, or, where a row
has a single seed (no interval over seeds), when the image interval is (said in the
evidence); *inconclusive* otherwise. A claim is

- **contradicted** when any of its pairs is worse on any of its metrics,
- **supported** when every pair is better on every metric (and every pair was measured),
- **inconclusive at this scale** otherwise;
- **not run** when the sweep lacks the rows; **not measured** when the rows exist but
  none has per-image results (``per_image.csv``).

The usage claim is judged on each dual row's mean usage over seeds (see :func:`usage`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from dcvq.report.collect import DUAL, Configuration
from dcvq.report.stats import HIGHER_IS_BETTER, compare, estimate, seed_values

SUPPORTED = "supported"
CONTRADICTED = "contradicted"
INCONCLUSIVE = "inconclusive at this scale"
NOT_RUN = "not run"
NOT_MEASURED = "not measured"
#: the reconstruction metrics the paper's ablation claims are about (FID has no
#: per-image value to pair)
RECONSTRUCTION = ("l1", "l2", "psnr")
#: usage thresholds (percent of codes used, each codebook)
USAGE_SUPPORTED = 95.0
USAGE_CONTRADICTED = 80.0
PAIRED_RULE = (
    "for each pair and metric, the 95% paired t-interval over images of (claimed better −"
    " other) and the 95% Welch interval over seeds of the same difference must both"
    " exclude 0 on one side (the image interval alone where a row has one seed): supported"
    " if every pair was measured and is better on every metric, contradicted if any is"
    " worse, else inconclusive"
)
NAMES = {"psnr": "PSNR", "l1": "L1", "l2": "L2", "ssim": "SSIM", "lpips": "LPIPS"}
DIGITS = {"psnr": 2, "l1": 4, "l2": 4, "ssim": 4, "lpips": 4}


@dataclass
class Verdict:
    """One claim of the paper and what the sweep says about it."""

    claim: str
    outcome: str  # SUPPORTED, CONTRADICTED, INCONCLUSIVE, NOT_RUN or NOT_MEASURED
    rule: str
    evidence: list[str] = field(default_factory=list)


Pair = tuple[Configuration, Configuration]  # (claimed better, other)


def _where(c: Configuration) -> str:
    return f"Table {c.table} · {c.dataset}" if c.table else c.dataset


def _named(section: Sequence[Configuration], model: str, halves: tuple[str, str] = ("", "")):
    """The finished rows of ``section`` of the paper's ``model`` (and global/local halves),
    the first of each codebook size: ``{size: row}``."""
    out: dict[int | None, Configuration] = {}
    for c in section:
        r = c.representative
        plain_vq = model != "VQ-GAN" or r.quantizer in ("vq", "")  # not a user's option
        if c.ok and r.model == model and (r.global_, r.local) == halves and plain_vq:
            out.setdefault(c.codebook_size, c)
    return out


def _vq(section: Sequence[Configuration]) -> dict[int | None, Configuration]:
    return _named(section, "VQ-GAN")


def _dual(section: Sequence[Configuration], g: str, loc: str) -> dict[int | None, Configuration]:
    return _named(section, DUAL, (g, loc))


def _fmt(value: float | None, digits: int) -> str:
    return "—" if value is None else f"{value:+.{digits}f}"


def paired_claim(claim: str, pairs: Sequence[Pair], metrics: Sequence[str]) -> Verdict:
    """Judge ``claim`` on ``pairs`` of (claimed better, other) over ``metrics`` by the
    paired rule of this module's docstring."""
    if not pairs:
        return Verdict(claim, NOT_RUN, PAIRED_RULE)
    outcomes: list[str] = []
    evidence = []
    unmeasured = 0
    for better, other in pairs:
        comp = compare(better, other)
        head = f"{_where(better)}: {better.label} − {other.label}"
        if not comp.ok:
            unmeasured += 1
            evidence.append(f"{head}: {comp.problem}")
            continue
        parts = []
        for m in metrics:
            p = comp.metrics.get(m)
            if p is None:
                unmeasured += 1
                parts.append(f"{NAMES.get(m, m)} not measured")
                continue
            seeds = comp.seeds.get(m)
            over_seeds = seeds is not None and seeds.low is not None
            outcome = p.outcome
            if over_seeds and seeds.outcome != p.outcome:
                outcome = "inconclusive"
            outcomes.append(outcome)
            d = DIGITS.get(m, 4)
            if over_seeds:
                seed_part = (
                    f"over seeds {_fmt(seeds.mean_diff, d)} [{_fmt(seeds.low, d)},"
                    f" {_fmt(seeds.high, d)}]"
                )
            else:
                seed_part = "one seed: retraining noise not measured"
            parts.append(
                f"Δ{NAMES.get(m, m)} {_fmt(p.mean_diff, d)} [{_fmt(p.low, d)}, {_fmt(p.high, d)}]"
                f", {seed_part}"
                f" ({'higher' if HIGHER_IS_BETTER.get(m, True) else 'lower'} is better):"
                f" {outcome}"
            )
        seeds = f"seeds: {comp.n_seeds} vs {comp.n_seeds_reference}, images: {comp.n_images:,}"
        evidence.append(f"{head}: {'; '.join(parts)} ({seeds})")
    if not outcomes:
        outcome = NOT_MEASURED
    elif "worse" in outcomes:
        outcome = CONTRADICTED
    elif all(o == "better" for o in outcomes) and not unmeasured:
        outcome = SUPPORTED
    else:
        outcome = INCONCLUSIVE
    return Verdict(claim, outcome, PAIRED_RULE, evidence)


def dual_beats_vq(sections: Sequence[Sequence[Configuration]]) -> Verdict:
    """Every Dual Codebook row against VQ-GAN (``vq``) at the same codebook size."""
    pairs = []
    for section in sections:
        vq = _vq(section)
        for c in section:
            r = c.representative
            if c.ok and r.model == DUAL and c.codebook_size in vq:
                pairs.append((c, vq[c.codebook_size]))
    return paired_claim(
        "Dual Codebook beats VQ-GAN on L1, L2 and PSNR (each dual row against vq at the"
        " same codebook size)",
        pairs,
        RECONSTRUCTION,
    )


def _same_size_pairs(
    sections: Sequence[Sequence[Configuration]], better: tuple[str, str], other: tuple[str, str]
) -> list[Pair]:
    pairs = []
    for section in sections:
        a, b = _dual(section, *better), _dual(section, *other)
        pairs += [(a[n], b[n]) for n in a if n in b]
    return pairs


def transformer_beats_plain(sections: Sequence[Sequence[Configuration]]) -> Verdict:
    """T-128/S-128 against S-128/S-128 at the same size (Table 2 (v) vs (ii))."""
    return paired_claim(
        "A transformer-generated global codebook beats a plain one: T-128/S-128 against"
        " S-128/S-128 on L1, L2 and PSNR",
        _same_size_pairs(sections, ("T-128", "S-128"), ("S-128", "S-128")),
        RECONSTRUCTION,
    )


def larger_global_half(sections: Sequence[Sequence[Configuration]]) -> Verdict:
    """T-192/S-64 and T-128/S-128 against T-64/S-192 at the same size (Table 2 (iii) and
    (v) against (iv), as the paper compares them)."""
    small = ("T-64", "S-192")
    return paired_claim(
        "A larger global half is better: T-192/S-64 and T-128/S-128 against T-64/S-192 on"
        " L1, L2 and PSNR",
        _same_size_pairs(sections, ("T-192", "S-64"), small)
        + _same_size_pairs(sections, ("T-128", "S-128"), small),
        RECONSTRUCTION,
    )


def larger_codebook(sections: Sequence[Sequence[Configuration]]) -> Verdict:
    """Dual T-128/S-128 and VQ-GAN, each at 2n against n codes (every doubling run)."""
    pairs = []
    for section in sections:
        for rows in (_dual(section, "T-128", "S-128"), _vq(section)):
            sizes = sorted(n for n in rows if isinstance(n, int))
            pairs += [(rows[2 * n], rows[n]) for n in sizes if 2 * n in rows]
    return paired_claim(
        "A larger codebook beats a smaller one: Dual Codebook T-128/S-128 and VQ-GAN, each"
        " at twice the codebook size against once, on PSNR",
        pairs,
        ("psnr",),
    )


def usage(sections: Sequence[Sequence[Configuration]]) -> Verdict:
    """Every dual row's global and local usage (mean over seeds): all >= 95% supported,
    any < 80% contradicted, else inconclusive. Where eval.json counts distinct codes, the
    distinct ones: a collapsed codebook (one vector many times) is not near 100% used."""
    claim = "Codebook usage is near 100% in both codebooks of every Dual Codebook row"
    rule = (
        f"mean usage over seeds of each codebook of every dual row (codes used and distinct,"
        f" where measured): all ≥ {USAGE_SUPPORTED:g}% supported, any < {USAGE_CONTRADICTED:g}%"
        " contradicted, else inconclusive"
    )
    evidence, lows = [], []
    for section in sections:
        for c in section:
            if not (c.ok and c.representative.model == DUAL):
                continue
            values = seed_values(c)
            parts = []
            for book in ("global", "local"):
                distinct = f"distinct_{book}" in values
                est = estimate(values.get(f"{'distinct' if distinct else 'usage'}_{book}", []))
                lows.append(est.mean if est.mean is not None else float("nan"))
                shown = "—" if est.mean is None else f"{est.mean:.1f}%"
                if est.ci95 is not None:
                    shown += f" ± {est.ci95:.1f}"
                parts.append(f"{book} {shown}" + (" distinct" if distinct else ""))
            n = len(c.finished)
            evidence.append(
                f"{_where(c)}: {c.label}: {', '.join(parts)} ({n} seed{'s' * (n != 1)})"
            )
    if not lows:
        return Verdict(claim, NOT_RUN, rule)
    if any(v < USAGE_CONTRADICTED for v in lows):
        outcome = CONTRADICTED
    elif all(v >= USAGE_SUPPORTED for v in lows):  # NaN (not measured) fails both
        outcome = SUPPORTED
    else:
        outcome = INCONCLUSIVE
    return Verdict(claim, outcome, rule, evidence)


#: the claims, in the order report.md lists them
CLAIMS: tuple[Callable[[Sequence[Sequence[Configuration]]], Verdict], ...] = (
    dual_beats_vq,
    transformer_beats_plain,
    larger_global_half,
    larger_codebook,
    usage,
)


def judge_claims(sections: Sequence[Sequence[Configuration]]) -> list[Verdict]:
    """Every claim of :data:`CLAIMS` judged on ``sections`` (each a (table, dataset)
    section's configurations; rows are only ever compared within a section)."""
    return [judge(sections) for judge in CLAIMS]


def render_verdicts(found: Sequence[Verdict]) -> list[str]:
    """The ``## Verdicts`` section of report.md; nothing when no claim's rows were run."""
    if all(v.outcome == NOT_RUN for v in found):
        return []
    out = [
        "## Verdicts",
        "",
        "The paper's claims judged on this sweep's rows. Paired claims compare two rows"
        " image by image within one table and dataset, each row averaged over its seeds;"
        f" rule: {PAIRED_RULE}. Numbers: Δ = claimed better − other, mean over images"
        " [95% interval]. An interval over images does not include seed-to-seed"
        " variation: read the seed counts.",
        "",
    ]
    for v in found:
        rule = "" if v.rule == PAIRED_RULE else f" Rule: {v.rule}."
        out.append(f"- {v.claim}: **{v.outcome}**.{rule}")
        out += [f"  - {e}" for e in v.evidence]
    out.append("")
    return out
