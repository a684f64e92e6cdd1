"""End-to-end training on CPU with tiny configs."""

import csv
import json
import math

import numerics
import numpy as np
import pytest
import torch
from PIL import Image

from dcvq import load_model
from dcvq.checkpoint import read_checkpoint
from dcvq.trainer import NonFiniteLossError, Trainer, train
from dcvq.trainer.loop import learning_rate

QUANTIZERS = ["vq", "s128_s128", "t192_s64", "t64_s192", "t128_s128"]


@pytest.mark.parametrize("quantizer", QUANTIZERS)
def test_every_quantizer_trains_end_to_end(tiny_cfg, tmp_path, quantizer):
    results = train(tiny_cfg(quantizer=quantizer), tmp_path)
    assert (tmp_path / "checkpoints" / "last.pt").is_file()
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [2, 4]
    names = ["codebook"] if quantizer == "vq" else ["global", "local"]
    for line in lines:
        assert {"l1", "l2", "psnr"} <= set(line)
        assert set(line["codebooks"]) == set(names)
        for cb in line["codebooks"].values():
            assert {"usage", "perplexity"} <= set(cb)
    assert sorted(p.name for p in (tmp_path / "samples").glob("*.png")) == [
        "step_0000002.png",
        "step_0000004.png",
    ]
    saved = json.loads((tmp_path / "eval.json").read_text())
    assert saved["step"] == 4 and saved["n_images"] == results["n_images"] == 8
    model = load_model(tmp_path / "checkpoints" / "last.pt")
    assert not model.training
    x = torch.zeros(1, 3, 32, 32)
    with torch.no_grad():
        assert model.encode(x)[1].shape == (1, len(names), 8, 8)


def params(trainer: Trainer) -> dict[str, torch.Tensor]:
    out = {f"model.{k}": v for k, v in trainer.model.state_dict().items()}
    out |= {f"disc.{k}": v for k, v in trainer.loss.discriminator.state_dict().items()}
    return out


def test_resume_is_bit_identical(tiny_cfg, tmp_path):
    """N steps straight == N/2 steps, a new process-like Trainer resuming, N/2 more. The
    straight run evaluates at step 3, after its checkpoint: evaluation must not move the
    random stream that the resumed run restores."""
    overrides = [
        "trainer.max_steps=6",
        "trainer.eval_every=3",
        "trainer.ckpt_every=3",
        "quantizer.transformer_dropout=0.5",
    ]  # dropout draws from the global RNG
    straight = Trainer(tiny_cfg(*overrides), tmp_path / "a")
    straight.fit()
    first = Trainer(
        tiny_cfg(*overrides[:-1], "trainer.max_steps=3", "quantizer.transformer_dropout=0.5"),
        tmp_path / "b",
    )
    first.fit()
    assert read_checkpoint(tmp_path / "b/checkpoints/last.pt")["step"] == 3
    torch.manual_seed(999)  # whatever the global RNG holds, the checkpoint restores it
    second = Trainer(tiny_cfg(*overrides, "trainer.resume=true"), tmp_path / "b")
    second.fit()
    assert second.step == 6
    a, b = params(straight), params(second)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    for opt in ("opt_ae", "opt_d"):
        sa = getattr(straight, opt).state_dict()["state"]
        sb = getattr(second, opt).state_dict()["state"]
        assert all(torch.equal(sa[i]["exp_avg"], sb[i]["exp_avg"]) for i in sa)


def test_resume_without_checkpoint_starts_fresh(tiny_cfg, tmp_path):
    t = Trainer(tiny_cfg("trainer.resume=true"), tmp_path)
    t.maybe_resume()
    assert t.step == 0


