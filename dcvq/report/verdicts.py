"""The paper's claims, each judged on the sweep's own rows: **supported**, **contradicted**
or **inconclusive at this scale**, with the numbers behind the verdict; or *no verdict*,
and why, when the sweep lacks the evidence a verdict needs.

Paired claims ("A is better than B") compare A and B within one (table, dataset) section
(:func:`dcvq.report.stats.compare`) on the rows' judged split, in two ways that must
agree: over **source photos** (the cluster bootstrap of the paired per-image differences,
each row averaged over its seeds: would A beat B on other photos) and over **seeds**
(Welch's interval of the difference of the rows' means: would it after retraining). For
each pair and metric the pair is *better* (*worse*) when both intervals exclude 0 on
A's better (worse) side, *inconclusive* otherwise. A claim is

- **contradicted** when any of its pairs is worse on any of its metrics,
- **supported** when every pair is better on every metric (and every pair was measured),
- **inconclusive at this scale** otherwise;
- **not run** when the sweep lacks the rows; **not measured** when the rows exist but
  none has per-image results (``per_image.csv``).

**No verdict** (and why; the intervals' indication is still printed, never in bold)
when the evidence falls short: a row with fewer than 3 seeds (an interval over seeds
needs them; 2 for the usage claim), rows without a test split (their numbers are on the
validation split, which also chose the settings), or, for the decisive claims (dual
against VQ-GAN, transformer against plain, dual against VQ-GAN at equal rate), a budget
check (:mod:`dcvq.report.budget`) that was not run or whose difference flipped.

The usage claim is judged on each dual row's mean usage over seeds (see :func:`usage`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from dcvq.report.budget import FLIPPED, KEPT, budget_check
from dcvq.report.budget import NOT_RUN as BUDGET_NOT_RUN
from dcvq.report.cluster import METHOD as CLUSTER_METHOD
from dcvq.report.collect import DUAL, TEST
from dcvq.report.rate import config_bits, interpolate
from dcvq.report.rows import Configuration
from dcvq.report.stats import (
    DIGITS,
    HIGHER_IS_BETTER,
    NAMES,
    Comparison,
    compare,
    estimate,
    seed_values,
)

SUPPORTED = "supported"
CONTRADICTED = "contradicted"
INCONCLUSIVE = "inconclusive at this scale"
NO_VERDICT = "no verdict"
NOT_RUN = "not run"
NOT_MEASURED = "not measured"
#: the outcomes that are verdicts (printed in bold)
VERDICTS = (SUPPORTED, CONTRADICTED, INCONCLUSIVE)
#: the reconstruction metrics the paper's ablation claims are about (FID has no
#: per-image value to pair)
RECONSTRUCTION = ("l1", "l2", "psnr")
#: seeds per row below which there is no verdict: over seeds, and for the usage claim
MIN_SEEDS = 3
MIN_SEEDS_USAGE = 2
#: usage thresholds (percent of codes used, each codebook)
USAGE_SUPPORTED = 95.0
USAGE_CONTRADICTED = 80.0
PAIRED_RULE = (
    "for each pair and metric, the 95% interval over source photos (cluster bootstrap) of"
    " (claimed better − other) and the 95% Welch interval over seeds of the same difference"
    " must both exclude 0 on one side: supported if every pair was measured and is better"
    " on every metric, contradicted if any is worse, else inconclusive. No verdict below"
    f" {MIN_SEEDS} seeds per row, without a test split, or (decisive claims) unless the"
    " difference keeps its sign at twice the budget"
)


@dataclass
class Verdict:
    """One claim of the paper and what the sweep says about it."""

    claim: str
    outcome: str  # one of VERDICTS, NO_VERDICT, NOT_RUN or NOT_MEASURED
    rule: str
    evidence: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)  # why there is no verdict
    indication: str | None = None  # what the numbers alone say (with NO_VERDICT)
    budget: str | None = None  # kept / flipped / not run (decisive claims)

    @property
    def shown(self) -> str:
        """The outcome as report.md prints it: a verdict in bold, anything else plain."""
        if self.outcome in VERDICTS:
            return f"**{self.outcome}**"
        if self.outcome == NO_VERDICT:
            said = f"; the numbers alone say: {self.indication}" if self.indication else ""
            return f"no verdict ({'; '.join(self.reasons)}){said}"
        return self.outcome


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


def _interval(low: float | None, high: float | None, d: int) -> str:
    return "—" if low is None else f"[{_fmt(low, d)}, {_fmt(high, d)}]"


def metric_evidence(comp: Comparison, m: str) -> str:
    """``ΔPSNR +2.53: images [+2.35, +2.71], photos [+1.9, +3.1], seeds [+2.33, +2.74]
    (higher is better): better``."""
    p, c, s = comp.metrics[m], comp.cluster.get(m), comp.seeds.get(m)
    d = DIGITS.get(m, 4)
    photos = _interval(c.low, c.high, d) if c is not None else "—"
    if c is not None and c.low is None:
        photos = f"— (one source photo of {c.n_images:,} images)"
    seeds = _interval(s.low, s.high, d) if s is not None and s.low is not None else "— (one seed)"
    return (
        f"Δ{NAMES.get(m, m)} {_fmt(p.mean_diff, d)}: images {_interval(p.low, p.high, d)},"
        f" photos {photos}, seeds {seeds}"
        f" ({'higher' if HIGHER_IS_BETTER.get(m, True) else 'lower'} is better):"
        f" {comp.outcome(m)}"
    )


def _evidence_reasons(rows: Sequence[Configuration], min_seeds: int) -> list[str]:
    """Why rows fall short of a verdict: too few seeds, no test split."""
    out = []
    for c in dict.fromkeys(rows):
        n = len(c.finished)
        if n < min_seeds:
            out.append(f"{c.label} has {n} seed{'s' * (n != 1)}, a verdict needs {min_seeds}")
    val = [c for c in dict.fromkeys(rows) if c.judged != TEST]
    if val:
        out.append(
            f"no test split ({len(val)} row{'s' * (len(val) != 1)} on `{val[0].split}`, the"
            " split that also chose the settings)"
        )
    return out


def _budget_status(statuses: Sequence[str]) -> str:
    if FLIPPED in statuses:
        return FLIPPED
    return KEPT if statuses and all(s == KEPT for s in statuses) else BUDGET_NOT_RUN


def paired_claim(
    claim: str,
    pairs: Sequence[Pair],
    metrics: Sequence[str],
    decisive: bool = False,
    unpaired: Sequence[str] = (),
) -> Verdict:
    """Judge ``claim`` on ``pairs`` of (claimed better, other) over ``metrics`` by the
    paired rule of this module's docstring; ``decisive`` claims also need the budget
    check. ``unpaired``: evidence lines of rows the claim has no partner for (each one
    stands in the way of a verdict)."""
    if not pairs and not unpaired:
        return Verdict(claim, NOT_RUN, PAIRED_RULE)
    outcomes: list[str] = []
    evidence = []
    unmeasured = 0
    budgets = []
    for better, other in pairs:
        comp = compare(better, other)
        head = f"{_where(better)}: {better.label} − {other.label}"
        if not comp.ok:
            unmeasured += 1
            evidence.append(f"{head}: {comp.problem}")
            continue
        parts = []
        for m in metrics:
            if m not in comp.metrics:
                unmeasured += 1
                parts.append(f"{NAMES.get(m, m)} not measured")
                continue
            outcomes.append(comp.outcome(m))
            parts.append(metric_evidence(comp, m))
        text = f"{head}: {'; '.join(parts)} (seeds: {comp.n_seeds} vs {comp.n_seeds_reference},"
        text += f" images: {comp.n_images:,} from {comp.n_sources:,} source photos)"
        if comp.device_flag:
            text += f"; trained on different devices: {comp.device_flag}"
        if decisive:
            check = budget_check(better, other, metrics)
            budgets.append(check.status)
            text += f"; {check.describe()}"
        evidence.append(text)
    evidence += list(unpaired)
    if not outcomes:
        outcome = NOT_MEASURED if pairs else NO_VERDICT
    elif "worse" in outcomes:
        outcome = CONTRADICTED
    elif all(o == "better" for o in outcomes) and not unmeasured and not unpaired:
        outcome = SUPPORTED
    else:
        outcome = INCONCLUSIVE
    verdict = Verdict(claim, outcome, PAIRED_RULE, evidence)
    if outcome == NOT_MEASURED:
        return verdict
    reasons = _evidence_reasons([c for pair in pairs for c in pair], MIN_SEEDS)
    if unpaired:
        n = len(unpaired)
        reasons.append(f"{n} row{'s' * (n != 1)} without a partner to compare with")
    if decisive and pairs:
        verdict.budget = _budget_status(budgets)
        if verdict.budget == FLIPPED:
            reasons.append("budget check: flipped (the rows were not trained out)")
        elif verdict.budget == BUDGET_NOT_RUN:
            steps = [a.max_steps for a, _ in pairs if a.max_steps is not None]
            at = f" (trainer.max_steps={2 * steps[0]})" if steps else ""
            reasons.append(f"budget check: not run: train each row again at twice its budget{at}")
    if reasons:
        verdict.outcome, verdict.reasons = NO_VERDICT, reasons
        verdict.indication = outcome if outcomes else None
    return verdict


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
        decisive=True,
    )


def _psnr_mean(c: Configuration) -> float | None:
    return estimate(seed_values(c).get("psnr", [])).mean


def dual_beats_vq_at_equal_rate(sections: Sequence[Sequence[Configuration]]) -> Verdict:
    """Every Dual Codebook row against the VQ-GAN (``vq``) row of the same bits per image
    (two 128-code codebooks: 14 bits a position, as one of 16,384 codes)."""
    claim = (
        "Dual Codebook beats VQ-GAN at equal rate on L1, L2 and PSNR (each dual row against"
        " vq at the same bits per image)"
    )
    pairs, unpaired = [], []
    for section in sections:
        vq = {config_bits(c): c for c in _vq(section).values() if config_bits(c) is not None}
        curve = [(b, p) for b, c in vq.items() if (p := _psnr_mean(c)) is not None]
        for c in section:
            if not (c.ok and c.representative.model == DUAL):
                continue
            bits = config_bits(c)
            if bits is None:
                unpaired.append(f"{_where(c)}: {c.label}: no verdict: its bits per image unknown")
            elif bits in vq:
                pairs.append((c, vq[bits]))
            else:
                text = f"{_where(c)}: {c.label}: no verdict: no VQ-GAN row at {bits:,.0f} bits"
                text += " per image"
                guess, mine = interpolate(curve, bits), _psnr_mean(c)  # type: ignore[arg-type]
                if guess is not None and mine is not None:
                    text += (
                        f" (interpolation, not a verdict: the VQ-GAN curve gives {guess:.2f} dB"
                        f" there, this row {mine:.2f} dB)"
                    )
                unpaired.append(text)
    return paired_claim(claim, pairs, RECONSTRUCTION, decisive=True, unpaired=unpaired)


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
        decisive=True,
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
        f" contradicted, else inconclusive; no verdict below {MIN_SEEDS_USAGE} seeds per row"
        " or without a test split"
    )
    evidence, lows, rows = [], [], []
    for section in sections:
        for c in section:
            if not (c.ok and c.representative.model == DUAL):
                continue
            rows.append(c)
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
    verdict = Verdict(claim, outcome, rule, evidence)
    reasons = _evidence_reasons(rows, MIN_SEEDS_USAGE)
    if reasons:
        verdict.outcome, verdict.reasons, verdict.indication = NO_VERDICT, reasons, outcome
    return verdict


#: the claims, in the order report.md lists them
CLAIMS: tuple[Callable[[Sequence[Sequence[Configuration]]], Verdict], ...] = (
    dual_beats_vq,
    dual_beats_vq_at_equal_rate,
    transformer_beats_plain,
    larger_global_half,
    larger_codebook,
    usage,
)


def judge_claims(sections: Sequence[Sequence[Configuration]]) -> list[Verdict]:
    """Every claim of :data:`CLAIMS` judged on ``sections`` (each a (table, dataset)
    section's configurations; rows are only ever compared within a section)."""
    return [judge(sections) for judge in CLAIMS]


def split_statement(rows: Sequence[Configuration]) -> str:
    """Which split the numbers and verdicts are on, said once."""
    done = [c for c in rows if c.ok]
    if not done:
        return "No finished run yet: no numbers, no verdicts."
    if all(c.judged == TEST for c in done):
        splits = ", ".join(sorted({f"`{c.split}`" for c in done}))
        return (
            f"Numbers and verdicts are on the test split ({splits}); settings were chosen"
            " on the validation split."
        )
    val = sorted({f"`{c.split}`" for c in done if c.judged != TEST})
    return (
        f"**No test split** for {len([c for c in done if c.judged != TEST])} of {len(done)}"
        f" rows: their numbers are on the validation split ({', '.join(val) or '—'}), the"
        " split that also chose the settings, so no verdict is given on them."
    )


def render_verdicts(found: Sequence[Verdict], rows: Sequence[Configuration] = ()) -> list[str]:
    """The ``## Verdicts`` section of report.md; nothing when no claim's rows were run."""
    if all(v.outcome == NOT_RUN for v in found):
        return []
    out = [
        "## Verdicts",
        "",
        *([split_statement(rows), ""] if rows else []),
        "The paper's claims judged on this sweep's rows. Paired claims compare two rows"
        " image by image within one table and dataset, each row averaged over its seeds;"
        f" rule: {PAIRED_RULE}. Numbers: Δ = claimed better − other, mean over images, with"
        " its 95% intervals over images (paired t, for reference), over source photos"
        f" ({CLUSTER_METHOD}) and over seeds (Welch).",
        "",
    ]
    for v in found:
        rule = "" if v.rule == PAIRED_RULE else f" Rule: {v.rule}."
        budget = f" Budget check: {v.budget}." if v.budget and v.outcome in VERDICTS else ""
        out.append(f"- {v.claim}: {v.shown}.{budget}{rule}")
        out += [f"  - {e}" for e in v.evidence]
    out.append("")
    return out
