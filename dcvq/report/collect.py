"""Sweep directories as :class:`Run` objects: one per Hydra job dir, named as the paper
names it, with its final evaluation on each split (``eval.json``: val at the top level,
the test split under ``test``), its per-image results, its progress and where and how it
ran. Reading never raises for a damaged or unfinished job; it is listed as missing."""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from dcvq.config.schema import precision_on

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
    "fsq": "FSQ",
    "lfq": "LFQ",
    "simvq": "SimVQ",
}
#: without a ``baseline`` choice, these quantizer classes still get their baselines' names
QUANTIZER_NAMES = {
    "GumbelQuantizer": "Gumbel-VQ",
    "CVQQuantizer": "CVQ",
    "FSQQuantizer": "FSQ",
    "LFQQuantizer": "LFQ",
    "SimVQQuantizer": "SimVQ",
}
#: quantizer settings that make another method of a named row: the row is named with the
#: setting (``VQ-GAN [quantizer.rotation_trick=true]``), so that it is never taken for the
#: paper's row (its numbers, the reference of paired comparisons, the verdicts' VQ-GAN)
VARIANT_KEYS = ("quantizer.rotation_trick",)
#: the ``conf/quantizer/`` options the paper has rows for. Their rows keep the paper's names,
#: read from the config (VQ-GAN, Dual Codebook T-128/S-128, ...); any other option names its
#: row after itself, so a new quantizer needs no entry anywhere.
PAPER_QUANTIZERS = frozenset({"vq", "s128_s128", "t192_s64", "t64_s192", "t128_s128"})
DUAL = "Dual Codebook"
#: the two evaluated splits of a run: ``val`` chose the settings, ``test`` judges them
VAL, TEST = "val", "test"


def source_of(name: str) -> str:
    """The source photo of an evaluated image: ``chelsea@0,32`` (a tile of the photo
    ``chelsea``) -> ``chelsea``; a name without ``@`` (a Fashion-MNIST image) is its own
    source. Tiles of one photo are not independent samples: intervals resample photos."""
    return name.split("@", 1)[0]


@dataclass(eq=False)  # identity: one object per run dir / row
class PerImage:
    """One split of ``per_image.csv``: one value per held-out image and metric, in the
    loader's order."""

    names: list[str]
    values: dict[str, np.ndarray]  # metric -> float64 array, len(names)

    @property
    def sources(self) -> list[str]:
        """Each image's source photo (:func:`source_of`)."""
        return [source_of(n) for n in self.names]