def test_resume_off_with_a_checkpoint_starts_fresh_and_says_so(tiny_cfg, tmp_path, caplog):
    overrides = ["trainer.max_steps=2", "trainer.eval_every=100"]
    first = Trainer(tiny_cfg(*overrides), tmp_path)
    first.fit()
    fresh = Trainer(tiny_cfg(*overrides, "trainer.resume=false"), tmp_path)
    with caplog.at_level("WARNING", logger="dcvq.trainer.loop"):
        fresh.maybe_resume()
    assert fresh.step == 0
    assert "trainer.resume=false: starting from step 0" in caplog.text
    assert "last.pt" in caplog.text
    # the fresh run starts from the seed's initialisation, not the checkpoint's weights
    init = Trainer(tiny_cfg(*overrides), tmp_path / "other").model.state_dict()
    assert all(torch.equal(v, init[k]) for k, v in fresh.model.state_dict().items())


def test_non_finite_loss_stops_and_keeps_last_checkpoint(tiny_cfg, tmp_path, monkeypatch):
    trainer = Trainer(tiny_cfg("trainer.max_steps=4", "trainer.eval_every=100"), tmp_path)
    ckpt = tmp_path / "checkpoints" / "last.pt"
    original = trainer.model.forward

    def poisoned(x):
        rec, vq_loss, info = original(x)
        if trainer.step >= 3:
            vq_loss = vq_loss * float("nan")
        return rec, vq_loss, info

    monkeypatch.setattr(trainer.model, "forward", poisoned)
    with pytest.raises(NonFiniteLossError, match="non-finite loss at step 3.*last.pt is intact"):
        trainer.fit()
    state = read_checkpoint(ckpt)
    assert state["step"] == 2
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_discriminator_untouched_before_disc_start(tiny_cfg, tmp_path):
    trainer = Trainer(tiny_cfg("loss.disc_start=3", "trainer.max_steps=3"), tmp_path)
    before = {k: v.clone() for k, v in trainer.loss.discriminator.state_dict().items()}
    trainer.fit()
    after = trainer.loss.discriminator.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    trainer.t.max_steps = 4
    trainer.fit()  # step 3 >= disc_start: now it trains
    after = trainer.loss.discriminator.state_dict()
    assert not all(torch.equal(before[k], after[k]) for k in before)


def test_learning_rate_rule(tiny_cfg):
    cfg = tiny_cfg("trainer.lr=null", "trainer.batch_size=4", "trainer.accumulate=2")
    assert learning_rate(cfg.trainer, world_size=8) == pytest.approx(4.5e-6 * 4 * 2 * 8)
    assert learning_rate(tiny_cfg("trainer.lr=0.01").trainer, world_size=8) == 0.01


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_paths_learn_on_cpu(fixed_batch_losses, precision):
    """The AMP code path (autocast, GradScaler for fp16) is the one CUDA runs. From the
    same weights and batch its loss is fp32's to the low precision's rounding, and it
    falls over a few steps on a fixed batch as fp32's does (1.68 -> 1.00 in 6 steps)."""
    _, fp32 = fixed_batch_losses("trainer.precision=fp32")
    trainer, amp = fixed_batch_losses(f"trainer.precision={precision}")
    assert trainer.scaler.is_enabled() == (precision == "fp16")
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())  # fp32 master
    kappa = numerics.amp_kappa(trainer.dtype, len(numerics.layers(trainer.model)), 1)
    assert numerics.relative_error(amp[:1], fp32[:1]) <= kappa
    assert amp[-1] < 0.75 * amp[0] and fp32[-1] < 0.75 * fp32[0]


def test_resume_with_another_model_names_the_changed_keys(tiny_cfg, tmp_path):
    Trainer(tiny_cfg("trainer.max_steps=2", "trainer.eval_every=100"), tmp_path).fit()
    ckpt = tmp_path / "checkpoints" / "last.pt"
    before = ckpt.read_bytes()
    other = Trainer(tiny_cfg("trainer.max_steps=4", "codebook.size=16"), tmp_path)
    expected = r"cannot resume from .*last.pt.*codebook.size: 32 -> 16"
    with pytest.raises(RuntimeError, match=expected):
        other.fit()
    assert ckpt.read_bytes() == before  # nothing lost


