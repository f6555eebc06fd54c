"""The functional form of :class:`~sparselinear.SparseLinear` (it lives in
:mod:`sparselinear.nn.functional`)."""

from .nn.functional import sparse_linear

__all__ = ["sparse_linear"]
