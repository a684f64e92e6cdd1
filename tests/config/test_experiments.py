"""The paper's tables as experiment presets (conf/experiment/table*.yaml) and the commands
their READMEs (experiments/<table>/README.md) give."""

from __future__ import annotations

import csv
import re
import shlex
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from dcvq.config import CONF_DIR, compose, register, validate

REPO = CONF_DIR.parent
EXPERIMENTS = REPO / "experiments"
TABLE2 = {"vq", "s128_s128", "t192_s64", "t64_s192", "t128_s128"}

# What each preset promises about the data: the protocol of the numbers it compares with.
PRESETS = {
    "table1_ade20k": {
        "_target_": "dcvq.data.ade20k.ADE20K",
        "layout": "full",
        "train_split": "train",
        "split": "val",
        "policy": "squash",
    },
    "table1_celebahq": {
        "_target_": "dcvq.data.celebahq.CelebAHQ",
        "layout": "vqct",
        "train_split": "train",
        "split": "test",
        "policy": "center_crop",
    },
    "table1_coco": {
        "_target_": "dcvq.data.coco.COCO",
        "year": 2014,
        "train_split": "train",
        "split": "val",
        "policy": "center_crop",
    },
    "tableS1_cub": {
        "_target_": "dcvq.data.cub200.CUB200",
        "train_split": "train",
        "split": "train",
        "policy": "center_crop",
    },
    "table2": {
        "_target_": "dcvq.data.coco.COCO",
        "year": 2014,
        "split": "val",
        "policy": "center_crop",
    },
    "table3": {
        "_target_": "dcvq.data.coco.COCO",
        "year": 2014,
        "split": "val",
        "policy": "center_crop",
    },
}
SHARED = ("model", "loss", "trainer", "eval", "codebook", "seed", "quantizer")


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_fixes_what_the_numbers_depend_on(name):
    cfg = compose([f"experiment={name}"])
    validate(cfg)
    for key, value in PRESETS[name].items():
        assert cfg.dataset[key] == value, key
    # training flips (as the release's CelebA-HQ loader); evaluation never does (below)
    assert cfg.dataset.resolution == 256 and cfg.dataset.flip is True
    assert cfg.eval.protocol == "vqct" and cfg.eval.fid and cfg.eval.lpips
    assert cfg.eval.max_images is None  # the whole split
    # ours: T-128/S-128 with 512 codes per codebook, the paper's f16 VQGAN
    q = cfg.quantizer
    assert (q.global_dim, q.local_dim, q.global_transformer) == (128, 128, True)
    assert cfg.codebook.size == 512 and q.codebook_size == 512
    assert list(cfg.model.ch_mult) == [1, 1, 2, 2, 4] and cfg.loss.disc_start == 10000
    # effective batch 16 x 8 GPUs, taming's lr rule from the base rate
    t = cfg.trainer
    assert (t.batch_size, t.accumulate, t.base_lr, t.lr) == (16, 1, 4.5e-6, None)
    assert t.max_steps == 100_000 and cfg.seed == 0
    assert name.split("_")[0] in cfg.logger.tags


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_flips_training_images_only(name, monkeypatch):
    """dataset.flip=true reaches the training dataset; every evaluated split (val and the
    optional test split) is built with flip=False and a fixed crop, whatever the preset."""
    import dcvq.build

    monkeypatch.setattr(dcvq.build, "instantiate", lambda node: node)  # the kwargs, no data
    cfg = compose([f"experiment={name}"])
    train = dcvq.build.build_dataset(cfg, cfg.dataset.train_split, training=True)
    assert (train["flip"], train["policy"]) == (True, "random_crop")
    evaluated = dcvq.build.build_dataset(cfg, cfg.dataset.split, training=False)
    assert evaluated["flip"] is False and evaluated["policy"] == PRESETS[name]["policy"]


def test_presets_share_one_training_setting():
    """Only the data differs between the tables: rows of different tables compare."""
    cfgs = {n: compose([f"experiment={n}"]) for n in PRESETS}
    ref = {
        k: OmegaConf.to_container(cfgs["table1_coco"][k]) if k != "seed" else cfgs["table1_coco"][k]
        for k in SHARED
    }
    for name, cfg in cfgs.items():
        got = {k: OmegaConf.to_container(cfg[k]) if k != "seed" else cfg[k] for k in SHARED}
        assert got == ref, name
    # Tables 2 and 3 are exactly the Table 1 MS-COCO setting
    coco = OmegaConf.to_container(cfgs["table1_coco"].dataset)
    assert OmegaConf.to_container(cfgs["table2"].dataset) == coco
    assert OmegaConf.to_container(cfgs["table3"].dataset) == coco


