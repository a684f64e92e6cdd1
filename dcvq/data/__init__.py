"""Datasets: one module per source, all following the contract in ``base``."""

from dcvq.data.base import ImageBatch, ImageFiles, collate
from dcvq.data.samples import SampleImages
from dcvq.data.sampler import StepSampler

__all__ = ["ImageBatch", "ImageFiles", "SampleImages", "StepSampler", "collate"]
