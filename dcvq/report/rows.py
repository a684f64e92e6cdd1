"""Runs -> the report's rows (:class:`Configuration`): the runs that differ only in their
seed, by the one rule a re-launch also uses (``dcvq.config.diff``: ``RESULT_NEUTRAL``
set aside, the precision as it ran).

Three things do not split a row, they give its runs roles:

- ``trainer.max_steps``: a row reports its runs at one budget (the *main* budget: the one
  with the most seeds at one setting, see :func:`main_budget`); its runs at twice that
  budget are its **budget check** (:mod:`dcvq.report.budget`); runs at other budgets are
  listed, never pooled.
- the keys of ``--select`` (e.g. ``trainer.lr``): the value with the best mean **val**
  PSNR over its seeds is chosen (:class:`Selection`); the row is its runs at that value.
- the device: unless ``--pool-devices``, runs of different device types or torch
  versions are different rows.

Two finished runs of one configuration and one seed (a re-launch into another sweep dir)
are one seed: the newer eval.json is kept, the other listed as a duplicate.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from dcvq.config.diff import RESULT_NEUTRAL, as_run, declared_defaults, flatten, under
from dcvq.report.collect import TEST, VAL, Run

BUDGET_KEY = "trainer.max_steps"

Value = tuple[Any, ...]  # the values of the selected keys, in --select order


def show(value: Any) -> str:
    """A config value as the report prints it (strings quoted, as on a command line)."""
    return json.dumps(value) if isinstance(value, str) else str(value)


def show_values(keys: Sequence[str], value: Value) -> str:
    """``trainer.lr=0.0003`` (several keys comma-separated)."""
    return ", ".join(f"{k}={show(v)}" for k, v in zip(keys, value, strict=True))


def steps_text(steps: int | None) -> str:
    return f"{steps:,} steps" if steps is not None else "unknown budget"


@dataclass
class Selection:
    """How a row's value of the ``--select`` keys was chosen: the value whose runs at the
    selection budget have the best mean validation PSNR over their seeds."""

    keys: tuple[str, ...]
    steps: int | None  # the selection runs' budget
    runs: dict[Value, list[Run]]  # finished runs per value at that budget
    chosen: Value | None
    final: Value | None  # the value of the row's runs (at the main budget)
    final_steps: int | None = None

    def val_psnr(self, value: Value) -> list[float]:
        return [
            float(r.results["psnr"])  # type: ignore[index]
            for r in self.runs.get(value, [])
            if isinstance((r.results or {}).get("psnr"), int | float)
        ]

    @property
    def mismatch(self) -> str | None:
        """Why the row's runs are not at the chosen value, loudly; None when they are."""
        if self.final is None or self.chosen is None or self.final == self.chosen:
            return None
        return (
            f"the row's runs ({steps_text(self.final_steps)}) are at"
            f" {show_values(self.keys, self.final)}, but validation PSNR chose"
            f" {show_values(self.keys, self.chosen)}: these numbers are not at the selected"
            " setting (train the row at the chosen value)"
        )

    def describe(self) -> str:
        """``best mean val PSNR over seeds at 2,500 steps among trainer.lr=0.0001 (25.10
        dB, 1 seed), ...``."""
        if self.chosen is None:
            return "nothing to choose from: no finished run"
        if len(self.runs) < 2:
            return f"one value run ({show_values(self.keys, self.chosen)}): nothing to choose"
        parts = []
        for value in self.runs:
            psnr = self.val_psnr(value)
            mean = f"{np.mean(psnr):.2f} dB" if psnr else "no PSNR"
            n = len(psnr)
            collapsed = sum(bool(r.collapsed) for r in self.runs[value])
            note = f", {collapsed} collapsed" if collapsed else ""
            parts.append(
                f"{show_values(self.keys, value)} ({mean}, {n} seed{'s' * (n != 1)}{note})"
            )
        return (
            f"best mean validation PSNR over seeds at {steps_text(self.steps)} among "
            + "; ".join(parts)
        )


