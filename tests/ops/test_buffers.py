"""Host buffers of the compiled kernels: huge-page tables and recycled weight gradients."""

import gc

import pytest
import torch
from conftest import needs_ext

from sparselinear import Connectivity, SparseLinear, kernels
from sparselinear.constraints import Sign, constrain
from sparselinear.functional import sparse_linear
from sparselinear.ops._ext import buffers

LARGE = buffers.RECYCLE_MIN_BYTES // 4  # float32 values in the smallest recycled buffer
needs_map = pytest.mark.skipif(not buffers._CAN_MAP, reason="needs anonymous mmap (Linux)")


@pytest.fixture(autouse=True)
def empty_pool():
    buffers.release_idle()
    yield
    buffers.release_idle()


@needs_map
def test_freed_buffer_is_reused_for_the_same_size_only():
    a = buffers.recycled_empty(LARGE, torch.float32)
    address = a.data_ptr()
    assert buffers.idle_bytes() == 0
    del a
    assert buffers.idle_bytes() == LARGE * 4
    other = buffers.recycled_empty(LARGE + 1, torch.float32)  # another size: a new mapping
    assert other.data_ptr() != address and buffers.idle_bytes() == LARGE * 4
    b = buffers.recycled_empty(LARGE, torch.float32)
    assert b.data_ptr() == address and buffers.idle_bytes() == 0
    assert b.shape == (LARGE,) and b.dtype == torch.float32 and b.is_contiguous()


@needs_map
def test_a_buffer_is_kept_while_any_view_of_it_lives():
    a = buffers.recycled_empty(LARGE, torch.float64)
    a.fill_(2.0)
    view = a[10:20]
    del a
    gc.collect()
    assert buffers.idle_bytes() == 0
    assert float(view.sum()) == 20.0  # still valid memory
    fresh = buffers.recycled_empty(LARGE, torch.float64)
    fresh.fill_(5.0)
    assert float(view.sum()) == 20.0  # not handed out again while the view lives
    del view
    assert buffers.idle_bytes() == LARGE * 8


@needs_map
def test_idle_memory_is_capped_and_released(monkeypatch):
    monkeypatch.setattr(buffers, "RECYCLE_IDLE_BYTES", 3 * LARGE * 4)
    held = [buffers.recycled_empty(LARGE, torch.float32) for _ in range(5)]
    del held
    assert buffers.idle_bytes() == 3 * LARGE * 4  # the two oldest were unmapped
    assert kernels.empty_cache() == 3 * LARGE * 4
    assert buffers.idle_bytes() == 0


def test_small_requests_come_from_the_heap():
    a = buffers.recycled_empty(16, torch.float32)
    del a
    assert buffers.idle_bytes() == 0


@needs_map
@needs_ext
@pytest.mark.parametrize("batch", [3, 100])  # the fused pass and the transposed pass
def test_gradients_are_right_in_recycled_memory_holding_old_values(monkeypatch, batch):
    monkeypatch.setattr(buffers, "RECYCLE_MIN_BYTES", 0)  # recycle even this small gradient
    conn = Connectivity.random(50, 40, density=0.3, seed=1)
    x = torch.randn(batch, 40, requires_grad=True)
    w = torch.randn(conn.nnz, requires_grad=True)
    stale = buffers.recycled_empty(conn.nnz, torch.float32)
    stale.fill_(float("nan"))
    address = stale.data_ptr()
    del stale  # the next weight gradient gets this memory
    with kernels.use_backend("extension"):
        sparse_linear(x, w, conn, mode="sparse").pow(2).sum().backward()
    assert w.grad.data_ptr() == address
    x64, w64 = x.detach().double().requires_grad_(), w.detach().double().requires_grad_()
    dense = torch.zeros(50, 40, dtype=torch.float64).index_put(tuple(conn.indices()), w64)
    (x64 @ dense.t()).pow(2).sum().backward()
    torch.testing.assert_close(w.grad.double(), w64.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(x.grad.double(), x64.grad, rtol=1e-4, atol=1e-4)


@needs_map
@needs_ext
@pytest.mark.parametrize("batch", [3, 100])
def test_a_gradient_computed_in_another_dtype_is_not_kept(monkeypatch, batch):
    # float16 weights: the float32 gradient is cast and dropped; keeping its buffer would leave
    # it idle beside the gradient through the optimizer step.
    monkeypatch.setattr(buffers, "RECYCLE_MIN_BYTES", 0)
    conn = Connectivity.random(50, 40, density=0.3, seed=1)
    x = torch.randn(batch, 40, dtype=torch.float16, requires_grad=True)
    w = torch.randn(conn.nnz, dtype=torch.float16, requires_grad=True)
    with kernels.use_backend("extension"):
        sparse_linear(x, w, conn, mode="sparse").float().pow(2).sum().backward()
    assert w.grad.dtype == torch.float16 and buffers.idle_bytes() == 0
    w32 = w.detach().float().requires_grad_()
    with kernels.use_backend("extension"):
        sparse_linear(x.detach().float(), w32, conn, mode="sparse").sum().backward()
    del w32  # its gradient is returned as is, and kept when freed
    assert buffers.idle_bytes() == conn.nnz * 4


@needs_map
@needs_ext
def test_a_gradient_passed_on_through_a_constraint_is_not_kept(monkeypatch):
    # The kernel's weight gradient is the constrained weight's, a temporary: the free
    # parameter's gradient is another tensor.
    monkeypatch.setattr(buffers, "RECYCLE_MIN_BYTES", 0)
    conn = Connectivity.random(50, 40, density=0.3, seed=1)
    layer = constrain(SparseLinear(40, 50, conn, mode="sparse"), Sign(torch.ones(conn.nnz)))
    with kernels.use_backend("extension"):
        layer(torch.randn(3, 40)).sum().backward()
    assert layer.parametrizations.weight.original.grad is not None
    assert buffers.idle_bytes() == 0
