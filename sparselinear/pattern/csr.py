"""Canonical CSR arrays: taking ones that are already canonical without re-sorting them, and
checking index tensors that may have changed since they were built.

CSR arrays from scipy, a checkpoint or a file are usually canonical already: columns in range and
strictly increasing within each row. Checking that in chunks costs a few MB of temporaries and
one pass, where building from coordinates costs several int64 copies of the whole pattern.
"""

from __future__ import annotations

import torch

from ..errors import PatternError, ShapeError, SparseLinearTypeError, describe

__all__ = ["canonical_csr", "check_canonical"]

#: Edges checked per chunk (bounds the temporaries to a few MB).
CHUNK_EDGES = 1 << 20


def _strictly_increasing_within_rows(crow: torch.Tensor, col: torch.Tensor) -> bool:
    """Whether ``col`` increases strictly inside every row of ``crow`` (int64)."""
    nnz = col.numel()
    starts = crow[1:-1]  # first edge of every row but the first: no comparison across them
    for a in range(0, max(0, nnz - 1), CHUNK_EDGES):
        b = min(a + CHUNK_EDGES, nnz - 1)  # pairs (k, k + 1) for k in [a, b)
        ok = col[a + 1 : b + 1] > col[a:b]
        lo, hi = torch.searchsorted(starts, torch.tensor([a + 1, b + 1])).tolist()
        ok[starts[lo:hi] - 1 - a] = True  # row boundaries inside the chunk
        if not bool(ok.all()):
            return False
    return True


def canonical_csr(
    crow: torch.Tensor, col: torch.Tensor, n_in: int, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(crow, col)`` as new tensors of ``dtype`` if the pattern is canonical, else ``None``.

    ``crow`` (int64) must already be checked (starts at 0, never decreases, ends at
    ``col.numel()``).
    Out-of-range columns, unsorted rows and duplicates give ``None``: the caller then takes the
    general path, which sorts and reports errors with their positions.
    """
    if col.numel() and (int(col.min()) < 0 or int(col.max()) >= n_in):
        return None
    if not _strictly_increasing_within_rows(crow, col):
        return None
    return crow.to(dtype, copy=True), col.to(dtype, copy=True)


def check_canonical(crow: torch.Tensor, col: torch.Tensor, shape: tuple[int, int]) -> None:
    """Raise unless ``(crow, col)`` is a canonical CSR pattern of ``shape`` that the kernels may
    read: one integer index dtype (int32 or int64), one device, ``crow`` of ``out + 1`` entries
    from 0 up to ``nnz`` without decreasing, every ``col`` in ``[0, in)`` and increasing within
    its row. O(nnz), in chunks."""
    n_out, n_in = shape
    for name, t in (("crow_indices", crow), ("col_indices", col)):
        if t.dtype not in (torch.int32, torch.int64):
            raise SparseLinearTypeError(
                f"'{name}' must hold int32 or int64 indices; got {describe(t)}. Rebuild the "
                "pattern with `Connectivity.from_csr(crow, col, shape)`."
            )
        if t.dim() != 1:
            raise ShapeError(f"'{name}' must be 1-D; got {describe(t)}.")
    if crow.dtype != col.dtype or crow.device != col.device:
        raise SparseLinearTypeError(
            f"'crow_indices' and 'col_indices' must share one index dtype and device; got "
            f"{crow.dtype} on {crow.device} and {col.dtype} on {col.device}. Load or build the "
            "pattern with one dtype, e.g. `Connectivity.from_csr(crow, col, shape)`."
        )
    nnz = col.numel()
    if crow.numel() != n_out + 1:
        raise ShapeError(
            f"'crow_indices' must have out_features + 1 = {n_out + 1} entries; got {crow.numel()}."
        )
    crow64 = crow.to(torch.int64)
    if int(crow64[0]) != 0 or int(crow64[-1]) != nnz or bool((crow64.diff() < 0).any()):
        raise PatternError(
            f"'crow_indices' must start at 0, never decrease and end at nnz = {nnz}; they were "
            "changed in place or loaded from a damaged checkpoint. Rebuild the pattern."
        )
    if nnz and (int(col.min()) < 0 or int(col.max()) >= n_in):
        raise PatternError(
            f"'col_indices' must lie in [0, {n_in}) (in_features); got values from "
            f"{int(col.min())} to {int(col.max())}. They were changed in place or loaded from a "
            "damaged checkpoint. Rebuild the pattern."
        )
    if not _strictly_increasing_within_rows(crow64, col):
        raise PatternError(
            "'col_indices' must increase strictly within each row (canonical CSR order); they "
            "were changed in place. Rebuild the pattern with `Connectivity.from_csr(...)`."
        )