@dataclass(eq=False)  # identity: one object per run dir / row
class Run:
    """One job directory of a sweep."""

    path: Path
    rel: str  # relative to the sweep dir (or to the sweeps' common folder), as printed
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
    #: per_image.csv of the final evaluation, by split name (``val``, ``test``)
    per_image: dict[str, PerImage] = field(default_factory=dict)
    per_image_problem: str | None = None  # why per_image.csv could not be used
    #: the evaluations in step order: metrics.jsonl, then eval.json's at its step
    history: list[dict[str, Any]] = field(default_factory=list)
    eval_mtime: float | None = None  # eval.json's: the newer of two duplicates is kept
    hydra_sweep_dir: str | None = None  # hydra.sweep.dir of a multirun job, as it ran
    sweep: Path | None = None  # the sweep dir (command-line argument) it was found in

    @property
    def ok(self) -> bool:
        return self.results is not None

    @property
    def key(self) -> tuple[str, str, str, str, int | None]:
        return (self.dataset, self.model, self.global_, self.local, self.codebook_size)

    # ---- names ---------------------------------------------------------------------
    @property
    def variant(self) -> str:
        """``T-128/S-128`` (the dual halves) for a dual quantizer, the model's name
        (``VQ-GAN``) otherwise."""
        return f"{self.global_}/{self.local}" if self.global_ else self.model

    @property
    def paper_name(self) -> str:
        """The row's name in the paper: ``Dual Codebook T-128/S-128`` or ``VQ-GAN``."""
        return f"{self.model} {self.variant}" if self.global_ else self.model

    @property
    def paper_name_sized(self) -> str:
        """:attr:`paper_name` with the codebook size: ``VQ-GAN, 512 codes``."""
        size = f", {self.codebook_size} codes" if self.codebook_size else ""
        return f"{self.paper_name}{size}"

    # ---- its config ----------------------------------------------------------------
    def setting(self, key: str) -> Any:
        """A dotted config key's value: ``.hydra/config.yaml`` (resolved where it can
        be), else eval.json's resolved config; None when neither has it."""
        value = _select(self.config, key) if self.config is not None else None
        if value is None:
            node: Any = (self.results or {}).get("config") or {}
            for part in key.split("."):
                node = node.get(part) if isinstance(node, dict) else None
            value = node
        return value

    @property
    def seed(self) -> int | None:
        """The config's ``seed`` (eval.json's resolved config when the YAML lacks it)."""
        seed = self.setting("seed")
        return seed if isinstance(seed, int) and not isinstance(seed, bool) else None

    @property
    def max_steps(self) -> int | None:
        """``trainer.max_steps``: the training budget (rows are compared at one)."""
        steps = self.setting("trainer.max_steps")
        return steps if isinstance(steps, int) and not isinstance(steps, bool) else None

    @property
    def quantizer(self) -> str:
        """The ``quantizer`` option (``t128_s128``, ``vq``, ...), "" when none was chosen."""
        return str(self.choices.get("quantizer") or "")

    @property
    def baseline(self) -> str:
        """The ``+baseline`` option (``cvq``, ...), "" when none was chosen."""
        return str(self.choices.get("baseline") or "")

    # ---- where and how it ran ------------------------------------------------------
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
    def device_type(self) -> str:
        """The kind of device it ran on (``cpu``, ``cuda``): :attr:`device` without its
        index; for ``auto``, eval.json's ``device`` where it records one, ``cpu`` for a
        CPU-only torch build, else ``auto`` (unknown)."""
        device = self.device
        if device == "auto":
            res = self.results or {}
            hint = res.get("device") or (res.get("versions") or {}).get("device")
            if hint:
                device = str(hint)
            elif self.torch_version.endswith("+cpu"):
                device = "cpu"
        return device.split(":")[0]

    @property
    def torch_version(self) -> str:
        """``versions.torch`` of its final evaluation ("" for records without it)."""
        return str(((self.results or {}).get("versions") or {}).get("torch") or "")

    @property
    def precision(self) -> str:
        """``trainer.precision`` as it ran on :attr:`device_type` (``auto`` is fp32 on
        the CPU and bf16 on CUDA; ``dcvq.config.diff.as_run``'s rule)."""
        precision = (((self.results or {}).get("config") or {}).get("trainer") or {}).get(
            "precision"
        ) or _select(self.config, "trainer.precision")
        if precision is None:
            return ""
        kind = self.device_type
        return precision_on(str(precision), kind) if kind in ("cpu", "cuda") else str(precision)

    @property
    def wandb_group(self) -> str:
        """The wandb group its training logged to (``dcvq.logger.wandb``): ``logger.group``
        when set, else the multirun's ``hydra.sweep.dir``, else its sweep dir."""
        group = _select(self.config, "logger.group")
        if isinstance(group, str) and group:
            return group
        if self.hydra_sweep_dir and "${" not in self.hydra_sweep_dir:
            return self.hydra_sweep_dir
        return _relative_to_cwd(self.sweep or self.path.parent)

    # ---- its results ---------------------------------------------------------------
    def results_on(self, kind: str) -> dict[str, Any] | None:
        """eval.json's results on the ``val`` split (its top level) or the ``test``
        split (its ``test`` section; None where the dataset has none)."""
        if kind == VAL:
            return self.results
        test = (self.results or {}).get(TEST)
        return test if isinstance(test, dict) else None

    def per_image_on(self, kind: str) -> PerImage | None:
        """per_image.csv's rows of the ``val`` or ``test`` split."""
        split = (self.results_on(kind) or {}).get("split")
        return self.per_image.get(str(split)) if split is not None else None

    def codebooks_on(self, kind: str = VAL) -> dict[str, dict[str, Any]]:
        """A split's per-codebook statistics in :data:`CODEBOOK_ORDER`."""
        books = (self.results_on(kind) or {}).get("codebooks") or {}
        names = [n for n in CODEBOOK_ORDER if n in books]
        return {n: books[n] for n in names + [n for n in books if n not in names]}

    @property
    def codebooks(self) -> dict[str, dict[str, Any]]:
        """eval.json's per-codebook statistics (val) in :data:`CODEBOOK_ORDER`."""
        return self.codebooks_on(VAL)

    @property
    def collapsed(self) -> list[str]:
        """Codebooks its final evaluation found collapsed: fewer distinct code vectors
        than half of the codes used (the trainer's warning, ``dcvq/trainer/loop.py``)."""
        out = []
        for name, cb in self.codebooks.items():
            used, distinct = cb.get("used"), cb.get("distinct")
            if isinstance(used, int) and isinstance(distinct, int) and distinct < used / 2:
                out.append(name)
        return out


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


