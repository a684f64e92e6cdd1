"""DDP with the quantizers that have cross-rank state: two gloo ranks at batch b train
exactly as one process at batch 2b.

- LFQ: its entropy term's batch-average code distribution is a statistic of the whole
  batch, averaged over the ranks by an all-reduce that carries gradients.
- SimVQ: its frozen random codebook is a buffer (drawn at construction, never trained):
  it must be the same on every rank and stay as it was.

FSQ has neither (each position is quantized on its own, no buffer that is not a constant
of its levels): DDP's gradient averaging is all it needs, which the trainer's own DDP test
covers.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

N, D, STEPS, LR = 16, 8, 3, 0.1


def _build(name: str):
    from dcvq.quantizers import LFQQuantizer, SimVQQuantizer

    torch.manual_seed(0)  # as the trainer: every rank seeds alike
    return (LFQQuantizer if name == "lfq" else SimVQQuantizer)(N, D).train()


def _batch(rank: int, step: int) -> torch.Tensor:
    return torch.randn(2, D, 3, 3, generator=torch.Generator().manual_seed(10 * rank + step))


def _step(model, z: torch.Tensor) -> None:
    out = model(z)
    (out.loss + out.z_q.pow(2).mean()).backward()
    with torch.no_grad():
        for p in model.parameters():
            p.sub_(LR * p.grad)
            p.grad = None


def _worker(rank: int, world: int, out_dir: Path) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    dist.init_process_group(
        "gloo", init_method=f"file://{out_dir / 'store'}", rank=rank, world_size=world
    )
    results = {}
    for name in ("lfq", "simvq"):
        q = _build(name)
        ddp = DistributedDataParallel(q)  # averages the gradients over the ranks
        for step in range(STEPS):
            _step(ddp, _batch(rank, step))
        results[name] = {k: v.clone() for k, v in q.state_dict().items()}
    torch.save(results, out_dir / f"rank{rank}.pt")
    dist.destroy_process_group()


def test_two_ranks_train_as_one_process_with_their_batches_together(tmp_path: Path) -> None:
    from ranks import run_ranks  # here: the ranks run this file without tests/ on sys.path

    run_ranks(__file__, tmp_path, timeout=300)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    for name in ("lfq", "simvq"):
        single = _build(name)
        initial = {k: v.clone() for k, v in single.state_dict().items()}
        for step in range(STEPS):
            _step(single, torch.cat([_batch(r, step) for r in range(2)]))
        for k, v in single.state_dict().items():
            assert torch.equal(r0[name][k], r1[name][k]), f"{name}.{k} differs between ranks"
            torch.testing.assert_close(r0[name][k], v, msg=f"{name}.{k}")
        moved = [k for k, v in initial.items() if not torch.equal(v, r0[name][k])]
        assert moved, name
    assert torch.equal(r0["simvq"]["frozen_codebook"], _build("simvq").frozen_codebook)


if __name__ == "__main__":
    _worker(int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]))