def test_every_experiment_has_a_preset_and_paper_rows():
    assert set(PRESETS) <= {p.stem for p in (CONF_DIR / "experiment").glob("*.yaml")}
    for table, count in {"1": 18, "2": 5, "3": 2, "S1": 6}.items():
        with open(EXPERIMENTS / f"table{table}" / "paper.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == count and {r["table"] for r in rows} == {table}
        assert all(r["fid"] and r["psnr"] and r["l1"] and r["l2"] for r in rows)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_each_table_writes_to_its_own_dirs(name):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    register()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = hydra_compose("train", overrides=[f"experiment={name}"], return_hydra_config=True)
    assert cfg.hydra.sweep.dir.startswith(f"multirun/{name}/")
    assert cfg.hydra.run.dir.startswith(f"outputs/{name}/")


@pytest.mark.parametrize(
    ("baseline", "target"),
    [("vqvae", "VectorQuantizer"), ("gumbel", "GumbelQuantizer"), ("cvq", "CVQQuantizer")],
)
def test_baselines_keep_the_presets_data_and_protocol(baseline, target):
    cfg = compose(["experiment=table1_ade20k", f"+baseline={baseline}"])
    validate(cfg)
    assert cfg.quantizer._target_.endswith(target) and cfg.codebook.size == 1024
    assert cfg.dataset.policy == "squash" and cfg.dataset.layout == "full"
    assert cfg.eval.protocol == "vqct" and cfg.trainer.batch_size == 16
    if baseline == "vqvae":
        assert cfg.loss.perceptual_weight == 0 and cfg.loss.disc_factor == 0


def readme_commands(table: str) -> list[list[str]]:
    """The ``python train.py`` lines of a table's README, as Hydra overrides."""
    text = (EXPERIMENTS / table / "README.md").read_text()
    lines = [ln for ln in text.splitlines() if ln.startswith("python train.py")]
    return [[a for a in shlex.split(ln)[2:] if a != "-m"] for ln in lines]


def sweep(hydra_sweep_runner, overrides: list[str]) -> list[tuple[str, str, int]]:
    """Launch a multirun with a no-op task: (job subdir, quantizer target, size) per job."""
    from hydra.core.hydra_config import HydraConfig

    register()
    jobs = []

    def task(cfg):
        out = Path(HydraConfig.get().runtime.output_dir).name
        jobs.append((out, cfg.quantizer._target_.rsplit(".", 1)[-1], cfg.codebook.size))

    runner = hydra_sweep_runner(
        calling_file=str(REPO / "train.py"),
        calling_module=None,
        config_path="conf",
        config_name="train",
        task_function=task,
        overrides=[*overrides, "hydra/launcher=basic"],
    )
    with runner:
        pass
    return jobs


def test_table2_command_sweeps_the_five_quantizers(hydra_sweep_runner):
    """One job per option of conf/quantizer (the paper's five among them; a user's own
    quantizer joins the sweep), no schema swept as an option."""
    first, second = readme_commands("table2")
    assert first == ["experiment=table2", "quantizer=glob(*)"]
    jobs = sweep(hydra_sweep_runner, first)
    options = {p.stem for p in (CONF_DIR / "quantizer").glob("*.yaml")}
    assert len(jobs) == len(options) and {size for *_, size in jobs} == {512}
    swept = {out.rsplit("_n", 1)[0] for out, *_ in jobs}
    assert swept == options and TABLE2.issubset(swept)
    # row (i) as the paper ran it
    assert sweep(hydra_sweep_runner, second) == [
        ("vq_n1024,experiment=table2", "VectorQuantizer", 1024)
    ]
    assert (
        "python -m dcvq.report multirun/table2\n" in (EXPERIMENTS / "table2/README.md").read_text()
    )


def test_table3_command_sweeps_the_codebook_size(hydra_sweep_runner):
    (cmd,) = readme_commands("table3")
    jobs = sweep(hydra_sweep_runner, cmd)
    assert jobs == [
        ("t128_s128_n512,experiment=table3", "DualCodebookQuantizer", 512),
        ("t128_s128_n1024,experiment=table3", "DualCodebookQuantizer", 1024),
    ]
    assert (
        "python -m dcvq.report multirun/table3\n" in (EXPERIMENTS / "table3/README.md").read_text()
    )


@pytest.mark.parametrize(
    ("table", "name"),
    [
        ("table1", "table1_ade20k"),
        ("table1", "table1_celebahq"),
        ("table1", "table1_coco"),
        ("tableS1", "tableS1_cub"),
    ],
)
def test_table1_commands_give_every_row(hydra_sweep_runner, table, name):
    """Per dataset: ours (512), VQ-GAN (1024), and the three baselines (1024), each job
    dir named after its row; the report reads the folder the sweeps write to."""
    ours, vqgan, baselines = (c for c in readme_commands(table) if f"experiment={name}" in c)
    exp = f"experiment={name}"
    assert sweep(hydra_sweep_runner, ours) == [
        (f"t128_s128_n512,{exp}", "DualCodebookQuantizer", 512)
    ]
    assert sweep(hydra_sweep_runner, vqgan) == [(f"vq_n1024,{exp}", "VectorQuantizer", 1024)]
    assert sweep(hydra_sweep_runner, baselines) == [
        (f"vqvae_n1024,{exp}", "VectorQuantizer", 1024),
        (f"gumbel_n1024,{exp}", "GumbelQuantizer", 1024),
        (f"cvq_n1024,{exp}", "CVQQuantizer", 1024),
    ]
    assert (
        f"python -m dcvq.report multirun/{name}\n"
        in (EXPERIMENTS / table / "README.md").read_text()
    )


# ---- the shared recipe, and what the presets cite -----------------------------------
RECIPE_USERS = ("table1_ade20k", "table1_celebahq", "table1_coco", "tableS1_cub")


def test_presets_share_the_recipe_instead_of_copies():
    """The training setting is written once (conf/experiment/recipe/paper.yaml): no preset
    restates a key of it, so the tables cannot drift apart."""
    recipe = OmegaConf.load(CONF_DIR / "experiment" / "recipe" / "paper.yaml")
    for name in RECIPE_USERS:
        raw = OmegaConf.load(CONF_DIR / "experiment" / f"{name}.yaml")
        assert "recipe/paper" in raw.defaults, name
        restated = {k for k in set(raw) & set(recipe) if k not in ("dataset", "defaults")}
        restated |= {f"dataset.{k}" for k in set(raw.dataset) & set(recipe.dataset)}
        assert not restated, (name, restated)


def test_parts_of_presets_are_not_experiments(hydra_sweep_runner):
    """conf/experiment/recipe/ and conf/experiment/quantizer/ hold parts of presets:
    experiment=glob(*) runs only the presets, the files directly in conf/experiment/."""
    from hydra.core.hydra_config import HydraConfig

    register()
    swept = []
    runner = hydra_sweep_runner(
        calling_file=str(REPO / "train.py"),
        calling_module=None,
        config_path="conf",
        config_name="train",
        task_function=lambda cfg: swept.append(HydraConfig.get().runtime.choices.experiment),
        overrides=["experiment=glob(*)", "hydra/launcher=basic"],
    )
    with runner:
        pass
    parts = [p for p in (CONF_DIR / "experiment").rglob("*.yaml") if p.parent.name != "experiment"]
    assert {"paper.yaml", "tiny_t128_s128.yaml"} <= {p.name for p in parts}
    assert sorted(swept) == sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))


