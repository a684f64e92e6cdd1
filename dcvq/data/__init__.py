"""Datasets: one module per source, all following the contract in ``base``."""

from dcvq.data.ade20k import ADE20K
from dcvq.data.base import ImageBatch, ImageFiles, collate, dataset_info
from dcvq.data.celebahq import CelebAHQ
from dcvq.data.coco import COCO
from dcvq.data.cub200 import CUB200
from dcvq.data.fashion_mnist import FashionMNIST
from dcvq.data.imagefolder import ImageFolder
from dcvq.data.index import LayoutError, cached_files
from dcvq.data.photos import Photos
from dcvq.data.sampler import StepSampler
from dcvq.data.samples import SampleImages

__all__ = [
    "ADE20K",
    "COCO",
    "CUB200",
    "CelebAHQ",
    "FashionMNIST",
    "ImageBatch",
    "ImageFiles",
    "ImageFolder",
    "LayoutError",
    "Photos",
    "SampleImages",
    "StepSampler",
    "cached_files",
    "collate",
    "dataset_info",
]
