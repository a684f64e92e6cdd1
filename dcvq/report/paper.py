"""The paper's own numbers: its table rows (``experiments/*/paper.csv``), which of our
runs each matches, and the rows whose L1/L2 cannot be on the scale they claim."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dcvq.report.collect import Run

#: the repository (dcvq is installed editable from it): holds experiments/<table>/paper.csv
REPO = Path(__file__).resolve().parents[2]
EXPERIMENTS_DIR = REPO / "experiments"
#: where the report's notes are explained at length (named, not linked: report.md lives in
#: the sweep dir, so a relative link would not resolve)
GUIDE = "experiments/README.md"
#: the paper's metrics (its tables' columns)
METRICS = ("fid", "psnr", "l1", "l2")
#: rows the paper copies from elsewhere and that dcvq does not train (VQCT needs a
#: pretrained language codebook)
PAPER_ONLY = ("VQCT",)


@dataclass
class PaperRow:
    """One row of the paper's tables (``tables.csv`` / ``experiments/*/paper.csv``)."""

    table: str
    dataset: str
    model: str
    global_: str
    local: str
    codebook_size: int
    metrics: dict[str, float | None]
    note: str

    @property
    def key(self) -> tuple[str, str, str, str, int]:
        return (self.dataset, self.model, self.global_, self.local, self.codebook_size)


def _float(text: str) -> float | None:
    text = text.strip()
    return float(text) if text else None


def shown_path(path: Path) -> str:
    """A paper file as a reader of a committed report can find it: relative to this
    repository when it is one of its files."""
    try:
        return str(Path(path).resolve().relative_to(EXPERIMENTS_DIR.parent))
    except ValueError:
        return str(path)


def default_paper_files() -> list[Path]:
    """``experiments/*/paper.csv`` of this repository, in table order."""
    return sorted(EXPERIMENTS_DIR.glob("*/paper.csv"))


def load_paper(paths: Sequence[str | Path]) -> list[PaperRow]:
    """The paper's rows from one or more CSV files with ``tables.csv``'s columns."""
    rows: list[PaperRow] = []
    for path in paths:
        with open(path, newline="") as f:
            for r in csv.DictReader(f):
                rows.append(
                    PaperRow(
                        table=r["table"].strip(),
                        dataset=r["dataset"].strip(),
                        model=r["model"].strip(),
                        global_=r.get("global", "").strip(),
                        local=r.get("local", "").strip(),
                        codebook_size=int(r["codebook_size"]),
                        metrics={m: _float(r.get(m, "")) for m in METRICS},
                        note=r.get("source_note", "").strip(),
                    )
                )
    return rows


def match(run: Run, paper: Sequence[PaperRow]) -> PaperRow | None:
    """The paper's row for ``run``: same table (when known), dataset, model, halves, size."""
    for row in paper:
        if row.key == run.key and (run.table is None or row.table == run.table):
            return row
    return None


def psnr_bound_on_vqct_scale(l2: float) -> float:
    """The least mean PSNR an L2 on VQCT's [-1, 1] scale allows: per-image PSNR averaged
    is at least the PSNR of the mean MSE (Jensen), and MSE on [0, 1] is L2 / 4."""
    return -10 * math.log10(l2 / 4)


def off_scale(row: PaperRow, margin_db: float = 1.0) -> bool:
    """A paper row whose PSNR is well below the bound its L2 implies on [-1, 1]: its L1/L2
    cannot be on VQCT's scale. The margin covers the JPEG round trip of VQCT's PSNR."""
    psnr, l2 = row.metrics.get("psnr"), row.metrics.get("l2")
    return psnr is not None and bool(l2) and psnr < psnr_bound_on_vqct_scale(l2) - margin_db
