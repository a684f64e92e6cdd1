"""Quantizers behind one interface (:class:`Quantizer`); one file each."""

from dcvq.quantizers.base import Quantizer, QuantizerOutput
from dcvq.quantizers.dual import DualCodebookQuantizer
from dcvq.quantizers.vq import VectorQuantizer

__all__ = ["DualCodebookQuantizer", "Quantizer", "QuantizerOutput", "VectorQuantizer"]
