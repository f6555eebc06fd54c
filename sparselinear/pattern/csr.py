"""Taking CSR arrays that are already canonical without re-sorting them.

CSR arrays from scipy, a checkpoint or a file are usually canonical already: columns in range and
strictly increasing within each row. Checking that in chunks costs a few MB of temporaries and
one pass, where building from coordinates costs several int64 copies of the whole pattern.
"""

from __future__ import annotations

import torch

__all__ = ["canonical_csr"]

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
