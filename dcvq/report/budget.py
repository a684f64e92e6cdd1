"""The budget check: is a difference between two rows a property of the configurations,
or of where training was cut? Each row of a decisive comparison is trained again at twice
its budget (``trainer.max_steps`` doubled, one seed is enough); the rows' difference must
keep its sign there. A flipped sign says the rows were not trained out at the main
budget, so no verdict is given on them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from dcvq.report.rows import Configuration, steps_text
from dcvq.report.stats import DIGITS, NAMES, finite

KEPT = "kept"
FLIPPED = "flipped"
NOT_RUN = "not run"


@dataclass
class BudgetCheck:
    """``status``: ``kept`` (every metric's difference has the main budget's sign at
    twice the budget), ``flipped`` (some metric's has not) or ``not run``."""

    status: str
    steps: int | None  # the doubled budget
    #: metric -> (difference at the main budget, difference at twice it)
    diffs: dict[str, tuple[float, float]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)  # rows without runs at twice it

    def describe(self) -> str:
        """``budget check (10,000 steps): kept: ΔPSNR +2.53 -> +2.61``."""
        head = f"budget check ({steps_text(self.steps)}): {self.status}"
        if self.status == NOT_RUN:
            rows = "; ".join(self.missing)
            return f"{head} (no run at {steps_text(self.steps)} of {rows})"
        parts = []
        for m, (main, double) in self.diffs.items():
            d = DIGITS.get(m, 4)
            parts.append(f"Δ{NAMES.get(m, m)} {main:+.{d}f} -> {double:+.{d}f}")
        return f"{head}: {', '.join(parts)}"


def _mean(config: Configuration, runs: Sequence, metric: str) -> float | None:
    values = finite([(r.results_on(config.judged) or {}).get(metric) for r in runs])
    return float(np.mean(values)) if values else None


def budget_check(a: Configuration, b: Configuration, metrics: Sequence[str]) -> BudgetCheck:
    """``a - b`` at the rows' main budget (mean over seeds) against ``a - b`` at twice
    it (the rows' :attr:`~Configuration.budget_runs`, mean over theirs), per metric, on
    the rows' judged split."""
    steps = 2 * a.max_steps if a.max_steps is not None else None
    missing = [c.label for c in (a, b) if not any(r.ok for r in c.budget_runs)]
    if missing or steps is None or a.max_steps != b.max_steps:
        return BudgetCheck(NOT_RUN, steps, missing=missing or [a.label, b.label])
    out = BudgetCheck(KEPT, steps)
    for m in metrics:
        main_a, main_b = _mean(a, a.finished, m), _mean(b, b.finished, m)
        dbl_a = _mean(a, [r for r in a.budget_runs if r.ok], m)
        dbl_b = _mean(b, [r for r in b.budget_runs if r.ok], m)
        if None in (main_a, main_b, dbl_a, dbl_b):
            continue
        main, double = main_a - main_b, dbl_a - dbl_b  # type: ignore[operator]
        out.diffs[m] = (main, double)
        if np.sign(main) != np.sign(double):
            out.status = FLIPPED
    if not out.diffs:
        return BudgetCheck(NOT_RUN, steps, missing=[f"{a.label} / {b.label}: no metric"])
    return out
