"""Quantizers behind one interface (:class:`Quantizer`); one file each."""

from dcvq.quantizers.base import Quantizer, QuantizerOutput
from dcvq.quantizers.cvq import CVQQuantizer
from dcvq.quantizers.dual import DualCodebookQuantizer
from dcvq.quantizers.gumbel import GumbelQuantizer
from dcvq.quantizers.vq import VectorQuantizer

__all__ = [
    "CVQQuantizer",
    "DualCodebookQuantizer",
    "GumbelQuantizer",
    "Quantizer",
    "QuantizerOutput",
    "VectorQuantizer",
]
