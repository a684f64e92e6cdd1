"""Datasets: one module per source, all following the contract in ``base``."""

from dcvq.data.ade20k import ADE20K
from dcvq.data.base import ImageBatch, ImageFiles, collate, dataset_info
from dcvq.data.celebahq import CelebAHQ
from dcvq.data.coco import COCO
from dcvq.data.cub200 import CUB200
from dcvq.data.imagefolder import ImageFolder
from dcvq.data.index import LayoutError, cached_files
from dcvq.data.sampler import StepSampler
from dcvq.data.samples import SampleImages

__all__ = [
    "ADE20K",
    "COCO",
    "CUB200",
    "CelebAHQ",
    "ImageBatch",
    "ImageFiles",
    "ImageFolder",
    "LayoutError",
    "SampleImages",
    "StepSampler",
    "cached_files",
    "collate",
    "dataset_info",
]
