"""What the README promises is the same training, checked to float noise:

- ``trainer.accumulate=2`` at batch b == batch 2b (discriminator off);
- 2 DDP ranks at batch b == 1 process at b with ``accumulate=2`` when the discriminator
  is on (test_distributed.py: == 1 process at 2b when it is off): its BatchNorm statistics and the
  adaptive weight are per rank, exactly as they are per micro-batch;
- bf16 / fp16 autocast == fp32 within the tolerance their rounding allows.

The transformer codebook's dropout draws a new mask per forward, so these comparisons run
it with ``quantizer.transformer_dropout=0`` (with dropout, micro-batches and ranks are the
same training in distribution, not in value).

Every comparison is one step at a time from the same state: the run under test takes
the reference run's weights and optimiser states before each step, and the two steps'
gradients and losses are compared. Adam's update divides each gradient by its own
magnitude, so elements whose gradient is near zero (a conv bias before a one-channel
GroupNorm group, which the norm removes, is pure rounding noise) step by about +-lr
whichever way rounding tipped them: across steps training amplifies any rounding
difference, which is what failed on AVX2 machines. From the same state nothing is
amplified, and the bounds come from ``numerics`` (tests/numerics.py), derived from the
computation: another summation order (batch 2b vs two sums of b, gloo's all-reduce,
other SIMD widths) moves gradients and losses by fp32 rounding of their sums, autocast
by the rounding of every layer's inputs. Each comparison also runs against a real
mismatch and must fail there.
"""

from __future__ import annotations

import copy
import inspect
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numerics
import pytest
import torch

from dcvq.config import CONF_DIR

STEPS = 3
COMMON = [
    "quantizer.transformer_dropout=0",
    "trainer.max_steps=3",
    "trainer.eval_every=100",
    "trainer.ckpt_every=100",
    "trainer.lr=1e-3",
]
DISC_ON = ["loss.disc_start=0"]
DISC_OFF = ["loss.disc_start=1000"]


def run_steps(cfg, run_dir, steps: int, states: list | None = None) -> dict:
    """Train ``steps`` steps through ``Trainer.train_step`` (the code DDP runs), keeping
    per step the state before it, its losses and its gradients (autoencoder and
    discriminator, as the optimisers read them: averaged over ranks, unscaled). With
    ``states`` (another run's), each step starts from that run's state instead."""
    import torch

    from dcvq.trainer import Trainer  # imported here: torchrun's script embeds this function

    trainer = Trainer(cfg, run_dir)
    parts = {
        "model": trainer.model,
        "disc": trainer.loss.discriminator,
        "opt_ae": trainer.opt_ae,
        "opt_d": trainer.opt_d,
    }
    grads: dict = {}
    for name, module in (("ae", trainer.model), ("d", trainer.loss.discriminator)):
        opt = trainer.opt_ae if name == "ae" else trainer.opt_d
        clear = opt.zero_grad

        def keep_then_clear(set_to_none=True, name=name, module=module, clear=clear):
            grads[name] = [
                torch.zeros_like(p) if p.grad is None else p.grad.detach().clone()
                for p in module.parameters()
            ]
            clear(set_to_none=set_to_none)

        opt.zero_grad = keep_then_clear
    indices: list = []
    trainer.model.quantizer.register_forward_hook(
        lambda module, args, output: indices.append(output.indices.clone())
    )
    batches = iter(trainer.loaders()[0])
    out: dict = {"states": [], "losses": [], "grads": [], "indices": []}
    for step in range(steps):
        if states is not None:
            for name, part in parts.items():
                part.load_state_dict(states[step][name])
        out["states"].append(
            {name: copy.deepcopy(part.state_dict()) for name, part in parts.items()}
        )
        micro = [trainer.next_images(batches) for _ in range(trainer.t.accumulate)]
        out["losses"].append(trainer.train_step(micro))
        out["grads"].append(dict(grads))
        out["indices"].append(torch.cat(indices))
        indices.clear()
    out["model"] = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    out["disc"] = {k: v.clone() for k, v in trainer.loss.discriminator.named_parameters()}
    return out


def kappas(cfg) -> tuple[float, float]:
    """fp32 bounds (``numerics``) for one training step of ``cfg``: on its gradients (a
    weight's gradient sums the batch's positions and crosses the model's fan-ins forward
    and backward; the largest of all parameters) and on its losses (means, each bounded
    by its largest pixel's error through the forward and backward passes)."""
    from dcvq.build import build_model

    model = build_model(cfg)
    t, res = cfg.trainer, cfg.dataset.resolution
    pixels = t.batch_size * t.accumulate * res * res
    terms = numerics.summed_terms(model)
    n_params = sum(p.numel() for p in model.parameters())
    grad = numerics.fp32_kappa(pixels + 2 * terms, n_params)
    loss = numerics.fp32_kappa(2 * terms, 3 * pixels)
    return grad, loss


def step_errors(run: dict, ref: dict, grad_kappa: float, loss_kappa: float, keys) -> list:
    """Per step: the worst gradient error (of both optimisers' gradients that ran) and
    the losses' error, each over its bound: <= 1 when the steps agree to rounding."""
    errors = []
    for grads, ref_grads, losses, ref_losses in zip(
        run["grads"], ref["grads"], run["losses"], ref["losses"], strict=True
    ):
        grad = max(
            numerics.gradient_error(grads[k], ref_grads[k], grad_kappa)
            for k in grads
            if any(g.abs().max() > 0 for g in ref_grads[k])
        )
        loss = numerics.relative_error([losses[k] for k in keys], [ref_losses[k] for k in keys])
        errors.append((grad, loss / loss_kappa))
    return errors


