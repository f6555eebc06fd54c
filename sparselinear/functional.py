"""The functional form of [`SparseLinear`][sparselinear.SparseLinear] (it lives in
``sparselinear.nn.functional``)."""

from .nn.functional import sparse_linear

__all__ = ["sparse_linear"]
