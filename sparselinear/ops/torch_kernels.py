"""The two sparse kernels of a sparse linear layer, in pure PyTorch.

* ``spmm`` — sparse x dense: ``out[r, :] = sum_k values[k] * dense[col[k], :]`` over row r.
* ``sddmm`` — sampled dense-dense: ``out[k] = left[row[k], :] · right[col[k], :]``.

Both take CSR index tensors and "row-major by edge endpoint" dense operands of shape
``(n, batch)``, so each edge reads one contiguous batch vector. They run on torch's CSR kernels
(MKL on CPU, cuSPARSE on CUDA), in row chunks so that no temporary grows with ``batch x nnz``.
Where torch has no kernel for the dtype (float16/bfloat16 on CPU) they compute in float32.

On CPU the compiled kernels of ``_ext`` replace these when they are
available; [`policy`][sparselinear.kernels] decides, and holds
[`CHUNK_BYTES`][sparselinear.kernels.CHUNK_BYTES].
"""

from __future__ import annotations

import warnings

import torch

from . import policy

__all__ = ["sddmm", "spmm"]


def _csr(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, shape) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "CSR support is in beta"
        return torch.sparse_csr_tensor(crow, col, values, shape, check_invariants=False)


def _row_chunks(crow: torch.Tensor, batch: int, itemsize: int, chunk_bytes: int):
    """Yield ``(row_start, row_stop, nnz_start, nnz_stop)`` covering all rows, each chunk holding
    about ``chunk_bytes / (batch * itemsize)`` edges (a single row is never split)."""
    n_rows = crow.numel() - 1
    nnz = int(crow[-1]) if n_rows > 0 else 0
    per_chunk = max(1, chunk_bytes // max(1, batch * itemsize))
    if nnz <= per_chunk:
        yield 0, n_rows, 0, nnz
        return
    bounds = torch.arange(per_chunk, nnz, per_chunk, device=crow.device, dtype=crow.dtype)
    cuts = torch.searchsorted(crow, bounds).tolist()
    rows = sorted({0, n_rows, *(c for c in cuts if 0 < c < n_rows)})
    pointers = crow[rows].tolist()
    for i in range(len(rows) - 1):
        yield rows[i], rows[i + 1], pointers[i], pointers[i + 1]


def _sub_crow(crow: torch.Tensor, r0: int, r1: int, k0: int) -> torch.Tensor:
    return crow[r0 : r1 + 1] - k0 if r0 else crow[: r1 + 1]


def spmm(
    crow: torch.Tensor,
    col: torch.Tensor,
    values: torch.Tensor,
    dense: torch.Tensor,
    *,
    chunk_bytes: int | None = None,
) -> torch.Tensor:
    """``(n_rows, batch)`` product of the CSR matrix with ``dense`` of shape ``(n_cols, batch)``;
    ``chunk_bytes`` defaults to [`policy.CHUNK_BYTES`][sparselinear.kernels.CHUNK_BYTES], read at
    call time."""
    chunk_bytes = policy.CHUNK_BYTES if chunk_bytes is None else chunk_bytes
    n_rows, (n_cols, batch) = crow.numel() - 1, dense.shape
    chunks = list(_row_chunks(crow, batch, dense.element_size(), chunk_bytes))
    if len(chunks) == 1:
        return torch.sparse.mm(_csr(crow, col, values, (n_rows, n_cols)), dense)
    out = torch.empty(n_rows, batch, dtype=dense.dtype, device=dense.device)
    for r0, r1, k0, k1 in chunks:
        matrix = _csr(_sub_crow(crow, r0, r1, k0), col[k0:k1], values[k0:k1], (r1 - r0, n_cols))
        out[r0:r1] = torch.sparse.mm(matrix, dense)
    return out


def sddmm(
    crow: torch.Tensor,
    col: torch.Tensor,
    left: torch.Tensor,
    right: torch.Tensor,
    *,
    chunk_bytes: int | None = None,
) -> torch.Tensor:
    """Per-edge dot products ``left[row[k]] · right[col[k]]`` for ``left (n_rows, batch)``,
    ``right (n_cols, batch)``; returns ``(nnz,)``. ``chunk_bytes`` as for ``spmm``."""
    chunk_bytes = policy.CHUNK_BYTES if chunk_bytes is None else chunk_bytes
    nnz = col.numel()
    out = torch.empty(nnz, dtype=left.dtype, device=left.device)
    right_t = right.t()  # (batch, n_cols), each column contiguous: what the kernel reads fastest
    for r0, r1, k0, k1 in _row_chunks(crow, left.shape[1], left.element_size(), chunk_bytes):
        # sampled_addmm scales the input values by beta, and 0 * NaN is NaN: feed zeros.
        zeros = torch.zeros(k1 - k0, dtype=left.dtype, device=left.device)
        pattern = _csr(_sub_crow(crow, r0, r1, k0), col[k0:k1], zeros, (r1 - r0, right.shape[0]))
        out[k0:k1] = torch.sparse.sampled_addmm(pattern, left[r0:r1], right_t, beta=0.0).values()
    return out
