"""Set operations on edge keys: union, intersection, difference.

Edges are compared as sorted int64 keys ``output * in_features + input`` (the canonical CSR
order); the work is sorting and searching arrays of length nnz.
[`Connectivity`][sparselinear.Connectivity] checks its operands, turns them into keys and wraps the
result (``a | b``, ``a & b``, ``a - b``).
"""

from __future__ import annotations

import torch

from ..errors import DataError
from ..io.names import same_names

__all__ = ["difference", "intersection", "merge_names", "union"]


def _member(keys: torch.Tensor, sorted_keys: torch.Tensor) -> torch.Tensor:
    """Boolean mask: which of ``keys`` occur in the sorted ``sorted_keys``."""
    if sorted_keys.numel() == 0:
        return torch.zeros_like(keys, dtype=torch.bool)
    pos = torch.searchsorted(sorted_keys, keys).clamp(max=sorted_keys.numel() - 1)
    return sorted_keys[pos] == keys


def union(keys_a: torch.Tensor, keys_b: torch.Tensor) -> torch.Tensor:
    """Sorted keys in ``keys_a`` or ``keys_b`` (both sorted, without repeats)."""
    keys = torch.cat([keys_a, keys_b[~_member(keys_b, keys_a)]])
    return torch.sort(keys).values


def intersection(keys_a: torch.Tensor, keys_b: torch.Tensor) -> torch.Tensor:
    """Sorted keys in both ``keys_a`` and ``keys_b``."""
    return keys_a[_member(keys_a, keys_b)]


def difference(keys_a: torch.Tensor, keys_b: torch.Tensor) -> torch.Tensor:
    """Sorted keys in ``keys_a`` that are not in ``keys_b``."""
    return keys_a[~_member(keys_a, keys_b)]


def merge_names(a: tuple | None, b: tuple | None, axis: str) -> tuple | None:
    """The node names of a set operation's result: the operands' names where they agree (or
    only one has names); a [`DataError`][sparselinear.errors.DataError] where they differ."""
    if a is not None and b is not None and not same_names(a, b):
        raise DataError(
            f"The patterns have different {axis}; set operations need the same nodes in the same "
            "order. Rebuild one of them with the other's names (e.g. `nodes=` in from_edgelist)."
        )
    return a if a is not None else b
