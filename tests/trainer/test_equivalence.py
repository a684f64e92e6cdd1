"""What the README promises is the same training, checked to float noise:

- ``trainer.accumulate=2`` at batch b == batch 2b (discriminator off);
- 2 DDP ranks at batch b == 1 process at b with ``accumulate=2`` when the discriminator
  is on (test_distributed.py: == 1 process at 2b when it is off): its BatchNorm statistics and the
  adaptive weight are per rank, exactly as they are per micro-batch;
- bf16 / fp16 autocast == fp32 within the tolerance their rounding allows.

The transformer codebook's dropout draws a new mask per forward, so these comparisons run
it with ``quantizer.transformer_dropout=0`` (with dropout, micro-batches and ranks are the
same training in distribution, not in value).

Tolerances. Only the summation order differs (batch 2b vs two sums of b, gloo's all-reduce,
other SIMD widths on other CPUs), so the gradients differ by rounding: for a sum of n fp32
terms the error is below ``n * eps * sum|terms|`` (eps = 2**-24 per operation) and is in
practice ``~ sqrt(n) * eps`` of the gradient's scale per layer. The tiny model has ~15
layers on the path with fan-ins up to ~600 (3x3 x 64 channels), so the first-step
gradients must agree to ``15 * sqrt(600) * 6e-8 ~ 2e-5`` of each tensor's largest entry
(measured: 1.1e-5 at most, on the bias of the last conv, a sum over every pixel): we
allow 1e-4. Adam divides each gradient by its own magnitude, so elements whose true
gradient is zero (a conv bias just before a one-channel GroupNorm group, which the norm
removes) take steps of +-lr from rounding noise alone; they do not change the output,
which is why later steps are compared through the losses (rtol 1e-4), not the weights.
A real mismatch (a different batch, a missing averaging) moves both by far more: each
comparison is also run against such a mismatch and must fail there.
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from dcvq.config import CONF_DIR

STEPS = 3
GRAD_RTOL = 1e-4  # of each tensor's largest entry (see the module docstring)
LOSS_RTOL = 1e-4
COMMON = [
    "quantizer.transformer_dropout=0",
    "trainer.max_steps=3",
    "trainer.eval_every=100",
    "trainer.ckpt_every=100",
    "trainer.lr=1e-3",
]
DISC_ON = ["loss.disc_start=0"]
DISC_OFF = ["loss.disc_start=1000"]


def run_steps(cfg, run_dir, steps: int) -> dict:
    """Train ``steps`` steps through ``Trainer.train_step`` (the code DDP runs), keeping
    the per-step losses and Adam's first moments after step 1 (= (1 - beta1) * gradient)."""
    from dcvq.trainer import Trainer  # imported here: torchrun's script embeds this function

    trainer = Trainer(cfg, run_dir)
    batches = iter(trainer.loaders()[0])
    out: dict = {"losses": []}
    for step in range(steps):
        micro = [trainer.next_images(batches) for _ in range(trainer.t.accumulate)]
        out["losses"].append(trainer.train_step(micro))
        if step == 0:
            for name in ("opt_ae", "opt_d"):
                state = getattr(trainer, name).state_dict()["state"]
                out[name] = [state[i]["exp_avg"].clone() for i in sorted(state)]
    out["model"] = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    out["disc"] = {k: v.clone() for k, v in trainer.loss.discriminator.named_parameters()}
    return out


