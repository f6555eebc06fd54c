"""Shared fixtures and parametrisation lists."""

from __future__ import annotations

import pytest
import torch

from sparselinear.ops import _ext

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
    ),
]

#: Tests of the compiled CPU kernels: skipped, with the reason, where they cannot be built.
needs_ext = pytest.mark.skipif(
    not _ext.available(), reason="compiled kernels unavailable (no C++ compiler, or disabled)"
)


def random_pattern_indices(n_out: int, n_in: int, density: float, seed: int) -> torch.Tensor:
    """(2, nnz) indices of a random mask that leaves some rows and columns empty."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(n_out, n_in, generator=g) < density
    if n_out > 2 and n_in > 2:
        mask[1] = False  # an empty output row
        mask[:, 2] = False  # an empty input column
    return mask.nonzero().t()


def dense_reference(x, weight, indices, shape, bias=None):
    """float64-friendly masked dense reference ``x @ Wᵀ + b``."""
    dense = torch.zeros(shape, dtype=weight.dtype, device=weight.device)
    dense = dense.index_put((indices[0], indices[1]), weight)
    y = x @ dense.t()
    return y + bias if bias is not None else y


@pytest.fixture
def one_thread():
    """One torch thread for the test, restored afterwards: on tiny layers the start-up and
    synchronisation of the CSR kernels' threads would dominate (milliseconds per call on a busy
    machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