@dataclass(eq=False)  # identity: one object per run dir / row
class Configuration:
    """One row of the report: the runs of one configuration that differ only in their
    seed, at the row's budget and selected value. ``runs`` are ordered by seed;
    ``label`` names the row uniquely in its (table, dataset) section."""

    runs: list[Run]
    label: str = ""
    selected: dict[str, Any] = field(default_factory=dict)  # --select key -> the row's value
    selection: Selection | None = None
    budget_runs: list[Run] = field(default_factory=list)  # the same at twice the budget
    #: the configuration's other runs, each with why it is not one of the row's seeds
    others: list[tuple[Run, str]] = field(default_factory=list)
    duplicates: list[tuple[Run, Run]] = field(default_factory=list)  # (set aside, kept)
    pooled: bool = False  # runs of several devices pooled (--pool-devices)
    #: comparisons already made with other rows (``id(reference)`` -> Comparison): the
    #: tables, the verdicts and the CSV files ask for the same pairs
    compared: dict[int, Any] = field(default_factory=dict, repr=False)

    @property
    def finished(self) -> list[Run]:
        """The runs with an eval.json: the seeds the row's numbers are over."""
        return [r for r in self.runs if r.ok]

    @property
    def representative(self) -> Run:
        """The lowest seed that finished (else the lowest seed): the run shown in figures
        that show one run per row (reconstructions, usage histograms)."""
        return (self.finished or self.runs)[0]

    @property
    def seeds(self) -> list[int | None]:
        return [r.seed for r in self.finished]

    @property
    def ok(self) -> bool:
        return bool(self.finished)

    @property
    def table(self) -> str | None:
        return self.representative.table

    @property
    def dataset(self) -> str:
        return self.representative.dataset

    @property
    def key(self) -> tuple[str, str, str, str, int | None]:
        return self.representative.key

    @property
    def codebook_size(self) -> int | None:
        return self.representative.codebook_size

    @property
    def max_steps(self) -> int | None:
        return self.representative.max_steps

    @property
    def judged(self) -> str:
        """``test`` when every finished seed scored the test split, else ``val``: the
        split the row's numbers and verdicts are on."""
        done = self.finished
        return TEST if done and all(r.results_on(TEST) for r in done) else VAL

    @property
    def split(self) -> str | None:
        """The name of the :attr:`judged` split (``test``, ``val``, ...)."""
        return (self.representative.results_on(self.judged) or {}).get("split")

    @property
    def protocol(self) -> str | None:
        return (self.representative.results or {}).get("protocol")

    @property
    def devices(self) -> list[tuple[str, str]]:
        """``(device type, torch version)`` of its finished seeds, each once."""
        return sorted({(r.device_type, r.torch_version) for r in self.finished})

    @property
    def device_text(self) -> str:
        """``cuda · torch 2.11.0+cu130 · fp32`` (``pooled:`` and each, when pooled)."""
        kinds = self.devices
        precisions = sorted({r.precision for r in self.finished if r.precision})
        parts = [f"{d} · torch {t or '?'}" for d, t in kinds] or ["—"]
        text = "; ".join(parts) + (f" · {'/'.join(precisions)}" if precisions else "")
        return f"pooled: {text}" if len(kinds) > 1 else text

    def names(self) -> set[str]:
        """Every name this row answers to (``--reference``): its label, the paper's name
        with and without the size, the dual halves and the option, lower case."""
        run = self.representative
        found = {
            self.label,
            run.paper_name,
            run.paper_name_sized,
            run.variant,
            run.quantizer,
            run.baseline,
        }
        return {n.lower() for n in found if n}


def result_config(run: Run, drop: Sequence[str] = ()) -> dict[str, Any]:
    """The run's config as flat ``{dotted key: value}`` without ``seed``,
    :data:`RESULT_NEUTRAL` and ``drop``: what must be equal for two runs to be seeds of
    one row. From ``.hydra/config.yaml`` (unresolved, as every run has it), else
    eval.json's ``config``."""
    tree: Any = None
    if run.config is not None and len(run.config):
        tree = OmegaConf.to_container(run.config, resolve=False)
    elif (run.results or {}).get("config"):
        tree = run.results["config"]  # type: ignore[index]
    flat = as_run(declared_defaults(flatten(tree))) if isinstance(tree, dict) else {}
    return {k: v for k, v in flat.items() if not under(k, ("seed", *RESULT_NEUTRAL, *drop))}


def main_budget(runs: Sequence[Run], keys: Sequence[str], steps: int | None = None) -> int | None:
    """The budget a configuration's row reports: ``steps`` where runs have it; else the
    budget with the most seeds at one setting (a final sweep: 3 seeds at the chosen value),
    then the fewest settings (a selection sweep has many), then one whose double was also
    run (the budget check), then the larger."""
    done = [r for r in runs if r.ok] or list(runs)
    budgets = {r.max_steps for r in done}
    if steps is not None and steps in budgets:
        return steps

    def score(b: int | None) -> tuple:
        at = [r for r in done if r.max_steps == b]
        by_value: dict[Value, set] = {}
        for r in at:
            by_value.setdefault(_value(r, keys), set()).add(r.seed)
        doubled = b is not None and 2 * b in budgets
        return (max(len(s) for s in by_value.values()), -len(by_value), doubled, b or 0)

    return max(budgets, key=score) if budgets else None


