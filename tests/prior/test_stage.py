"""run_prior on a real tokenizer checkpoint: prior.json, samples.png, generation FID and
the errors for bad input."""

from __future__ import annotations

import json
import math

import pytest
import torch
from PIL import Image

from dcvq.config import ConfigError
from dcvq.prior import run_prior
from dcvq.prior.train import CHECKPOINT

KEYS = {"bits_per_token", "steps", "n_params", "fid", "n_train_sequences",
        "n_val_sequences", "tokenizer", "split", "not_measured", "samples"}  # fmt: skip


def run(cfg, checkpoint, run_dir, **kw):
    return run_prior(cfg.prior, checkpoint, run_dir, cfg.eval, "cpu", num_workers=0, **kw)


def test_prior_json_samples_and_generation_fid(prior_run_cfg, dual_checkpoint, inception_weights,
                                               tmp_path):  # fmt: skip
    cfg = prior_run_cfg()
    out = run(cfg, dual_checkpoint, tmp_path)
    saved = json.loads((tmp_path / "prior.json").read_text())
    assert saved == out
    assert KEYS | {"bits_per_token_global", "bits_per_token_local"} <= set(saved)
    assert saved["steps"] == 4 and saved["n_params"] > 0
    assert saved["n_train_sequences"] == 24 and saved["n_val_sequences"] == 8
    assert saved["tokenizer"] == {"checkpoint": str(dual_checkpoint), "step": 1}
    assert saved["split"] == "val" and saved["sequence"]["grid"] == [8, 8]
    bits = saved["bits_per_token"]
    assert math.isfinite(bits) and bits > 0
    assert math.isclose(bits, saved["bits_per_token_global"] + saved["bits_per_token_local"])
    assert saved["uniform_bits_per_token"] == 10.0  # 2 x log2(32)
    # generation FID through the reconstruction FID's weights: the stand-in file, said so
    assert saved["fid"] is not None and math.isfinite(saved["fid"]) and saved["fid_images"] == 4
    assert saved["weights"]["inception"] == {"path": str(inception_weights), "official": False}
    assert saved["not_measured"] == {}
    with Image.open(tmp_path / "samples.png") as im:  # 4 samples of 32x32, 2 a row
        assert im.size == (2 * 34 + 2, 2 * 34 + 2)
    assert (tmp_path / CHECKPOINT).is_file()
    lines = (tmp_path / "prior_train.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [1, 2, 3, 4]


def test_bits_per_token_fall_below_uniform_on_real_tokens(prior_run_cfg, dual_checkpoint,
                                                          tmp_path):  # fmt: skip
    cfg = prior_run_cfg("prior.max_steps=40", "prior.ckpt_every=100", "prior.grid_images=0",
                        "eval.fid=false")  # fmt: skip
    out = run(cfg, dual_checkpoint, tmp_path)
    # a 1-step tokenizer's global codes are few, its local ones many: both below uniform
    assert out["bits_per_token_global"] < math.log2(32) - 1
    assert out["bits_per_token_local"] < math.log2(32)
    assert out["bits_per_token"] < out["uniform_bits_per_token"] - 2
    assert out["not_measured"] == {"fid": "eval.fid=false"} and out["samples"] is None


def test_single_codebook_quantizer(prior_run_cfg, vq_checkpoint, tmp_path):
    out = run(prior_run_cfg("eval.fid=false", "prior.max_steps=1"), vq_checkpoint, tmp_path)
    assert out["bits_per_token"] == out["bits_per_token_codebook"]
    assert "bits_per_token_global" not in out and out["sequence"]["codebook_sizes"] == [32]


def test_missing_inception_weights_skip_gives_null_with_the_reason(prior_run_cfg, dual_checkpoint,
                                                                   tmp_path):  # fmt: skip
    cfg = prior_run_cfg("eval.missing_weights=skip", "prior.max_steps=1")
    out = run(cfg, dual_checkpoint, tmp_path)
    assert out["fid"] is None and "no Inception weights at" in out["not_measured"]["fid"]


def test_missing_inception_weights_stop_before_training(prior_run_cfg, dual_checkpoint, tmp_path):
    with pytest.raises(FileNotFoundError, match="eval.fid_weights=PATH"):
        run(prior_run_cfg(), dual_checkpoint, tmp_path)
    assert not (tmp_path / CHECKPOINT).exists() and not (tmp_path / "prior.json").exists()


def test_a_missing_checkpoint_is_named(prior_run_cfg, tmp_path):
    with pytest.raises(FileNotFoundError, match=f"checkpoint {tmp_path / 'nope.pt'} does not"):
        run(prior_run_cfg("eval.fid=false"), tmp_path / "nope.pt", tmp_path)


def test_a_file_that_is_not_a_dcvq_checkpoint_is_named(prior_run_cfg, tmp_path):
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(RuntimeError, match=f"{other} is not a dcvq checkpoint"):
        run(prior_run_cfg("eval.fid=false"), other, tmp_path)


def test_a_prior_checkpoint_is_no_tokenizer(prior_run_cfg, dual_checkpoint, tmp_path):
    cfg = prior_run_cfg("eval.fid=false", "prior.max_steps=1", "prior.grid_images=0")
    run(cfg, dual_checkpoint, tmp_path / "first")
    with pytest.raises(RuntimeError, match=r"prior\.pt is a prior checkpoint .*not a tokenizer"):
        run(cfg, tmp_path / "first" / CHECKPOINT, tmp_path / "second")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("prior.model.seq_len=100", r"prior\.model\.seq_len=100 does not fit .*8 x 8 positions "
                                    r"x 2 codebook\(s\) = 128 tokens.*tokenizer: .*last\.pt"),
        ("prior.model.vocab_sizes=[512,512]", r"prior\.model\.vocab_sizes=\[512, 512\]"),
        ("prior.batch_size=0", r"prior\.batch_size=0 must be >= 1"),
        ("prior=none", r"prior: no prior chosen \(prior=none\)"),
    ],
)  # fmt: skip
def test_a_prior_config_that_does_not_fit_names_the_key(prior_run_cfg, dual_checkpoint, tmp_path,
                                                        override, message):  # fmt: skip
    overrides = ["eval.fid=false", override]
    if override == "prior=none":  # FAST's prior.* keys do not exist then
        from dcvq.config import compose

        cfg = compose(["checkpoint=x", *overrides], config_name="prior_train")
    else:
        cfg = prior_run_cfg(*overrides)
    with pytest.raises(ConfigError, match=message):
        run(cfg, dual_checkpoint, tmp_path)
    assert not (tmp_path / CHECKPOINT).exists()
