"""Structured-config schemas: every config group is validated against one of these.

Schemas live in the ``schema/<group>/`` config group, never in the sweepable groups
themselves: ``quantizer=glob(*)`` would otherwise sweep a schema as an extra job.
Group options pull their schema with ``- /schema/<group>/<name>@_here_``.

The quantizer schemas restate their constructors' arguments and defaults: composing a
config must not import torch, so they cannot be derived from the signatures here, and
``tests/config/test_schema.py`` checks every one against its constructor instead. A
quantizer of your own needs no schema: its YAML lists ``_target_`` and the arguments it
sets, and ``dcvq.config.validate`` checks them against the constructor's signature.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import II, MISSING


@dataclass
class ModelSchema:
    _target_: str = "dcvq.model.VQModel"
    embed_dim: int = 256
    ch: int = 128
    ch_mult: list[int] = field(default_factory=lambda: [1, 1, 2, 2, 4])
    num_res_blocks: int = 2
    attn_resolutions: list[int] = field(default_factory=lambda: [16])
    resolution: int = 256
    z_channels: int = 256
    in_channels: int = 3
    out_ch: int = 3
    dropout: float = 0.0


@dataclass
class VQSchema:
    _target_: str = "dcvq.quantizers.VectorQuantizer"
    codebook_size: int = II("codebook.size")
    dim: int = II("model.embed_dim")
    beta: float = 0.25
    # False: |sg[z]-q|^2 + beta|z-sg[q]|^2 (the Dual Codebook release); True: taming's legacy
    legacy_beta: bool = False
    # the encoder's gradient through the rotation trick (Fifty et al. 2024), not straight through
    rotation_trick: bool = False
    # codes from k-means of the first batches' latents (dcvq/quantizers/tables.py)
    kmeans_init: bool = False
    # a code unused for this many steps is restarted at a latent of the batch (0: never)
    restart_unused_after: int = 0


@dataclass
class DualSchema:
    _target_: str = "dcvq.quantizers.DualCodebookQuantizer"
    codebook_size: int = II("codebook.size")
    global_dim: int = 128
    local_dim: int = 128
    global_transformer: bool = True
    transformer_layers: int = 6
    transformer_heads: int = 8
    transformer_ff: int = 2048
    transformer_dropout: float = 0.1
    beta: float = 0.25
    legacy_beta: bool = False
    # k-means of the first batches' latents into the local table and the global one (T:
    # the transformer's base table); dcvq/quantizers/tables.py
    kmeans_init: bool = False
    # plain tables only (local; global where S): restart a code unused this many steps
    restart_unused_after: int = 0


@dataclass
class GumbelSchema:
    _target_: str = "dcvq.quantizers.GumbelQuantizer"
    codebook_size: int = II("codebook.size")
    dim: int = II("model.embed_dim")
    kl_weight: float = 5e-4
    straight_through: bool = True
    temperature_schedule: str = "cosine"  # cosine | exponential | constant
    temp_start: float = 0.9
    temp_min: float = 1e-6
    anneal_steps: int = 1_000_001


@dataclass
class CVQSchema:
    _target_: str = "dcvq.quantizers.CVQQuantizer"
    codebook_size: int = II("codebook.size")
    dim: int = II("model.embed_dim")
    beta: float = 0.25
    decay: float = 0.99
    distance: str = "cos"  # cos | l2
    anchor: str = "closest"  # closest | random | probrandom | none
    first_batch: bool = False
    contras_loss: bool = False
    contras_temperature: float = 0.07
    legacy_beta: bool = False


@dataclass
class FSQSchema:
    _target_: str = "dcvq.quantizers.FSQQuantizer"
    codebook_size: int = II("codebook.size")
    dim: int = II("model.embed_dim")
    # levels per channel; null: the FSQ paper's for codebook.size (dcvq/quantizers/fsq.py)
    levels: list[int] | None = None


@dataclass
class LFQSchema:
    _target_: str = "dcvq.quantizers.LFQQuantizer"
    codebook_size: int = II("codebook.size")  # a power of two: log2 of it sign channels
    dim: int = II("model.embed_dim")
    entropy_weight: float = 0.1
    diversity_gamma: float = 1.0
    commitment_weight: float = 0.25


@dataclass
class SimVQSchema:
    _target_: str = "dcvq.quantizers.SimVQQuantizer"
    codebook_size: int = II("codebook.size")
    dim: int = II("model.embed_dim")
    beta: float = 0.25
    legacy_beta: bool = False


@dataclass
class LossSchema:
    _target_: str = "dcvq.losses.VQGANLoss"
    disc_start: int = 10000
    disc_weight: float = 0.8
    disc_factor: float = 1.0
    codebook_weight: float = 1.0
    pixelloss_weight: float = 1.0
    perceptual_weight: float = 1.25
    disc_num_layers: int = 3
    disc_ndf: int = 64
    disc_in_channels: int = 3
    disc_loss: str = "hinge"
    # torchvision VGG16 file for LPIPS; None = the torch hub cache
    lpips_weights: str | None = None


@dataclass
class SamplesSchema:
    _target_: str = "dcvq.data.SampleImages"
    train_split: str = "train"
    split: str = "val"
    test_split: str | None = None  # no test split: its held-out photos are the val split
    resolution: int = 256
    samples_per_epoch: int = 1000
    flip: bool = True


@dataclass
class PhotosSchema:
    _target_: str = "dcvq.data.photos.Photos"
    # the prepared data folder (`make data`); None: $DCVQ_DATA, else ~/.cache/dcvq/data
    root: str | None = None
    train_split: str = "train"
    split: str = "val"  # chooses settings
    test_split: str | None = "test"  # judges them
    resolution: int = 256  # 32 to 256: crops and tiles of the 256x256 photos
    samples_per_epoch: int = 1000
    flip: bool = True


@dataclass
class FashionMNISTSchema:
    _target_: str = "dcvq.data.fashion_mnist.FashionMNIST"
    root: str | None = None  # as PhotosSchema.root
    train_split: str = "train"
    split: str = "val"
    test_split: str | None = "test"
    resolution: int = 32  # >= 28: the 28x28 images are padded with black
    flip: bool = False


@dataclass
class FilesDatasetSchema:
    """Common keys of the file-backed datasets (dcvq/data/<name>.py)."""

    _target_: str = MISSING
    # None: read the dataset's environment variable (e.g. DCVQ_COCO_ROOT)
    root: str | None = None
    train_split: str = "train"
    split: str = "val"  # the split evaluated during and after training (settings chosen on it)
    # also scored by the final evaluation (verdicts are judged on it); None: no test split
    test_split: str | None = None
    resolution: int = 256
    # the evaluated split: None = center_crop; or squash (random crops become center_crop)
    policy: str | None = None
    # training: None = random_crop (taming's); center_crop or squash train on fixed crops
    train_policy: str | None = None
    flip: bool | None = None
    interpolation: str = "bilinear"
    cache_dir: str | None = None


@dataclass
class ADE20KSchema(FilesDatasetSchema):
    _target_: str = "dcvq.data.ade20k.ADE20K"
    layout: str | None = None  # challenge | full | None (detect)


@dataclass
class CelebAHQSchema(FilesDatasetSchema):
    _target_: str = "dcvq.data.celebahq.CelebAHQ"
    layout: str | None = None  # vqct | celebamask | folders | None (detect)
    split_file: str | None = None


@dataclass
class COCOSchema(FilesDatasetSchema):
    _target_: str = "dcvq.data.coco.COCO"
    year: int | None = None  # 2014 | 2017 | None (2014 when present, as VQCT)


@dataclass
class CUB200Schema(FilesDatasetSchema):
    _target_: str = "dcvq.data.cub200.CUB200"
    split: str = "test"


@dataclass
class ImageFolderSchema(FilesDatasetSchema):
    _target_: str = "dcvq.data.imagefolder.ImageFolder"
    holdout: float = 0.0  # fraction held out by path hash when there are no split folders


def precision_on(precision: str, device_type: str) -> str:
    """What a ``precision`` setting runs as on a device type (``cuda``, ``cpu``, ...):
    ``auto`` is bf16 on CUDA and fp32 elsewhere; any other setting is itself."""
    if precision != "auto":
        return precision
    return "bf16" if device_type == "cuda" else "fp32"


@dataclass
class TrainerSchema:
    max_steps: int = 100_000
    batch_size: int = 16  # per process (per GPU)
    accumulate: int = 1
    # lr = base_lr * batch_size * accumulate * world_size (taming's rule) unless lr is set
    base_lr: float = 4.5e-6
    lr: float | None = None
    # constant (taming) | cosine: from lr to 0 at max_steps, after warmup_steps of linear
    # warm-up (a fixed budget ends converged for that budget: ablations at small scale)
    lr_schedule: str = "constant"
    warmup_steps: int = 0
    betas: list[float] = field(default_factory=lambda: [0.5, 0.9])
    # the quantizer's codebook parameters (Quantizer.codebook_parameters) train at lr
    # times this, in their own optimiser group
    codebook_lr_mult: float = 1.0
    # a codebook collapsed at an evaluation (distinct < used / 2): warn | stop | rollback
    # (to the last healthy evaluation's checkpoint, the codebook's rate times
    # collapse_lr_factor; at most max_rollbacks times, then stop): dcvq/trainer/collapse.py
    on_collapse: str = "warn"
    collapse_lr_factor: float = 0.3
    max_rollbacks: int = 3
    eval_every: int = 5000
    ckpt_every: int = 5000
    log_every: int = 50
    device: str = "auto"  # auto | cpu | cuda | cuda:N (one process only)
    # how long a rank waits in a collective: the others wait while rank 0 evaluates
    dist_timeout_min: float = 120
    # auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16 | fp16. fp32 means no autocast;
    # cuDNN's TF32 convolutions stay at PyTorch's default (on)
    precision: str = "auto"
    # torch.compile, in place (checkpoint keys unchanged): none | codebook (the global
    # codebook's transformer, a fixed ~100 small kernels a step) | model (the autoencoder)
    compile: str = "none"
    # model, discriminator and batches in channels_last (on an H200, bf16: 29% slower)
    channels_last: bool = False
    resume: bool = True
    # data-loader workers per process: an int >= 0, or auto (CPUs of this process - 1,
    # at most 8; torchrun's ranks share their machine's CPUs)
    num_workers: Any = "auto"
    eval_batch_size: int = 16
    grid_images: int = 8
    progress: bool = True


@dataclass
class EvalSchema:
    protocol: str = "clean"  # clean | vqct
    fid: bool = False
    fid_weights: str | None = None
    lpips: bool = False
    lpips_weights: str | None = None  # torchvision VGG16 file; None = the torch hub cache
    max_images: int | None = None
    # cap for the periodic evaluations during training (None: max_images); the final
    # evaluation (eval.json) always uses max_images
    max_images_during_training: int | None = None
    save_reconstructions: bool = False
    # a metric whose pretrained weights are not on this machine (FID: Inception, LPIPS:
    # VGG16): error (stop, say how to get them) or skip (one warning, null in the results
    # with the reason under not_measured). experiment=demo sets skip.
    missing_weights: str = "error"


@dataclass
class CodebookSchema:
    size: int = 512  # size of EACH codebook (global and local for dual quantizers)


@dataclass
class TrainSchema:
    model: Any = MISSING
    quantizer: Any = MISSING
    loss: Any = MISSING
    dataset: Any = MISSING
    trainer: Any = MISSING
    logger: Any = MISSING
    codebook: CodebookSchema = field(default_factory=CodebookSchema)
    eval: EvalSchema = field(default_factory=EvalSchema)
    seed: int = 0
    prior: Any = None  # prior=none; else the token prior stage after training


@dataclass
class EvaluateSchema:
    """``python -m dcvq.evaluate``: a checkpoint on a dataset split."""

    checkpoint: str = MISSING
    dataset: Any = MISSING
    eval: EvalSchema = field(
        default_factory=lambda: EvalSchema(fid=True, lpips=True, save_reconstructions=False)
    )
    device: str = "auto"
    batch_size: int = 16
    num_workers: Any = "auto"  # int >= 0 or auto, as trainer.num_workers
    grid_images: int = 8
    progress: bool = True


@dataclass
class PriorModelSchema:
    """``prior.model``: the token prior's transformer (dcvq/prior/model.py). Its codebook
    sizes and token grid come from the tokenizer."""

    _target_: str = "dcvq.prior.model.TokenPrior"
    layers: int = 2
    width: int = 64
    heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    # fixed sizes for a prior meant for one tokenizer shape; null: the tokenizer's
    seq_len: int | None = None  # h * w * K tokens per image
    vocab_sizes: list[int] | None = None  # one per codebook


@dataclass
class PriorSchema:
    """The ``prior`` group's options (conf/prior/, except ``none``): dcvq/prior/."""

    model: PriorModelSchema = field(default_factory=PriorModelSchema)
    max_steps: int = 1000
    batch_size: int = 32  # token grids per process (per GPU)
    lr: float = 3e-4  # absolute, whatever the number of processes
    weight_decay: float = 0.05
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    warmup_steps: int = 0
    grad_clip: float | None = 1.0
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16
    ckpt_every: int = 1000
    log_every: int = 50
    resume: bool = True
    seed: int = 0
    dist_timeout_min: float = 120
    # images per batch when encoding, measuring held-out bits and sampling
    eval_batch_size: int = 64
    max_train_images: int | None = None  # null: the whole training split
    max_eval_images: int | None = None  # null: the whole held-out split
    # held-out images generation FID compares with, and samples drawn for it (as many);
    # null: max_eval_images
    fid_images: int | None = None
    grid_images: int = 16  # samples.png
    temperature: float = 1.0
    top_k: int | None = None  # null: sample from every code


@dataclass
class PriorRunSchema:
    """``python -m dcvq.prior``: a token prior on a tokenizer checkpoint."""

    checkpoint: str = MISSING
    dataset: Any = MISSING
    prior: Any = MISSING
    eval: EvalSchema = field(default_factory=lambda: EvalSchema(fid=True))
    device: str = "auto"
    num_workers: Any = "auto"  # int >= 0 or auto, as trainer.num_workers
    progress: bool = True


#: the dataset options of conf/dataset/ and their schemas
DATASETS = {
    "samples": SamplesSchema,
    "photos": PhotosSchema,
    "fashion_mnist": FashionMNISTSchema,
    "ade20k": ADE20KSchema,
    "celebahq": CelebAHQSchema,
    "coco": COCOSchema,
    "cub200": CUB200Schema,
    "imagefolder": ImageFolderSchema,
}


def dataset_option(target: str) -> str | None:
    """The conf/dataset option whose schema builds ``target`` (a ``_target_``), if any."""
    return next((name for name, schema in DATASETS.items() if schema._target_ == target), None)
