"""A sweep directory as :class:`Run` objects: one per Hydra job dir, named as the paper
names it, and the runs that differ only in their seed grouped into one
:class:`Configuration`. Reading never raises for a damaged or unfinished job; it is listed
as missing."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from dcvq.config.diff import RESULT_NEUTRAL, as_run, flatten, under

#: a run's codebooks in display order (global left, local right); others after these
CODEBOOK_ORDER = ("global", "local", "codebook")

# Hydra option name -> the paper's name for it
DATASET_NAMES = {
    "ade20k": "ADE20K",
    "celebahq": "CelebA-HQ",
    "coco": "MS-COCO",
    "cub200": "CUB-200",
    "samples": "samples",
    "sampleimages": "samples",
    "imagefolder": "image folder",
}
BASELINE_NAMES = {
    "vqvae": "VQ-VAE",
    "gumbel": "Gumbel-VQ",
    "cvq": "CVQ",
    "vqgan_taming": "VQ-GAN (taming)",
}
#: without a ``baseline`` choice, these quantizer classes still get the paper's names
QUANTIZER_NAMES = {"GumbelQuantizer": "Gumbel-VQ", "CVQQuantizer": "CVQ"}
#: the ``conf/quantizer/`` options the paper has rows for. Their rows keep the paper's names,
#: read from the config (VQ-GAN, Dual Codebook T-128/S-128, ...); any other option names its
#: row after itself, so a new quantizer needs no entry anywhere.
PAPER_QUANTIZERS = frozenset({"vq", "s128_s128", "t192_s64", "t64_s192", "t128_s128"})
DUAL = "Dual Codebook"


@dataclass
class PerImage:
    """``per_image.csv``: one value per held-out image and metric, in the loader's order."""

    names: list[str]
    values: dict[str, np.ndarray]  # metric -> float64 array, len(names)


@dataclass
class Run:
    """One job directory of a sweep."""

    path: Path
    rel: str  # relative to the sweep dir, as printed
    table: str | None
    dataset: str
    model: str
    global_: str
    local: str
    codebook_size: int | None
    results: dict[str, Any] | None = None  # eval.json
    step: int | None = None
    sample: Path | None = None  # the last reconstruction grid
    problem: str | None = None  # why there are no results
    choices: dict[str, Any] = field(default_factory=dict)  # hydra.runtime.choices
    config: DictConfig | None = None  # .hydra/config.yaml, unresolved
    per_image: PerImage | None = None  # per_image.csv of the final evaluation
    per_image_problem: str | None = None  # why per_image.csv could not be used
    #: the evaluations in step order: metrics.jsonl, then eval.json's at its step
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.results is not None

    @property
    def key(self) -> tuple[str, str, str, str, int | None]:
        return (self.dataset, self.model, self.global_, self.local, self.codebook_size)

    @property
    def name(self) -> str:
        """``T-128/S-128`` for the dual quantizers, the model's name otherwise."""
        return f"{self.global_}/{self.local}" if self.global_ else self.model

    @property
    def title(self) -> str:
        """``Dual Codebook T-128/S-128`` or ``VQ-GAN``."""
        return f"{self.model} {self.name}" if self.global_ else self.model

    @property
    def label(self) -> str:
        size = f", {self.codebook_size} codes" if self.codebook_size else ""
        return f"{self.title}{size}"

    @property
    def seed(self) -> int | None:
        """The config's ``seed`` (eval.json's resolved config when the YAML lacks it)."""
        seed = _select(self.config, "seed") if self.config is not None else None
        if not isinstance(seed, int):
            seed = ((self.results or {}).get("config") or {}).get("seed")
        return seed if isinstance(seed, int) else None

    @property
    def device(self) -> str:
        """``trainer.device`` it trained on (``auto`` when the config does not say): from
        eval.json's config first, since a re-launch that leaves a finished run alone on
        another device still rewrites its ``.hydra/config.yaml``."""
        device = (((self.results or {}).get("config") or {}).get("trainer") or {}).get("device")
        if device is None:
            device = _select(self.config, "trainer.device")
        return str(device or "auto")

    @property
    def quantizer(self) -> str:
        """The ``quantizer`` option (``t128_s128``, ``vq``, ...), "" when none was chosen."""
        return str(self.choices.get("quantizer") or "")

    @property
    def baseline(self) -> str:
        """The ``+baseline`` option (``cvq``, ...), "" when none was chosen."""
        return str(self.choices.get("baseline") or "")

    @property
    def codebooks(self) -> dict[str, dict[str, Any]]:
        """eval.json's per-codebook statistics in :data:`CODEBOOK_ORDER`."""
        books = (self.results or {}).get("codebooks") or {}
        names = [n for n in CODEBOOK_ORDER if n in books]
        return {n: books[n] for n in names + [n for n in books if n not in names]}


