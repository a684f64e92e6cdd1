"""The report's sections: one per (table, dataset), its rows laid out in the paper's row
order (each paper row beside the configuration that matches it), then the rows the
paper does not have."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from dcvq.report.collect import Run
from dcvq.report.paper import PaperRow, match
from dcvq.report.rows import Configuration

TABLE_ORDER = ("1", "2", "3", "S1")


@dataclass
class Line:
    """One table line: a paper row, a run, or both side by side."""

    paper: PaperRow | None
    run: Run | None  # the configuration's representative run (lowest finished seed)
    row_label: str = ""  # the paper's row number, (i), (ii), ... in Tables 2 and 3
    config: Configuration | None = None  # every seed of the row

    @property
    def model(self) -> str:
        return self.run.model if self.run else self.paper.model  # type: ignore[union-attr]

    @property
    def global_(self) -> str:
        return self.run.global_ if self.run else self.paper.global_  # type: ignore[union-attr]

    @property
    def local(self) -> str:
        return self.run.local if self.run else self.paper.local  # type: ignore[union-attr]

    @property
    def size(self) -> int | None:
        return self.run.codebook_size if self.run else self.paper.codebook_size  # type: ignore


@dataclass
class Section:
    """The lines of one (table, dataset) pair: a heading of report.md, one set of figures."""

    table: str | None
    dataset: str
    lines: list[Line]

    @property
    def configs(self) -> list[Configuration]:
        """The section's configurations (rows with runs), in table order."""
        return [ln.config for ln in self.lines if ln.config is not None]

    @property
    def runs(self) -> list[Run]:
        """Every run of the section: each row's seeds, budget check and other runs."""
        out: list[Run] = []
        for ln in self.lines:
            if ln.config is not None:
                c = ln.config
                out += [*c.runs, *c.budget_runs, *(r for r, _ in c.others)]
            elif ln.run is not None:
                out.append(ln.run)
        return out

    @property
    def title(self) -> str:
        return f"Table {self.table} · {self.dataset}" if self.table else self.dataset

    @property
    def slug(self) -> str:
        text = f"table{self.table}_{self.dataset}" if self.table else self.dataset
        return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _roman(i: int) -> str:
    return ["i", "ii", "iii", "iv", "v", "vi", "vii", "viii", "ix", "x"][i] if i < 10 else str(i)


def _table_key(table: str | None) -> tuple[int, str]:
    if table is None:
        return (len(TABLE_ORDER) + 1, "")
    return (TABLE_ORDER.index(table), "") if table in TABLE_ORDER else (len(TABLE_ORDER), table)


def build_sections(configs: Sequence[Configuration], paper: Sequence[PaperRow]) -> list[Section]:
    """Configurations (:func:`~dcvq.report.rows.group_runs`: the seeds of one setting) by
    (table, dataset), each group laid out in the paper's row order; configurations that
    match no paper row (other sizes, other quantizers) follow, one line each."""
    groups: dict[tuple[str | None, str], list[Configuration]] = {}
    for config in configs:
        groups.setdefault((config.table, config.dataset), []).append(config)
    datasets = list(dict.fromkeys(r.dataset for r in paper))  # the paper's order

    def order(key: tuple[str | None, str]) -> tuple:
        t, ds = key
        return (*_table_key(t), datasets.index(ds) if ds in datasets else len(datasets), ds)

    sections = []
    for table, ds in sorted(groups, key=order):
        section_rows = groups[(table, ds)]
        lines: list[Line] = []
        used: set[int] = set()
        rows = [r for r in paper if table is not None and r.table == table and r.dataset == ds]
        roman = table in ("2", "3")  # the ablation tables number their rows
        for i, row in enumerate(rows):
            label = f"({_roman(i)})" if roman else ""
            found = [c for c in section_rows if c.key == row.key]
            if found:
                lines.extend(Line(row, c.representative, label, c) for c in found)
            else:
                lines.append(Line(row, None, label))
            used.update(id(c) for c in found)
        for c in section_rows:
            if id(c) not in used:
                rep = c.representative
                lines.append(Line(match(rep, paper) if table is None else None, rep, "", c))
        sections.append(Section(table, ds, lines))
    return sections
