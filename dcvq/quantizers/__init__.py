"""Quantizers behind one interface (:class:`Quantizer`); one file each."""

from dcvq.quantizers.base import Quantizer, QuantizerOutput
from dcvq.quantizers.cvq import CVQQuantizer
from dcvq.quantizers.dual import DualCodebookQuantizer
from dcvq.quantizers.fsq import FSQQuantizer
from dcvq.quantizers.gumbel import GumbelQuantizer
from dcvq.quantizers.lfq import LFQQuantizer
from dcvq.quantizers.simvq import SimVQQuantizer
from dcvq.quantizers.vq import VectorQuantizer

__all__ = [
    "CVQQuantizer",
    "DualCodebookQuantizer",
    "FSQQuantizer",
    "GumbelQuantizer",
    "LFQQuantizer",
    "Quantizer",
    "QuantizerOutput",
    "SimVQQuantizer",
    "VectorQuantizer",
]
