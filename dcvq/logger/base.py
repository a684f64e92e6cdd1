"""Run loggers: where a run's scalars, histograms and images go besides its run dir.

The trainer always writes ``metrics.jsonl`` itself; a logger mirrors the same numbers to
a dashboard. Every method is called on rank 0 only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor


class RunLogger:
    """No-op logger (``logger=none``); dashboards subclass it."""

    def start(self, config: dict[str, Any], run_dir: Path, resumed_from_step: int) -> None:
        """Called once before training with the resolved config (plain dict)."""

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Scalars, keys like ``train/loss`` or ``val/psnr``."""

    def log_usage(self, counts: dict[str, Tensor], step: int) -> None:
        """Full code-count vector per codebook (length N each) from an evaluation."""

    def log_image(self, key: str, path: Path, step: int) -> None:
        """An image already written to disk (e.g. a reconstruction grid)."""

    def set_discarded_steps(self, steps: int) -> None:
        """The optimizer steps trained and then discarded by rollbacks so far
        (``trainer.on_collapse=rollback``): a dashboard whose x-axis must only increase
        logs at ``step + steps``."""

    def finish(self) -> None:
        """Flush and close; called on normal end, error and preemption."""
