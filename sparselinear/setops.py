"""Set operations on patterns of the same shape: union, intersection, difference.

Edges are compared as int64 keys ``output * in_features + input``; the work is sorting and
searching arrays of length nnz. Node names are kept when the operands agree on them.
"""

from __future__ import annotations

import torch

from ._sources import describe
from .connectivity import Connectivity
from .errors import DataError, ShapeError, SparseLinearTypeError

__all__ = ["difference", "intersection", "union"]


def _keys(c: Connectivity) -> torch.Tensor:
    rows, cols = c.indices()
    return rows * c.in_features + cols  # sorted: canonical CSR order


def _names(a: Connectivity, b: Connectivity, axis: str) -> tuple[str, ...] | None:
    na, nb = getattr(a, axis), getattr(b, axis)
    if na is not None and nb is not None and na != nb:
        raise DataError(
            f"The patterns have different {axis}; set operations need the same nodes in the same "
            "order. Rebuild one of them with the other's names (e.g. `nodes=` in from_edgelist)."
        )
    return na if na is not None else nb


def _check(a: Connectivity, b: Connectivity, op: str) -> None:
    for name, c in (("self", a), ("other", b)):
        if not isinstance(c, Connectivity):
            raise SparseLinearTypeError(
                f"'{name}' of {op} must be a Connectivity; got {describe(c)}."
            )
    if a.shape != b.shape:
        raise ShapeError(
            f"{op} needs patterns of the same shape; got {a.shape} and {b.shape} (out, in)."
        )


def _member(keys: torch.Tensor, sorted_keys: torch.Tensor) -> torch.Tensor:
    """Boolean mask: which of ``keys`` occur in the sorted ``sorted_keys``."""
    if sorted_keys.numel() == 0:
        return torch.zeros_like(keys, dtype=torch.bool)
    pos = torch.searchsorted(sorted_keys, keys).clamp(max=sorted_keys.numel() - 1)
    return sorted_keys[pos] == keys


def _result(a: Connectivity, b: Connectivity, keys: torch.Tensor) -> Connectivity:
    n_in = a.in_features
    indices = torch.stack([keys // n_in, keys % n_in]) if n_in else keys.new_zeros(2, 0)
    out = Connectivity.from_indices(indices, a.shape)
    out_names, in_names = _names(a, b, "out_names"), _names(a, b, "in_names")
    if out_names is None and in_names is None:
        return out
    return out.with_names(out_names, in_names)


def union(a: Connectivity, b: Connectivity) -> Connectivity:
    """Edges in ``a`` or ``b``.

    Examples::

        >>> from sparselinear import Connectivity
        >>> (Connectivity.diagonal(3, 3) | Connectivity.diagonal(3, 3, 1)).nnz
        5
    """
    _check(a, b, "union")
    keys_a, keys_b = _keys(a), _keys(b.to(a.device))
    keys = torch.cat([keys_a, keys_b[~_member(keys_b, keys_a)]])
    return _result(a, b, torch.sort(keys).values)


def intersection(a: Connectivity, b: Connectivity) -> Connectivity:
    """Edges in both ``a`` and ``b``.

    Examples::

        >>> from sparselinear import Connectivity
        >>> (Connectivity.tril(3, 3) & Connectivity.triu(3, 3)) == Connectivity.diagonal(3, 3)
        True
    """
    _check(a, b, "intersection")
    keys_a = _keys(a)
    return _result(a, b, keys_a[_member(keys_a, _keys(b.to(a.device)))])


def difference(a: Connectivity, b: Connectivity) -> Connectivity:
    """Edges in ``a`` that are not in ``b``.

    Examples::

        >>> from sparselinear import Connectivity
        >>> (Connectivity.tril(3, 3) - Connectivity.diagonal(3, 3)) == Connectivity.tril(3, 3, -1)
        True
    """
    _check(a, b, "difference")
    keys_a = _keys(a)
    return _result(a, b, keys_a[~_member(keys_a, _keys(b.to(a.device)))])
