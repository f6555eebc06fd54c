"""The sparsity pattern: [`Connectivity`][sparselinear.Connectivity] (an immutable canonical CSR
pattern with optional node names) and the plain-array parts it wraps — sources (scipy matrices,
index arrays, masks, sparse tensors), generators (``tril``, ``random``, ...), set operations on edge
keys, canonical CSR checks and the caches of derived patterns (the transposed CSR)."""

from .caches import DerivedCache, PatternCaches, transpose_order
from .connectivity import Connectivity, index_dtype_for, pattern_digest

__all__ = [
    "Connectivity",
    "DerivedCache",
    "PatternCaches",
    "index_dtype_for",
    "pattern_digest",
    "transpose_order",
]