def _relative_to_cwd(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def describe(cfg: DictConfig, choices: dict[str, Any]) -> tuple[str, str, str, int | None]:
    """``(model, global, local, codebook size)`` named as the paper names them.

    The paper's quantizer options and baselines get the paper's names; any other
    ``quantizer`` or ``baseline`` option is named after the option itself.
    """
    size = _select(cfg, "codebook.size")
    if not isinstance(size, int):
        size = _select(cfg, "quantizer.codebook_size")
    size = size if isinstance(size, int) else None
    variant = "".join(
        f" [{key}={str(value).lower()}]"
        for key in VARIANT_KEYS
        if (value := _select(cfg, key)) not in (None, False)
    )
    baseline = choices.get("baseline")
    if baseline:
        return BASELINE_NAMES.get(str(baseline), str(baseline)) + variant, "", "", size
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
        return QUANTIZER_NAMES[target] + variant, "", "", size
    # plain nearest-neighbour VQ: VQ-VAE when trained without the GAN and perceptual terms
    no_gan = _select(cfg, "loss.disc_factor") == 0 or _select(cfg, "loss.disc_weight") == 0
    if no_gan and _select(cfg, "loss.perceptual_weight") == 0:
        return "VQ-VAE" + variant, "", "", size
    return "VQ-GAN" + variant, "", "", size


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


def read_per_image(path: Path, split: str = VAL) -> dict[str, PerImage]:
    """``per_image.csv`` -> ``{split name: PerImage}``; ``ValueError`` naming the file
    when damaged. Its header is ``split,name,<metric>,...``; files from before the
    ``split`` column (``name,<metric>,...``) hold one split, ``split``."""
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        rows = list(reader)
    has_split = bool(header) and header[0] == "split"  # type: ignore[index]
    names_at = 1 if has_split else 0
    if not header or len(header) < names_at + 2 or header[names_at] != "name":
        raise ValueError(
            f"{path}: the header must be split,name,<metric>,... or name,<metric>,..."
            f" (got {header})"
        )
    if any(len(r) != len(header) for r in rows):
        raise ValueError(f"{path}: a row has not {len(header)} fields (cut short?)")
    by_split: dict[str, list[list[str]]] = {}
    for r in rows:
        by_split.setdefault(r[0] if has_split else split, []).append(r[names_at:])
    metrics = header[names_at + 1 :]
    out = {}
    for name, part in by_split.items():
        names = [r[0] for r in part]
        if len(set(names)) != len(names):
            raise ValueError(
                f"{path}: an image name occurs twice in split {name!r}; images are paired by name"
            )
        table = np.array([[float(v) for v in r[1:]] for r in part], dtype=np.float64)
        table = table.reshape(len(part), len(metrics))
        out[name] = PerImage(names, {m: table[:, i] for i, m in enumerate(metrics)})
    return out


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


def _read_hydra(path: Path) -> tuple[dict[str, Any], str | None]:
    """``(hydra.runtime.choices, hydra.sweep.dir of a multirun job)`` of hydra.yaml."""
    if not path.is_file():
        return {}, None
    hydra = OmegaConf.load(path)
    node = OmegaConf.select(hydra, "hydra.runtime.choices")
    choices = OmegaConf.to_container(node, resolve=False) if node is not None else {}
    sweep = None
    if str(OmegaConf.select(hydra, "hydra.mode", default="")) == "MULTIRUN":
        node = OmegaConf.select(hydra, "hydra.sweep", default=None)
        raw = OmegaConf.to_container(node, resolve=False).get("dir") if node else None  # type: ignore[union-attr]
        sweep = str(raw) if raw is not None else None
    return choices, sweep  # type: ignore[return-value]


def read_run(job: Path, sweep_dir: Path, table: str | None = None, rel: str | None = None) -> Run:
    """One job dir -> :class:`Run`; never raises for a damaged or unfinished job."""
    if rel is None:
        rel = str(job.relative_to(sweep_dir)) if job != sweep_dir else "."
    choices: dict[str, Any] = {}
    hydra_sweep = None
    problem = None
    try:
        cfg = OmegaConf.load(job / ".hydra" / "config.yaml")
        choices, hydra_sweep = _read_hydra(job / ".hydra" / "hydra.yaml")
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
        hydra_sweep_dir=hydra_sweep,
        sweep=sweep_dir,
    )
    eval_file = job / "eval.json"
    if problem is None and eval_file.is_file():
        try:
            run.results = json.loads(eval_file.read_text())
            run.step = run.results.get("step")
            run.eval_mtime = os.stat(eval_file).st_mtime
        except ValueError as e:
            problem = f"eval.json unreadable: {e}"
    run.history = read_history(job, run.results)
    if run.results is not None and (job / "per_image.csv").is_file():
        try:
            split = str(run.results.get("split") or VAL)
            run.per_image = read_per_image(job / "per_image.csv", split)
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


def _jobs(sweep_dir: Path) -> list[Path]:
    found = {p.parent.parent for p in sweep_dir.rglob("config.yaml") if p.parent.name == ".hydra"}
    return sorted(found)


def collect(sweep_dir: str | Path, table: str | None = None) -> list[Run]:
    """Every job dir (``.hydra/config.yaml``) at any depth below ``sweep_dir``."""
    sweep_dir = Path(sweep_dir)
    return [read_run(job, sweep_dir, table) for job in _jobs(sweep_dir)]


def collect_sweeps(sweep_dirs: Sequence[str | Path], table: str | None = None) -> list[Run]:
    """:func:`collect` over several sweep dirs (a selection sweep and a final one, say);
    with more than one, each run is named relative to the folder they share."""
    dirs = [Path(d) for d in sweep_dirs]
    if len(dirs) == 1:
        return collect(dirs[0], table)
    base = Path(os.path.commonpath([d.resolve() for d in dirs]))
    runs = []
    for d in dirs:
        for job in _jobs(d):
            rel = str(job.resolve().relative_to(base))
            runs.append(read_run(job, d, table, rel=rel))
    return runs
