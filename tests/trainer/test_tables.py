"""quantizer.kmeans_init and quantizer.restart_unused_after through the training loop:
exact on resume, the same tables on every DDP rank (dcvq.quantizers.tables)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dcvq.quantizers.tables import kmeans, latent_rows
from dcvq.trainer import Trainer

RUN = ["trainer.eval_every=100", "trainer.ckpt_every=2", "loss.disc_start=100"]
KMEANS = ["quantizer.kmeans_init=true"]
RESTART = ["quantizer.restart_unused_after=1"]


def tables(trainer: Trainer) -> dict[str, torch.Tensor]:
    q = trainer.model.quantizer
    return {k: v.detach().clone() for k, v in q.init_tables().items()}


@pytest.mark.parametrize("quantizer", ["vq", "t128_s128"])
def test_kmeans_init_writes_the_centroids_of_the_first_latents(tiny_cfg, tmp_path, quantizer):
    cfg = tiny_cfg(*RUN, *KMEANS, "trainer.max_steps=1", quantizer=quantizer)
    plain = Trainer(tiny_cfg(*RUN, "trainer.max_steps=1", quantizer=quantizer), tmp_path / "a")
    trainer = Trainer(cfg, tmp_path / "b")
    x = trainer.grid_images(trainer.loaders()[1].dataset)[:2]
    trainer.kmeans_init([x])
    q = trainer.model.quantizer
    with torch.no_grad():
        z = trainer.model.latent(x)
    generator = trainer.table_generator()  # the one kmeans_init drew from, at step 0
    for name, part in zip(q.codebook_names, q.codebook_channels(), strict=True):
        rows = latent_rows(z, part)
        want = kmeans(rows, q.codebook_sizes[0], generator)
        assert torch.equal(tables(trainer)[name], want), name
        # the latents' distance to their nearest entry: what k-means makes small
        near = torch.cdist(rows, want).min(1).values
        assert near.mean() < torch.cdist(rows, tables(plain)[name]).min(1).values.mean()


def test_kmeans_init_and_restarts_resume_exactly(tiny_cfg, tmp_path):
    """4 steps straight == 2 steps, then a resumed run to 4: the k-means tables (written
    once, before the first step) and the restart counters come back from the checkpoint."""
    over = [*RUN, *KMEANS, *RESTART]
    straight = Trainer(tiny_cfg(*over, "trainer.max_steps=4", quantizer="vq"), tmp_path / "a")
    straight.fit()
    lines = [json.loads(x) for x in (tmp_path / "a/train.jsonl").read_text().splitlines()]
    assert any(x.get("restarted_codebook", 0) > 0 for x in lines)  # restarts did happen
    Trainer(tiny_cfg(*over, "trainer.max_steps=2", quantizer="vq"), tmp_path / "b").fit()
    resumed = Trainer(
        tiny_cfg(*over, "trainer.max_steps=4", "trainer.resume=true", quantizer="vq"),
        tmp_path / "b",
    )
    resumed.fit()
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert "quantizer.unused_steps" in a
    for k in a:
        assert torch.equal(a[k], b[k]), k


# ---- DDP: two gloo ranks, each with its own batch ---------------------------------------
def _rank_main(out_dir: Path) -> None:
    """One torchrun rank: k-means init and a restart step from rank-specific latents."""
    from dcvq.config import compose

    sys.path.insert(0, str(Path(__file__).parents[1]))
    from conftest import with_tiny

    rank = int(os.environ["RANK"])
    cfg = compose(["quantizer=s128_s128", *with_tiny([*RUN, *KMEANS, *RESTART])])
    trainer = Trainer(cfg, out_dir / "run")
    g = torch.Generator().manual_seed(rank)
    trainer.kmeans_init([torch.rand(2, 3, 32, 32, generator=g) * 2 - 1])
    after_init = tables(trainer)
    q = trainer.model.quantizer
    n = q.codebook_sizes[0]
    # each rank used other codes: only the codes no rank used are restarted
    counts = {name: torch.zeros(n, dtype=torch.long) for name in q.codebook_names}
    for c in counts.values():
        c[rank::2] = 1
        c[:4] = 0
    restarted = trainer.restart_unused(counts, torch.randn(2, q.dim, 8, 8, generator=g))
    torch.save({"init": after_init, "restart": tables(trainer), "n": restarted},
               out_dir / f"rank{rank}.pt")  # fmt: skip
    torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_every_rank_gets_the_same_tables(tmp_path):
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         __file__, str(tmp_path)],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    assert r0["n"] == r1["n"] == {"restarted_global": 4.0, "restarted_local": 4.0}
    for stage in ("init", "restart"):
        for name in r0[stage]:
            assert torch.equal(r0[stage][name], r1[stage][name]), (stage, name)


if __name__ == "__main__":
    _rank_main(Path(sys.argv[1]))
