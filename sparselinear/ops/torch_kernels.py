"""The two sparse kernels of a sparse linear layer, in pure PyTorch.

* :func:`spmm` — sparse x dense: ``out[r, :] = sum_k values[k] * dense[col[k], :]`` over row r.
* :func:`sddmm` — sampled dense-dense: ``out[k] = left[row[k], :] · right[col[k], :]``.

Both take CSR index tensors and "row-major by edge endpoint" dense operands of shape
``(n, batch)``, so each edge reads one contiguous batch vector. They run on torch's CSR kernels
(MKL on CPU, cuSPARSE on CUDA), in row chunks so that no temporary grows with ``batch x nnz``.
Where torch has no kernel for the dtype (float16/bfloat16 on CPU) they compute in float32.

On CPU the compiled kernels of :mod:`sparselinear._ext` replace these when they are available;
:func:`use_backend` chooses (``"auto"``: compiled where possible, ``"extension"``: compiled or
an error, ``"torch"``: always these). The environment variable ``SPARSELINEAR_KERNELS`` sets the
initial choice.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator

import torch

from ..errors import SparseLinearError
from . import _ext

__all__ = [
    "CACHE_BYTES",
    "CHUNK_BYTES",
    "PRIVATE_BYTES",
    "compute_dtype",
    "empty_cache",
    "extension_enabled",
    "get_backend",
    "sddmm",
    "set_backend",
    "spmm",
    "use_backend",
]

#: Upper bound on ``batch x nnz_chunk x itemsize`` of the work handed to one kernel call.
CHUNK_BYTES = 1 << 28


#: Upper bound on the per-thread ``in x batch`` buffers of the compiled fused backward pass;
#: above it the input gradient is gathered over the transposed pattern instead.
PRIVATE_BYTES = 1 << 27

#: Bytes of CPU cache the compiled fused backward pass's gathered tables (the saved input and one
#: input-gradient buffer per thread, ``in x batch`` each) may fill before it sweeps the pattern
#: in column blocks, each block's slices of the tables filling a third of it (8 MiB at least).
#: The blocks need a block-ordered copy of the column indices, built on first use and kept with
#: the pattern (``nnz + blocks · (2 · out + 1)`` indices more; counted by
#: ``sparselinear.memory.estimate``). ``None`` (the default): ``$SPARSELINEAR_CACHE_BYTES`` if
#: set, else the CPU's last-level cache size; 0 never uses blocks (the memory-lean choice; a
#: copy already built is dropped by the next backward pass). Measured on the 2-core test
#: machine (48 MB cache): the backward pass 15-30 % faster at 3e7 edges (+0.13 GB), about 12 %
#: at 1e8 (+0.48 GB).
CACHE_BYTES: int | None = None

_BACKENDS = ("auto", "extension", "torch")
_backend = os.environ.get("SPARSELINEAR_KERNELS", "auto").strip().lower() or "auto"


def _check_backend(name: str) -> str:
    if name not in _BACKENDS:
        raise SparseLinearError(
            f"'backend' must be one of {', '.join(map(repr, _BACKENDS))}; got {name!r}. "
            "Check the SPARSELINEAR_KERNELS environment variable or the argument."
        )
    return name


def get_backend() -> str:
    """The CPU kernel backend in use: ``"auto"``, ``"extension"`` or ``"torch"``."""
    return _check_backend(_backend)


def set_backend(name: str) -> None:
    """Choose the CPU kernels: ``"auto"`` (compiled where possible), ``"extension"`` (compiled,
    or an error) or ``"torch"`` (pure PyTorch)."""
    global _backend
    _backend = _check_backend(name)


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Context manager form of :func:`set_backend`.

    Examples::

        >>> from sparselinear import kernels
        >>> with kernels.use_backend("torch"):
        ...     kernels.get_backend()
        'torch'
    """
    global _backend
    previous = _backend
    set_backend(name)
    try:
        yield
    finally:
        _backend = previous


def empty_cache() -> int:
    """Return to the OS the memory of freed weight gradients that the compiled CPU kernels keep
    for the next backward pass (as ``torch.cuda.empty_cache`` does for CUDA memory). Returns the
    number of bytes released.

    Freshly mapped memory costs a page fault per 4 KB on first touch, so the kernels keep the
    buffers of large weight gradients (``optimizer.zero_grad()`` frees them) for reuse, up to
    1 GiB; call this after training to release them.

    Examples::

        >>> from sparselinear import kernels
        >>> kernels.empty_cache() >= 0
        True
    """
    return _ext.release_idle()


def extension_enabled(tensor: torch.Tensor) -> bool:
    """Whether the compiled kernels handle ``tensor`` (CPU, float32/float64) under the current
    backend. Raises if the backend is ``"extension"`` and they cannot be built."""
    backend = get_backend()
    if backend == "torch" or tensor.device.type != "cpu":
        return False
    if tensor.dtype not in (torch.float32, torch.float64):
        return False
    if backend == "extension" and not _ext.available():
        raise SparseLinearError(
            "The compiled kernels were requested (backend 'extension') but are not available: "
            "see the earlier warning, or unset SPARSELINEAR_DISABLE_EXTENSION. Use "
            "`kernels.set_backend('auto')` to fall back to the PyTorch kernels."
        )
    return _ext.available()


def compute_dtype(dtype: torch.dtype, device: torch.device) -> torch.dtype:
    """The dtype the kernels compute in for tensors of ``dtype`` on ``device``."""
    if device.type == "cpu" and dtype in (torch.float16, torch.bfloat16):
        return torch.float32
    return dtype


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
    ``chunk_bytes`` defaults to :data:`CHUNK_BYTES`, read at call time."""
    chunk_bytes = CHUNK_BYTES if chunk_bytes is None else chunk_bytes
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
    ``right (n_cols, batch)``; returns ``(nnz,)``. ``chunk_bytes`` as for :func:`spmm`."""
    chunk_bytes = CHUNK_BYTES if chunk_bytes is None else chunk_bytes
    nnz = col.numel()
    out = torch.empty(nnz, dtype=left.dtype, device=left.device)
    right_t = right.t()  # (batch, n_cols), each column contiguous: what the kernel reads fastest
    for r0, r1, k0, k1 in _row_chunks(crow, left.shape[1], left.element_size(), chunk_bytes):
        # sampled_addmm scales the input values by beta, and 0 * NaN is NaN: feed zeros.
        zeros = torch.zeros(k1 - k0, dtype=left.dtype, device=left.device)
        pattern = _csr(_sub_crow(crow, r0, r1, k0), col[k0:k1], zeros, (r1 - r0, right.shape[0]))
        out[k0:k1] = torch.sparse.sampled_addmm(pattern, left[r0:r1], right_t, beta=0.0).values()
    return out