def table_of_experiment(name: str | None) -> str | None:
    """``table1_coco`` -> ``1``, ``table2`` -> ``2``, ``tableS1_cub`` -> ``S1``."""
    m = re.match(r"table(S?\d+)(?:_|$)", name or "", flags=re.IGNORECASE)
    return m.group(1).upper() if m else None


def _select(cfg: DictConfig | None, key: str) -> Any:
    # Hydra saves the config unresolved; keys this module needs are plain values, and an
    # interpolation that cannot resolve here (e.g. ${hydra:...}) reads as None.
    if cfg is None:
        return None
    try:
        return OmegaConf.select(cfg, key, throw_on_resolution_failure=False)
    except Exception:  # a damaged config must not stop the report
        return None


def describe(cfg: DictConfig, choices: dict[str, Any]) -> tuple[str, str, str, int | None]:
    """``(model, global, local, codebook size)`` named as the paper names them.

    The paper's quantizer options and baselines get the paper's names; any other
    ``quantizer`` or ``baseline`` option is named after the option itself.
    """
    size = _select(cfg, "codebook.size")
    if not isinstance(size, int):
        size = _select(cfg, "quantizer.codebook_size")
    size = size if isinstance(size, int) else None
    baseline = choices.get("baseline")
    if baseline:
        return BASELINE_NAMES.get(str(baseline), str(baseline)), "", "", size
    g = loc = ""
    if _select(cfg, "quantizer.global_dim") is not None:
        kind = "T" if _select(cfg, "quantizer.global_transformer") else "S"
        g = f"{kind}-{_select(cfg, 'quantizer.global_dim')}"
        loc = f"S-{_select(cfg, 'quantizer.local_dim')}"
    option = choices.get("quantizer")
    if option and str(option) not in PAPER_QUANTIZERS:
        return str(option), g, loc, size
    if g:
        return DUAL, g, loc, size
    target = str(_select(cfg, "quantizer._target_") or "").rsplit(".", 1)[-1]
    if target in QUANTIZER_NAMES:
        return QUANTIZER_NAMES[target], "", "", size
    # plain nearest-neighbour VQ: VQ-VAE when trained without the GAN and perceptual terms
    no_gan = _select(cfg, "loss.disc_factor") == 0 or _select(cfg, "loss.disc_weight") == 0
    if no_gan and _select(cfg, "loss.perceptual_weight") == 0:
        return "VQ-VAE", "", "", size
    return "VQ-GAN", "", "", size


def dataset_name(cfg: DictConfig, choices: dict[str, Any]) -> str:
    """The paper's name of the dataset option (``coco`` -> ``MS-COCO``), else the option."""
    choice = choices.get("dataset")
    if not choice:  # not run through Hydra's defaults: use the dataset class
        choice = str(_select(cfg, "dataset._target_") or "unknown").rsplit(".", 1)[-1]
    return DATASET_NAMES.get(str(choice).lower(), str(choice))