def first_moments_close(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    """Rounding noise scales with the gradient flowing through a layer, not with each
    entry: entries whose true value is zero (cancelled by a GroupNorm) are pure noise, so
    a tensor's scale is floored at 1e-3 of the model's largest first moment."""
    assert len(a) == len(b) > 0
    floor = 1e-3 * max(x.abs().max().item() for x in a)
    for x, y in zip(a, b, strict=True):
        scale = max(x.abs().max().item(), y.abs().max().item(), floor)
        if (x - y).abs().max().item() > GRAD_RTOL * scale:
            return False
    return True


def losses_close(a: list[dict], b: list[dict], keys=("l1", "vq", "total")) -> bool:
    """Losses are means of quantities of order one (pixels in [-1, 1], logits): their
    noise is relative to that scale, not to a mean that cancels (``g`` nears 0)."""
    return all(
        abs(x[k] - y[k]) <= LOSS_RTOL * max(abs(x[k]), abs(y[k]), 1.0)
        for x, y in zip(a, b, strict=True)
        for k in keys
    )


def assert_same_training(a: dict, b: dict, disc: bool) -> None:
    assert first_moments_close(a["opt_ae"], b["opt_ae"])
    keys = ("l1", "vq", "total") + (("d", "g") if disc else ())
    assert losses_close(a["losses"], b["losses"], keys), (a["losses"], b["losses"])
    if disc:
        assert first_moments_close(a["opt_d"], b["opt_d"])


def test_accumulation_matches_the_double_batch(tiny_cfg, tmp_path):
    acc = run_steps(
        tiny_cfg(*COMMON, *DISC_OFF, "trainer.batch_size=2", "trainer.accumulate=2"),
        tmp_path / "acc",
        STEPS,
    )
    double = run_steps(tiny_cfg(*COMMON, *DISC_OFF, "trainer.batch_size=4"), tmp_path / "b", STEPS)
    assert_same_training(acc, double, disc=False)
    # a real mismatch fails the same comparison: the double batch of another data seed
    other = run_steps(
        tiny_cfg(*COMMON, *DISC_OFF, "trainer.batch_size=4", "seed=1"), tmp_path / "c", STEPS
    )
    assert not first_moments_close(acc["opt_ae"], other["opt_ae"])
    assert not losses_close(acc["losses"], other["losses"])


SCRIPT = """
import os, sys, torch
from dcvq.config import compose
{run_steps}
out = run_steps(compose(sys.argv[2:]), sys.argv[1], {steps})
torch.save(out, os.path.join(sys.argv[1], "rank" + os.environ["RANK"] + ".pt"))
"""


def torchrun(tmp_path: Path, overrides: list[str], nproc: int = 2) -> list[dict]:
    script = tmp_path / "ranks.py"
    source = textwrap.dedent(inspect.getsource(run_steps))
    script.write_text(SCRIPT.format(run_steps=source, steps=STEPS))
    run_dir = tmp_path / "ddp"
    run_dir.mkdir()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={nproc}",
            str(script),
            str(run_dir),
            *overrides,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ | {"OMP_NUM_THREADS": "1"},
        cwd=CONF_DIR.parent,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [torch.load(run_dir / f"rank{r}.pt", weights_only=True) for r in range(nproc)]


@pytest.mark.slow
def test_ddp_with_the_discriminator_matches_accumulation(tiny_cfg, tiny_overrides, tmp_path):
    """2 ranks at batch 2 with the discriminator (its BatchNorm, the adaptive weight, the
    hand-averaged discriminator gradients) == 1 process at batch 2, accumulate=2."""
    overrides = [*tiny_overrides, *COMMON, *DISC_ON, "trainer.batch_size=2"]
    ranks = torchrun(tmp_path, overrides)
    # every rank holds the same weights: DDP's and the hand-averaged gradients agree
    for part in ("model", "disc"):
        for k, v in ranks[0][part].items():
            assert torch.equal(v, ranks[1][part][k]), (part, k)
    single = run_steps(
        tiny_cfg(*COMMON, *DISC_ON, "trainer.batch_size=2", "trainer.accumulate=2"),
        tmp_path / "single",
        STEPS,
    )
    assert single["losses"][0]["d"] > 0 and "d_weight" in single["losses"][0]
    # each rank's losses are its own micro-batch's; accumulation logs their average
    mean = [
        {k: (a[k] + b[k]) / 2 for k in a}
        for a, b in zip(ranks[0]["losses"], ranks[1]["losses"], strict=True)
    ]
    assert_same_training(ranks[0] | {"losses": mean}, single, disc=True)
    assert not losses_close(ranks[0]["losses"], ranks[1]["losses"])


@pytest.mark.slow
def test_ddp_trains_cvq_with_the_discriminator_in_step(tiny_overrides, tmp_path):
    """CVQ rewrites its codebook in the forward from all-reduced statistics and anchors
    broadcast from rank 0: after steps with the discriminator on, every rank holds the
    same codebook, autoencoder and discriminator, bit for bit."""
    overrides = [
        *tiny_overrides,
        "+baseline=cvq",
        "codebook.size=32",
        *[o for o in COMMON if not o.startswith("quantizer.")],
        *DISC_ON,
        "trainer.batch_size=2",
    ]
    ranks = torchrun(tmp_path, overrides)
    codebook = [k for k in ranks[0]["model"] if k.startswith("quantizer.")]
    assert codebook
    initial = run_steps_init_codebook(overrides, tmp_path)
    assert any(not torch.equal(ranks[0]["model"][k], initial[k]) for k in codebook)
    for part in ("model", "disc"):
        for k, v in ranks[0][part].items():
            assert torch.equal(v, ranks[1][part][k]), (part, k)


def run_steps_init_codebook(overrides: list[str], tmp_path: Path) -> dict:
    """The quantizer's weights at initialisation (same seed), to see that CVQ moved them."""
    from dcvq.build import build_model
    from dcvq.config import compose

    cfg = compose([o for o in overrides if not o.startswith("hydra.")])
    torch.manual_seed(cfg.seed)
    return {k: v for k, v in build_model(cfg).state_dict().items() if k.startswith("quantizer.")}


# bf16 keeps 8 significant bits (unit roundoff 2**-9 ~ 2e-3) on the inputs of every conv
# and matmul, fp16 11 (2**-12 ~ 2.4e-4); accumulation stays fp32. The first forward is a
# mean over every pixel, where these roundings average out: 1e-3 (measured: 8e-5). Each
# Adam step then moves the two runs apart (a step of lr per element, whatever the
# gradient's size): after 2 and 3 steps 2e-2 (measured on this CPU: 1.5e-2 bf16, 9.4e-3
# fp16; a 20 % larger lr already gives 3.4e-2, another data seed 2.3). The discriminator
# is off: its logits at initialisation are means that cancel (bf16 moves g by 14 %), and
# fp16's GradScaler skips its first steps (its 2**16 scale overflows), as on CUDA.
PRECISION_RTOL = [1e-3, 2e-2, 2e-2]


def losses_within(a: list[dict], b: list[dict], rtols: list[float]) -> bool:
    return all(
        abs(x[k] - y[k]) <= rtol * abs(x[k])
        for x, y, rtol in zip(a, b, rtols, strict=True)
        for k in ("l1", "vq", "total")
    )


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_matches_fp32(tiny_cfg, tmp_path, precision):
    overrides = [*COMMON, *DISC_OFF, "trainer.batch_size=2"]
    fp32 = run_steps(tiny_cfg(*overrides), tmp_path / "fp32", STEPS)
    amp = run_steps(tiny_cfg(*overrides, f"trainer.precision={precision}"), tmp_path / "amp", STEPS)
    assert losses_within(fp32["losses"], amp["losses"], PRECISION_RTOL), (fp32, amp)
    # a real mismatch (another data seed) is far outside that tolerance
    other = run_steps(tiny_cfg(*overrides, "seed=1"), tmp_path / "other", STEPS)
    assert not losses_within(fp32["losses"], other["losses"], PRECISION_RTOL)