def assert_same_steps(run: dict, ref: dict, cfg, disc: bool) -> None:
    keys = ("l1", "vq", "total") + (("d", "g") if disc else ())
    errors = step_errors(run, ref, *kappas(cfg), keys)
    assert all(grad <= 1 and loss <= 1 for grad, loss in errors), errors


def test_accumulation_matches_the_double_batch(tiny_cfg, tmp_path):
    cfg = tiny_cfg(*COMMON, *DISC_OFF, "trainer.batch_size=4")
    double = run_steps(cfg, tmp_path / "b", STEPS)
    acc_cfg = tiny_cfg(*COMMON, *DISC_OFF, "trainer.batch_size=2", "trainer.accumulate=2")
    acc = run_steps(acc_cfg, tmp_path / "acc", STEPS, states=double["states"])
    assert_same_steps(acc, double, cfg, disc=False)
    # a real mismatch fails the same comparison: micro-batches summed, not averaged
    summed = {"grads": [{"ae": [2 * g for g in s["ae"]]} for s in acc["grads"]]}
    errors = step_errors(acc | summed, double, *kappas(cfg), ("l1",))
    assert all(grad > 1 for grad, _ in errors)


SCRIPT = """
import copy, os, sys, torch
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
    cfg = tiny_cfg(*COMMON, *DISC_ON, "trainer.batch_size=2", "trainer.accumulate=2")
    # One thread, as the ranks: each micro-batch then runs the ranks' own kernels and only
    # the sums over micro-batches and ranks differ. With other kernels a kink (the
    # discriminator's LeakyReLU, the hinge) whose input rounds to its other side moves a
    # gradient by far more than rounding (seen: 4 % in the discriminator's first layers).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = run_steps(cfg, tmp_path / "single", STEPS, states=ranks[0]["states"])
    finally:
        torch.set_num_threads(threads)
    assert single["losses"][0]["d"] > 0 and "d_weight" in single["losses"][0]
    # each rank's losses are its own micro-batch's; accumulation logs their average
    mean = [
        {k: (a[k] + b[k]) / 2 for k in a}
        for a, b in zip(ranks[0]["losses"], ranks[1]["losses"], strict=True)
    ]
    assert_same_steps(ranks[0] | {"losses": mean}, single, cfg, disc=True)
    # a real mismatch fails: a rank's own losses; the discriminator's gradients summed
    grad_kappa, loss_kappa = kappas(cfg)
    own = step_errors(ranks[0], single, grad_kappa, loss_kappa, ("l1", "total"))
    assert all(loss > 1 for _, loss in own)
    summed = {"grads": [{"d": [2 * g for g in s["d"]]} for s in ranks[0]["grads"]]}
    assert all(
        grad > 1 for grad, _ in step_errors(ranks[0] | summed, single, grad_kappa, 1, ("l1",))
    )


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


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_matches_fp32(tiny_cfg, tmp_path, precision):
    """bf16 / fp16 autocast: each step's losses and gradients within what rounding every
    layer's inputs to 8 / 11 significant bits allows (fp32 accumulation): ``amp_kappa``
    over the layers crossed, forward for the losses, forward and backward for the
    gradients. The discriminator is off: its logits at initialisation are means that
    cancel. fp16's GradScaler may skip a step whose scaled gradients overflow: such a
    step is not compared, and at least one must be."""
    overrides = [*COMMON, *DISC_OFF, "trainer.batch_size=2"]
    cfg = tiny_cfg(*overrides)
    ref = run_steps(cfg, tmp_path / "fp32", STEPS)
    amp_cfg = tiny_cfg(*overrides, f"trainer.precision={precision}")
    amp = run_steps(amp_cfg, tmp_path / "amp", STEPS, states=ref["states"])
    from dcvq.build import build_model

    model = build_model(cfg)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    depth = len(numerics.layers(model))
    grad_kappa = numerics.amp_kappa(dtype, 2 * depth, sum(p.numel() for p in model.parameters()))
    pixels = 3 * cfg.trainer.batch_size * cfg.dataset.resolution**2
    loss_kappa = numerics.amp_kappa(dtype, depth, pixels)
    finite = [all(g.isfinite().all() for g in s["ae"]) for s in amp["grads"]]
    assert any(finite)

    def errors(run: dict) -> list:
        steps = [i for i, ok in enumerate(finite) if ok]
        picked = {k: [run[k][i] for i in steps] for k in ("grads", "losses")}
        ref_picked = {k: [ref[k][i] for i in steps] for k in ("grads", "losses")}
        return step_errors(picked, ref_picked, grad_kappa, loss_kappa, ("l1", "vq", "total"))

    assert all(grad <= 1 and loss <= 1 for grad, loss in errors(amp)), errors(amp)
    # a real mismatch (the same steps on another data seed's batches) is far outside
    other_cfg = tiny_cfg(*overrides, f"trainer.precision={precision}", "seed=1")
    other = run_steps(other_cfg, tmp_path / "other", STEPS, states=ref["states"])
    assert all(grad > 1 for grad, _ in errors(other)), errors(other)