def _value(run: Run, keys: Sequence[str]) -> Value:
    return tuple(run.setting(k) for k in keys)


def _sortable(value: Value) -> tuple:
    return tuple(
        (v is None, str(type(v)), v if isinstance(v, int | float) else str(v)) for v in value
    )


def _dedupe(runs: Sequence[Run], keys: Sequence[str]) -> tuple[list[Run], list[tuple[Run, Run]]]:
    """One run per (budget, selected value, seed): the newest finished one (eval.json's
    mtime), else the first; the others are duplicates ``(set aside, kept)``."""
    slots: dict[Any, list[Run]] = {}
    for r in runs:
        seed = r.seed if r.seed is not None else f"unknown:{r.rel}"  # unknown seeds stay
        slots.setdefault((r.max_steps, _value(r, keys), seed), []).append(r)
    kept, dups = [], []
    for members in slots.values():
        done = sorted((r for r in members if r.ok), key=lambda r: -(r.eval_mtime or 0.0))
        keep = done[0] if done else members[0]
        kept.append(keep)
        dups += [(r, keep) for r in members if r is not keep]
    return kept, dups


def _select_value(
    runs: Sequence[Run], keys: Sequence[str], main: int | None
) -> tuple[Value, Selection | None]:
    """The value of ``keys`` the row reports, and how it was chosen."""
    done = [r for r in runs if r.ok]
    if not keys:
        return (), None
    by_budget: dict[int | None, set[Value]] = {}
    for r in done:
        by_budget.setdefault(r.max_steps, set()).add(_value(r, keys))
    at_main = [r for r in runs if r.max_steps == main]
    if not by_budget:  # nothing finished: the row is what was launched
        first = at_main[0] if at_main else runs[0]
        return _value(first, keys), Selection(tuple(keys), main, {}, None, None, main)
    # the selection runs: the budget that tried the most values (the final budget on a tie)
    sel = max(by_budget, key=lambda b: (len(by_budget[b]), b == main, b or 0))
    per_value: dict[Value, list[Run]] = {}
    for r in sorted(done, key=lambda r: (_sortable(_value(r, keys)), r.seed or 0)):
        if r.max_steps == sel:
            per_value.setdefault(_value(r, keys), []).append(r)
    selection = Selection(tuple(keys), sel, per_value, None, None, main)

    def mean_psnr(value: Value) -> float:
        psnr = selection.val_psnr(value)
        return float(np.mean(psnr)) if psnr else -np.inf

    selection.chosen = max(per_value, key=mean_psnr)
    if any(_value(r, keys) == selection.chosen for r in at_main):
        selection.final = selection.chosen
    else:  # the final sweep ran another value: the value with the most finished seeds
        counts: dict[Value, int] = {}
        for r in at_main:
            counts[_value(r, keys)] = counts.get(_value(r, keys), 0) + r.ok
        selection.final = max(counts, key=lambda v: counts[v]) if counts else selection.chosen
    return selection.final, selection


def _role(
    run: Run, keys: Sequence[str], row_value: Value, main: int | None, sel: Selection | None
) -> str:
    """Why a run of the configuration is not one of the row's seeds."""
    value = _value(run, keys)
    at = f"{show_values(keys, value)}, " if keys else ""
    selecting = sel is not None and run.max_steps == sel.steps and run.ok and value in sel.runs
    if selecting and (run.max_steps != main or value != row_value):
        chosen = " (chosen)" if value == sel.chosen else ""  # type: ignore[union-attr]
        return f"selection run ({at}{steps_text(run.max_steps)}){chosen}"
    if run.max_steps == main:
        return f"not selected ({show_values(keys, value)})"
    if main is not None and run.max_steps == 2 * main:
        return f"budget check at a value not selected ({at}{steps_text(run.max_steps)})"
    return f"another budget ({at}{steps_text(run.max_steps)}; the row's: {steps_text(main)})"


def _build(
    runs: Sequence[Run], keys: Sequence[str], pooled: bool, steps: int | None
) -> Configuration:
    kept, dups = _dedupe(runs, keys)
    main = main_budget(kept, keys, steps)
    row_value, selection = _select_value(kept, keys, main)
    mine = [r for r in kept if r.max_steps == main and _value(r, keys) == row_value]
    double = 2 * main if main is not None else None
    check = [r for r in kept if r.max_steps == double and _value(r, keys) == row_value]
    others = [
        (r, _role(r, keys, row_value, main, selection))
        for r in kept
        if r not in mine and r not in check
    ]

    def seed_order(r: Run) -> tuple:
        return (r.seed is None, r.seed if r.seed is not None else 0, r.rel)

    return Configuration(
        runs=sorted(mine, key=seed_order),
        selected=dict(zip(keys, row_value, strict=True)),
        selection=selection,
        budget_runs=sorted(check, key=seed_order),
        others=sorted(others, key=lambda o: seed_order(o[0])),
        duplicates=dups,
        pooled=pooled,
    )


