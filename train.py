"""Train a tokenizer: ``python train.py [overrides]`` (Hydra; ``-m`` for sweeps)."""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig

from dcvq.config import register
from dcvq.errors import reported
from dcvq.prior.stage import prior_after_training
from dcvq.runtime.cpus import configure_threads
from dcvq.runtime.distributed import process_group
from dcvq.trainer import train

register()


def summary(results: dict, run_dir: Path) -> str:
    """What the run gave and where it went: the last lines a user reads."""
    usage = ", ".join(
        f"{name} {cb['usage']:.1f} % ({cb['distinct']} distinct of {cb['size']})"
        for name, cb in results.get("codebooks", {}).items()
    )
    grids = sorted((run_dir / "samples").glob("step_*.png"))
    lines = [
        f"held-out {results.get('split', 'evaluation')} split, {results['n_images']} images "
        f"at step {results['step']}: PSNR {results['psnr']:.2f} dB, L1 {results['l1']:.4f}",
        f"codebook usage: {usage}",
        f"run directory: {run_dir}",
        f"checkpoint: {run_dir / 'checkpoints' / 'last.pt'}",
    ]
    if grids:
        lines.append(f"reconstructions (top: inputs, bottom: outputs): {grids[-1]}")
    prior = results.get("prior")
    if prior:
        lines.append(
            f"token prior: {prior['bits_per_token']:.3f} bits per token (uniform "
            f"{prior['uniform_bits_per_token']:.2f}), samples: {run_dir / 'prior' / 'samples.png'}"
        )
    return "\n".join(lines)


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float:
    configure_threads()  # before any work: the CPUs this process may use, not the machine's
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    # a UserError (bad key, missing file) is printed alone; a failed start leaves no run dir
    with reported(run_dir, f"{hydra_cfg.job.name}.log"):
        logger = instantiate(cfg.logger)
        # under torchrun, one process group for training and the prior stage after it
        with process_group(cfg.trainer.device, cfg.trainer.dist_timeout_min, "trainer.device"):
            results = train(cfg, run_dir, logger=logger)
            if cfg.prior is not None:  # prior=tiny|gpt_b: every rank takes part
                section = prior_after_training(cfg, run_dir, logger)
                if results:
                    results["prior"] = section
    if results:  # only rank 0 has results
        print(summary(results, run_dir), flush=True)
    # the job's return value (the sweep's objective)
    return float(results.get("psnr", float("nan")))


if __name__ == "__main__":
    main()