def _last_json_line(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    with open(path, "rb") as f:
        f.seek(0, 2)
        f.seek(max(0, f.tell() - 65536))  # the tail is enough for one line
        lines = [ln for ln in f.read().splitlines() if ln.strip()]
    for line in reversed(lines):
        try:
            return json.loads(line)
        except ValueError:
            continue  # a line cut by the seek or by a killed writer
    return None


def read_per_image(path: Path) -> PerImage:
    """``per_image.csv`` -> :class:`PerImage`; ``ValueError`` naming the file when damaged."""
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        rows = list(reader)
    if not header or header[0] != "name" or len(header) < 2:
        raise ValueError(f"{path}: the header must be name,<metric>,... (got {header})")
    if any(len(r) != len(header) for r in rows):
        raise ValueError(f"{path}: a row has not {len(header)} fields (cut short?)")
    names = [r[0] for r in rows]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: an image name occurs twice; images are paired by name")
    table = np.array([[float(v) for v in r[1:]] for r in rows], dtype=np.float64)
    table = table.reshape(len(rows), len(header) - 1)
    return PerImage(names, {m: table[:, i] for i, m in enumerate(header[1:])})


def read_history(job: Path, results: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The run's evaluations by step: metrics.jsonl's lines and eval.json's final one.

    A step evaluated twice (a run resumed from a checkpoint older than that evaluation)
    keeps its last record; eval.json's wins at its own step.
    """
    by_step: dict[int, dict[str, Any]] = {}
    path = job / "metrics.jsonl"
    if path.is_file():
        for line in path.read_text(errors="replace").splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a line cut by a killed writer
            if isinstance(rec, dict) and isinstance(rec.get("step"), int):
                by_step[rec["step"]] = rec
    if results and isinstance(results.get("step"), int):
        by_step[results["step"]] = results
    return [by_step[s] for s in sorted(by_step)]


def last_sample(job: Path) -> Path | None:
    """The last reconstruction grid (``samples/step_XXXXXXX.png`` sorts by step)."""
    grids = sorted((job / "samples").glob("*.png"))
    return grids[-1] if grids else None


def read_run(job: Path, sweep_dir: Path, table: str | None = None) -> Run:
    """One job dir -> :class:`Run`; never raises for a damaged or unfinished job."""
    rel = str(job.relative_to(sweep_dir)) if job != sweep_dir else "."
    choices: dict[str, Any] = {}
    hydra_file = job / ".hydra" / "hydra.yaml"
    problem = None
    try:
        cfg = OmegaConf.load(job / ".hydra" / "config.yaml")
        if hydra_file.is_file():
            node = OmegaConf.select(OmegaConf.load(hydra_file), "hydra.runtime.choices")
            if node is not None:
                choices = OmegaConf.to_container(node, resolve=False)  # type: ignore[assignment]
    except Exception as e:  # a damaged job is listed as missing, never a crash
        cfg, problem = OmegaConf.create({}), f"unreadable config: {e}"
    model, g, loc, size = describe(cfg, choices)  # type: ignore[arg-type]
    run = Run(
        path=job,
        rel=rel,
        table=table or table_of_experiment(choices.get("experiment")),
        dataset=dataset_name(cfg, choices),  # type: ignore[arg-type]
        model=model,
        global_=g,
        local=loc,
        codebook_size=size,
        sample=last_sample(job),
        choices=choices,
        config=cfg,  # type: ignore[arg-type]
    )
    eval_file = job / "eval.json"
    if problem is None and eval_file.is_file():
        try:
            run.results = json.loads(eval_file.read_text())
            run.step = run.results.get("step")
        except ValueError as e:
            problem = f"eval.json unreadable: {e}"
    run.history = read_history(job, run.results)
    if run.results is not None and (job / "per_image.csv").is_file():
        try:
            run.per_image = read_per_image(job / "per_image.csv")
        except (OSError, ValueError) as e:
            run.per_image_problem = str(e)
    elif run.results is not None:
        run.per_image_problem = f"{job / 'per_image.csv'}: missing (a run from before it existed)"
    if run.results is None:
        # train.jsonl is written every few steps, metrics.jsonl at each evaluation
        steps = [
            (_last_json_line(job / f) or {}).get("step") for f in ("train.jsonl", "metrics.jsonl")
        ]
        run.step = max((s for s in steps if isinstance(s, int)), default=None)
        ckpt = (job / "checkpoints" / "last.pt").is_file()
        where = f"last logged step {run.step}" if run.step is not None else "nothing logged"
        run.problem = problem or (
            f"no eval.json ({where}{', checkpoint present' if ckpt else ''}): "
            "still running, failed or preempted"
        )
    return run


def collect(sweep_dir: str | Path, table: str | None = None) -> list[Run]:
    """Every job dir (``.hydra/config.yaml``) at any depth below ``sweep_dir``."""
    sweep_dir = Path(sweep_dir)
    jobs = sorted(
        {p.parent.parent for p in sweep_dir.rglob("config.yaml") if p.parent.name == ".hydra"}
    )
    return [read_run(job, sweep_dir, table) for job in jobs]


# ---- seeds of one configuration -------------------------------------------------------
@dataclass
class Configuration:
    """The runs of a sweep that differ only in their seed (and :data:`RESULT_NEUTRAL`): one
    row of the report. ``runs`` are ordered by seed; ``label`` names the row uniquely in
    its (table, dataset) section (see :func:`group_runs`)."""

    runs: list[Run]
    label: str = ""

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
    def split(self) -> str | None:
        return (self.representative.results or {}).get("split")

    @property
    def protocol(self) -> str | None:
        return (self.representative.results or {}).get("protocol")

    def names(self) -> set[str]:
        """Every name this row answers to (``--reference``): its label, the run's title
        and label, the dual halves and the quantizer or baseline option, lower case."""
        run = self.representative
        found = {self.label, run.title, run.label, run.name, run.quantizer, run.baseline}
        return {n.lower() for n in found if n}


def result_config(run: Run) -> dict[str, Any]:
    """The run's config as flat ``{dotted key: value}`` without ``seed`` and
    :data:`RESULT_NEUTRAL`: what must be equal for two runs to be seeds of one row. From
    ``.hydra/config.yaml`` (unresolved, as every run has it), else eval.json's ``config``."""
    tree: Any = None
    if run.config is not None and len(run.config):
        tree = OmegaConf.to_container(run.config, resolve=False)
    elif (run.results or {}).get("config"):
        tree = run.results["config"]  # type: ignore[index]
    flat = as_run(flatten(tree)) if isinstance(tree, dict) else {}
    return {k: v for k, v in flat.items() if not under(k, ("seed", *RESULT_NEUTRAL))}


def _show(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str) else str(value)


def _labels(configs: Sequence[Configuration]) -> list[str]:
    """Row names unique within a section: the paper's name, the codebook size when the
    section has several, and the config keys that tell apart rows still alike."""
    sizes = {c.codebook_size for c in configs}
    base = []
    for c in configs:
        run = c.representative
        size = f", {run.codebook_size} codes" if len(sizes) > 1 and run.codebook_size else ""
        base.append(f"{run.title}{size}")
    labels = list(base)
    for text in set(base):
        same = [i for i, b in enumerate(base) if b == text]
        if len(same) < 2:
            continue
        flats = [result_config(configs[i].representative) for i in same]
        keys = sorted({k for f in flats for k in f if len({_show(g.get(k)) for g in flats}) > 1})
        for i, f in zip(same, flats, strict=True):
            shown = ", ".join(f"{k}={_show(f.get(k))}" for k in keys[:3])
            more = f", +{len(keys) - 3} keys" if len(keys) > 3 else ""
            labels[i] = f"{text} [{shown or configs[i].representative.rel}{more}]"
    return labels


def group_runs(runs: Sequence[Run]) -> list[Configuration]:
    """Runs of one table and row name (paper name, quantizer and baseline option) that
    differ only in ``seed`` (and :data:`RESULT_NEUTRAL`) as one :class:`Configuration`
    each, in order of first appearance, seeds ascending. A run whose config could not be
    read stays alone."""
    groups: dict[Any, list[Run]] = {}
    for run in runs:
        cfg = result_config(run)
        ident = json.dumps(cfg, sort_keys=True, default=str) if cfg else f"unreadable:{run.rel}"
        # the row's name too: two options with the same content are two rows (my_vq, vq)
        name = (run.key, run.quantizer, run.baseline)
        groups.setdefault((run.table, run.dataset, name, ident), []).append(run)

    def seed_order(r: Run) -> tuple:
        return (r.seed is None, r.seed if r.seed is not None else 0, r.rel)

    configs = [Configuration(sorted(g, key=seed_order)) for g in groups.values()]
    sections: dict[tuple[str | None, str], list[Configuration]] = {}
    for c in configs:
        sections.setdefault((c.table, c.dataset), []).append(c)
    for members in sections.values():
        for c, label in zip(members, _labels(members), strict=True):
            c.label = label
    return configs