def _device(run: Run) -> tuple[str, str]:
    return (run.device_type, run.torch_version)


def _label_part(key: str, value: Any) -> str:
    """``trainer.lr=0.0003``; the device and torch version as ``cuda``, ``torch 2.11``."""
    if key == "device":
        return str(value)
    return f"torch {value}" if key == "torch" else f"{key}={show(value)}"


def _labels(configs: Sequence[Configuration], drop: Sequence[str]) -> list[str]:
    """Row names unique within a section: the paper's name, the codebook size when the
    section has several, and the config keys (or device) that tell apart rows still
    alike."""
    sizes = {c.codebook_size for c in configs}
    base = []
    for c in configs:
        run = c.representative
        size = f", {run.codebook_size} codes" if len(sizes) > 1 and run.codebook_size else ""
        base.append(f"{run.paper_name}{size}")
    labels = list(base)
    for text in set(base):
        same = [i for i, b in enumerate(base) if b == text]
        if len(same) < 2:
            continue
        flats = []
        for i in same:
            c = configs[i]
            flat = result_config(c.representative, drop)
            if not c.pooled and c.ok:
                flat |= dict(zip(("device", "torch"), c.devices[0], strict=True))
            flats.append(flat)
        keys = sorted({k for f in flats for k in f if len({show(g.get(k)) for g in flats}) > 1})
        for i, f in zip(same, flats, strict=True):
            shown = ", ".join(_label_part(k, f.get(k)) for k in keys[:3])
            more = f", +{len(keys) - 3} keys" if len(keys) > 3 else ""
            labels[i] = f"{text} [{shown or configs[i].representative.rel}{more}]"
    return labels


def group_runs(
    runs: Sequence[Run],
    select: Sequence[str] = (),
    pool_devices: bool = False,
    steps: int | None = None,
) -> list[Configuration]:
    """Runs as rows (:class:`Configuration`), in order of first appearance.

    Runs of one table and row name (paper name, quantizer and baseline option) whose
    configs are equal but for ``seed``, :data:`RESULT_NEUTRAL`, ``trainer.max_steps`` and
    the ``select`` keys are one configuration; unless ``pool_devices``, so are only runs
    of one device type and torch version. ``steps`` names the main budget (default:
    :func:`main_budget`). A run whose config could not be read stays alone."""
    drop = (*select, BUDGET_KEY)
    families: dict[Any, list[Run]] = {}

    def base_of(run: Run) -> Any:
        cfg = result_config(run, drop)
        ident = json.dumps(cfg, sort_keys=True, default=str) if cfg else f"unreadable:{run.rel}"
        # the row's name too: two options with the same content are two rows (my_vq, vq)
        return (run.table, run.dataset, (run.key, run.quantizer, run.baseline), ident)

    # finished runs first: an unfinished one joins a finished family of its device type
    for run in sorted(runs, key=lambda r: not r.ok):
        base = base_of(run)
        if pool_devices:
            where: Any = ()
        elif run.ok:
            where = _device(run)
        else:
            same = [k for k in families if k[0] == base and k[1][0] == run.device_type]
            where = same[0][1] if same else (run.device_type, "")
        families.setdefault((base, where), []).append(run)
    order = {id(r): i for i, r in enumerate(runs)}
    members = sorted(families.values(), key=lambda rs: min(order[id(r)] for r in rs))
    configs = [_build(rs, select, pool_devices, steps) for rs in members]
    configs = [c for c in configs if c.runs or c.others or c.budget_runs]
    sections: dict[tuple[str | None, str], list[Configuration]] = {}
    for c in configs:
        if not c.runs:  # only other budgets or values: shown by its representative
            c.runs = [next(iter([*c.budget_runs, *(r for r, _ in c.others)]))]
            c.others = [(r, why) for r, why in c.others if r is not c.runs[0]]
            c.budget_runs = [r for r in c.budget_runs if r is not c.runs[0]]
        sections.setdefault((c.table, c.dataset), []).append(c)
    for section in sections.values():
        for c, label in zip(section, _labels(section, drop), strict=True):
            c.label = label
    return configs
