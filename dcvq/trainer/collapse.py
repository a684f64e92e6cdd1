"""What training does when a codebook collapses: ``trainer.on_collapse``.

A codebook has collapsed when its used codes are fewer than half as many distinct vectors
(``distinct < used / 2``: merged codes still read as used, because argmin ties between
identical codes spread the indices). Every periodic evaluation checks each codebook:

- ``warn`` (default): the log says so; training goes on.
- ``stop``: the run ends at that evaluation with :class:`CodebookCollapsed` (exit status 1
  from ``train.py``, the message naming the codebook and what to change); the
  checkpoint of that step is written and left as it is.
- ``rollback``: training goes back to the last checkpoint whose evaluation was healthy
  (``checkpoints/healthy.pt``, written at every healthy evaluation, and at the start,
  before any evaluation, as the state to fall back on) and continues from there with the
  codebook parameters' learning rate multiplied by ``trainer.collapse_lr_factor``. Each
  rollback is recorded (the log, eval.json's ``rollbacks``, the checkpoint); after
  ``trainer.max_rollbacks`` of them a further collapse stops the run as ``stop`` does.

The final evaluation applies no action: eval.json records the codebooks that ended
collapsed under ``collapsed``.
"""

from __future__ import annotations

from typing import Any

from dcvq.errors import UserError

ACTIONS = ("warn", "stop", "rollback")


class CodebookCollapsed(UserError):
    """``trainer.on_collapse=stop`` (or rollbacks exhausted) met a collapsed codebook."""


def collapsed(codebooks: dict[str, dict[str, Any]]) -> list[str]:
    """The codebooks of an evaluation whose used codes are fewer than half as many
    distinct vectors (where the evaluation counted distinct vectors)."""
    return [
        name
        for name, cb in codebooks.items()
        if cb.get("distinct") is not None and cb["distinct"] < cb["used"] / 2
    ]


def describe(codebooks: dict[str, dict[str, Any]], names: list[str]) -> str:
    return ", ".join(
        f"{n!r} ({codebooks[n]['used']} used codes, {codebooks[n]['distinct']} distinct)"
        for n in names
    )


def stop_message(step: int, what: str, checkpoint: str, reason: str) -> str:
    return (
        f"step {step}: codebook {what} collapsed ({reason}). The checkpoint of this step is "
        f"{checkpoint}. A lower trainer.lr, trainer.codebook_lr_mult < 1 or "
        "trainer.on_collapse=rollback may keep it healthy."
    )
