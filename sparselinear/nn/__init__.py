"""Modules whose connectivity is a sparse pattern: [`SparseLinear`][sparselinear.SparseLinear], its
functional form, the structured layers ([`TriangularLinear`][sparselinear.TriangularLinear],
[`PositiveDefiniteLinear`][sparselinear.PositiveDefiniteLinear]) and the conversions from dense
layers, prune masks and scipy matrices."""

from .connectome import ConnectomeRNN
from .functional import sparse_linear
from .linear import SparseLinear
from .structured import PositiveDefiniteLinear, TriangularLinear, triangular_pattern

__all__ = [
    "ConnectomeRNN",
    "PositiveDefiniteLinear",
    "SparseLinear",
    "TriangularLinear",
    "sparse_linear",
    "triangular_pattern",
]
