"""Today's quantizers as rows: +baseline=fsq|lfq|simvq and quantizer.rotation_trick=true,
beside the paper's five quantizer options (which `quantizer=glob(*)` still sweeps)."""

from __future__ import annotations

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from dcvq.config import CONF_DIR, compose, validate
from dcvq.config.diff import result_changes


def test_quantizer_options_stay_the_papers_five():
    options = {p.stem for p in (CONF_DIR / "quantizer").glob("*.yaml")}
    assert options == {"vq", "s128_s128", "t128_s128", "t192_s64", "t64_s192"}
    assert {"fsq", "lfq", "simvq"} <= {p.stem for p in (CONF_DIR / "baseline").glob("*.yaml")}


@pytest.mark.parametrize(
    ("baseline", "target", "implied"),
    [
        ("fsq", "FSQQuantizer", 1000),
        ("lfq", "LFQQuantizer", 1024),
        ("simvq", "SimVQQuantizer", 1024),
    ],
)
def test_baseline_sets_the_papers_size_and_the_studys_fits(baseline, target, implied):
    cfg = compose([f"+baseline={baseline}"])
    validate(cfg)
    assert cfg.quantizer._target_ == f"dcvq.quantizers.{target}" and cfg.codebook.size == 1024
    q = instantiate(compose(["experiment=tiny", f"+baseline={baseline}"]).quantizer)
    assert q.codebook_sizes == (implied,)
    small = instantiate(
        compose(["experiment=tiny", f"+baseline={baseline}", "codebook.size=128"]).quantizer
    )
    assert small.codebook_sizes == ((125,) if baseline == "fsq" else (128,))


def test_rotation_trick_is_a_key_of_vq_and_old_records_lack_it_at_false():
    plain = compose(["quantizer=vq"])
    rotated = compose(["quantizer=vq", "quantizer.rotation_trick=true"])
    validate(rotated)
    assert plain.quantizer.rotation_trick is False and rotated.quantizer.rotation_trick is True
    changes = result_changes(OmegaConf.to_container(plain, resolve=True), rotated)
    assert changes == ["quantizer.rotation_trick: False -> True"]
    # a run recorded before the key existed is today's plain row: nothing to re-train
    old = OmegaConf.to_container(plain, resolve=True)
    del old["quantizer"]["rotation_trick"]
    assert result_changes(old, plain) == []