def test_metric_networks_leave_the_shared_rng_alone(tiny_cfg, tmp_path, lpips_weights):
    """Rank 0 alone builds the evaluator (LPIPS' VGG is randomly initialised before its
    weights load): every rank must still hold the same random stream afterwards."""
    without = Trainer(tiny_cfg(), tmp_path / "a")
    state = torch.get_rng_state()
    with_lpips = Trainer(tiny_cfg("eval.lpips=true"), tmp_path / "b")
    assert with_lpips.evaluator.lpips is not None
    assert torch.equal(torch.get_rng_state(), state)
    del without


def test_cosine_schedule_warms_up_then_decays(tiny_cfg, tmp_path):
    cfg = tiny_cfg("trainer.lr_schedule=cosine", "trainer.warmup_steps=2", "trainer.max_steps=6")
    Trainer(cfg, tmp_path).fit()
    lines = (tmp_path / "train.jsonl").read_text().splitlines()
    lrs = [json.loads(line)["lr"] / 1e-3 for line in lines]
    # warm-up 1/2, 2/2, then half a cosine from 1 towards 0 over the 4 remaining steps
    expected = [0.5, 1.0] + [0.5 * (1 + math.cos(math.pi * k / 4)) for k in range(4)]
    assert lrs == pytest.approx(expected)


def test_constant_schedule_is_taming_s(tiny_cfg, tmp_path):
    Trainer(tiny_cfg(), tmp_path).fit()
    lines = (tmp_path / "train.jsonl").read_text().splitlines()
    assert {json.loads(line)["lr"] for line in lines} == {1e-3}


def test_a_collapsed_codebook_is_reported_not_only_its_usage(tiny_cfg, tmp_path, caplog):
    """Every code one vector (plus rounding noise): usage looks healthy, distinct says 1,
    and the run's log says the codebook collapsed."""
    trainer = Trainer(tiny_cfg("quantizer=vq", "trainer.max_steps=1", "trainer.lr=0"), tmp_path)
    table = trainer.model.quantizer.codebook.embedding.weight
    with torch.no_grad():
        table.copy_(table[:1] + 1e-6 * torch.randn_like(table))
    with caplog.at_level("WARNING", logger="dcvq.trainer.loop"):
        results = trainer.fit()
    cb = results["codebooks"]["codebook"]
    assert cb["used"] > 2 and cb["distinct"] == 1
    assert f"codebook 'codebook' has collapsed: its {cb['used']} used codes are 1 distinct" in (
        caplog.text
    )
    logged = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert logged["codebooks"]["codebook"]["distinct"] == 1


def test_the_final_evaluation_scores_val_and_test(tiny_cfg, tmp_path):
    """Settings are chosen on val, verdicts judged on test: with a ``dataset.test_split``
    the final evaluation scores both, each with the same keys, both in per_image.csv."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("val", 3), ("test", 5)):
        (tmp_path / "data" / split).mkdir(parents=True)
        for i in range(n):
            pixels = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "data" / split / f"{split}{i}.png")
    cfg = tiny_cfg("dataset=imagefolder", f"dataset.root={tmp_path / 'data'}",
                   "dataset.test_split=test", "eval.max_images=null")  # fmt: skip
    results = train(cfg, tmp_path / "run")
    test = results["test"]
    assert (results["split"], results["n_images"], results["device"]) == ("val", 3, "cpu")
    assert (test["split"], test["n_images"]) == ("test", 5)
    assert {"psnr", "l1", "l2", "ssim", "codebooks", "data"} <= test.keys()
    assert test["psnr"] != results["psnr"]
    with open(tmp_path / "run" / "per_image.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["split"] for r in rows] == ["val"] * 3 + ["test"] * 5
    mean = sum(float(r["psnr"]) for r in rows[3:]) / 5
    assert mean == pytest.approx(test["psnr"], rel=1e-9)
    assert json.loads((tmp_path / "run" / "eval.json").read_text())["test"] == test
