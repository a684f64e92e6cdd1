"""Benchmarks of dcvq against taming-transformers and vector-quantize-pytorch.

Run with ``python -m benchmarks.run`` (``make bench``). The anchors are bench-only
dependencies: nothing in ``dcvq/`` imports them.
"""