def test_presets_cite_only_files_in_the_repository():
    """A reader of a preset can open every document it points to (the papers are cited by
    title)."""
    for path in CONF_DIR.rglob("*.yaml"):
        for name in re.findall(r"[\w./-]*\w\.md\b", path.read_text()):
            assert (REPO / name).is_file() or (path.parent / name).is_file(), (path, name)


# ---- experiment=tiny: the tests' runs, and `python train.py experiment=tiny` ----------
QUANTIZER_OPTIONS = sorted(p.stem for p in (CONF_DIR / "quantizer").glob("*.yaml"))
BASELINES = sorted(p.stem for p in (CONF_DIR / "baseline").glob("*.yaml"))


def quantizer_node(overrides: list[str]) -> dict:
    return OmegaConf.to_container(compose(overrides).quantizer)  # unresolved


@pytest.mark.parametrize(
    "choice", [f"quantizer={q}" for q in QUANTIZER_OPTIONS] + [f"+baseline={b}" for b in BASELINES]
)
def test_tiny_composes_with_every_quantizer_option(choice):
    """Every option (and baseline) trains tiny: the f4 model at 32 px on the CPU; an option
    with a codebook transformer gets a one-layer one, every other quantizer is exactly its
    own YAML (vq has no transformer keys to set)."""
    cfg = compose(["experiment=tiny", choice])
    validate(cfg)
    assert cfg.model.ch == 32 and cfg.dataset.resolution == 32 and cfg.trainer.device == "cpu"
    # taming's own recipe keeps its perceptual term (its point): it needs the VGG16 weights
    perceptual = 1.0 if choice == "+baseline=vqgan_taming" else 0
    assert (cfg.trainer.max_steps, cfg.trainer.batch_size) == (4, 2)
    assert cfg.loss.perceptual_weight == perceptual
    # a baseline sets its own codebook size (1024), as with every preset
    assert cfg.codebook.size == (1024 if choice.startswith("+baseline") else 32)
    alone = quantizer_node([choice])
    if cfg.quantizer.get("global_transformer"):
        assert (cfg.quantizer.transformer_layers, cfg.quantizer.transformer_ff) == (1, 64)
        alone |= {"transformer_layers": 1, "transformer_ff": 64}
    assert OmegaConf.to_container(cfg.quantizer) == alone


def test_every_per_quantizer_file_names_an_experiment_and_an_option():
    """conf/experiment/quantizer/<experiment>_<option>.yaml is pulled in `optional`ly: a
    misspelt name would be skipped without a word."""
    experiments = {p.stem for p in (CONF_DIR / "experiment").glob("*.yaml")}
    files = sorted((CONF_DIR / "experiment" / "quantizer").glob("*.yaml"))
    assert files
    names = {f"{e}_{q}" for e in experiments for q in QUANTIZER_OPTIONS}
    for path in files:
        assert path.stem in names, path.name
