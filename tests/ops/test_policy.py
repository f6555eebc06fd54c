"""The dispatch policy: one plan decides kernels, backward form, column blocks and temporaries."""

from __future__ import annotations

import pytest
import torch
from conftest import needs_ext

from sparselinear import Connectivity, SparseLinear, kernels, memory
from sparselinear.errors import DataError
from sparselinear.ops import dense, policy

CPU = torch.device("cpu")


def _bands(conn: Connectivity) -> dense.BandPlan:
    return dense.plan_for(conn.crow_indices(), conn.col_indices(), "dense", torch.float32, CPU)


def _plan(conn: Connectivity, batch: int = 8, mode: str = "auto", **kw) -> policy.StepPlan:
    area = _bands(conn).area if mode != "sparse" else None
    n_out, n_in = conn.shape
    return policy.plan_step(n_out, n_in, conn.nnz, batch, torch.float32, CPU, mode=mode,
                            band_area=area, index_dtype=conn.index_dtype, **kw)


def test_sparselinear_kernels_is_the_policy_module():
    assert kernels is policy
    assert kernels.plan_step is policy.plan_step


def test_auto_picks_dense_bands_for_a_triangle_and_sparse_kernels_for_random_one_percent():
    tri = _plan(Connectivity.tril(600, 600))
    assert tri.dense_bands and tri.backward == "dense" and tri.in_place
    assert not tri.transposed and tri.column_blocks == 1
    rand = _plan(Connectivity.random(2000, 2000, density=0.01, seed=0), compiled=False)
    assert rand.kernels == "torch" and not rand.dense_bands
    # the layer's own choice agrees with the plan's
    layer = SparseLinear(600, 600, Connectivity.tril(600, 600))
    assert "auto(dense)" in repr(layer)
    # forced modes win over the fill
    assert _plan(Connectivity.tril(600, 600), mode="sparse", compiled=False).kernels == "torch"
    sparse_conn = Connectivity.random(200, 200, density=0.01, seed=1)
    assert _plan(sparse_conn, mode="dense").dense_bands


def test_dense_band_budget_and_fill_are_read_at_call_time(monkeypatch):
    conn = Connectivity.tril(300, 300)
    assert _plan(conn).dense_bands
    monkeypatch.setattr(kernels, "DENSE_BUDGET_BYTES", 64)
    assert not _plan(conn, compiled=False).dense_bands
    assert _plan(conn, mode="dense").dense_bands
    monkeypatch.setattr(kernels, "DENSE_BUDGET_BYTES", 1 << 30)
    monkeypatch.setattr(kernels, "DENSE_MIN_FILL", {"cpu": 1.01, "cuda": 1.01})
    assert not _plan(conn, compiled=False).dense_bands


def test_dense_band_bytes_hand_computed():
    conn = Connectivity.tril(600, 600)
    area, batch = _bands(conn).area, 16
    p = _plan(conn, batch=batch, needs_input_grad=True)
    assert p.saved_bytes == 4 * area  # the tiles; the input is saved as it is
    assert p.forward_bytes == 0  # the output is written in place
    # grad_x beside the tiles' gradient
    assert p.backward_bytes == 600 * batch * 4 + 4 * area
    assert p.derived_bytes == 8 * conn.nnz  # int64 positions of the edges in the tiles
    no_gx = _plan(conn, batch=batch, needs_input_grad=False)
    assert no_gx.backward_bytes == 4 * area
    half = policy.plan_step(600, 600, conn.nnz, batch, torch.float16, CPU, mode="dense",
                            band_area=area, needs_input_grad=False)
    # float32 copies: the tiles and the input are saved, the output, grad_y and the weight
    # and its gradient are cast
    assert half.saved_bytes == 4 * area + 4 * 600 * batch
    assert half.forward_bytes == 4 * 600 * batch + 4 * conn.nnz
    assert half.backward_bytes == 4 * 600 * batch + 4 * area + 4 * conn.nnz


def test_bare_shapes_plan_sparse_under_auto_and_whole_matrix_bands_under_dense():
    auto = policy.plan_step(100, 80, 4000, 8, torch.float32, CPU, mode="auto", compiled=False)
    assert not auto.dense_bands
    forced = policy.plan_step(100, 80, 4000, 8, torch.float32, CPU, mode="dense")
    assert forced.dense_bands and forced.saved_bytes == 4 * 100 * 80


@pytest.mark.parametrize("batch, form", [(1, "fused"), (64, "fused"), (65, "gather")])
def test_fused_or_gather_backward_by_batch(batch, form):
    p = policy.plan_step(300, 200, 3000, batch, torch.float32, CPU, compiled=True, threads=2)
    assert p.backward == form and p.compiled
    assert p.transposed == (form == "gather")
    assert p.in_place == (batch <= kernels.STRIDED_MAX_BATCH)
    weight_only = policy.plan_step(300, 200, 3000, batch, torch.float32, CPU, compiled=True,
                                   threads=2, needs_input_grad=False)
    assert weight_only.backward == "weight" and not weight_only.transposed


def test_constants_are_read_at_call_time(monkeypatch):
    kw = dict(compiled=True, threads=2)
    assert policy.plan_step(30, 20, 100, 8, torch.float32, **kw).backward == "fused"
    monkeypatch.setattr(kernels, "FUSED_MAX_BATCH", 4)
    assert policy.plan_step(30, 20, 100, 8, torch.float32, **kw).backward == "gather"
    monkeypatch.setattr(kernels, "FUSED_MAX_BATCH", 64)
    monkeypatch.setattr(kernels, "PRIVATE_BYTES", 0)
    assert policy.plan_step(30, 20, 100, 8, torch.float32, **kw).backward == "gather"
    # one thread needs no private buffers
    single = policy.plan_step(30, 20, 100, 8, torch.float32, compiled=True, threads=1)
    assert single.backward == "fused"


def test_column_blocks_once_the_tables_outgrow_the_cache(monkeypatch):
    monkeypatch.setattr(kernels, "CACHE_BYTES", 48 << 20)
    fly = dict(n_out=138_639, n_in=138_639, nnz=15_091_983, dtype=torch.float32,
               index_dtype=torch.int32, compiled=True, threads=2)
    narrow = policy.plan_step(batch=16, **fly)
    wide = policy.plan_step(batch=32, **fly)
    assert narrow.column_blocks == 1 and narrow.derived_bytes == 0  # 27 MB of tables: fits
    assert wide.backward == "fused" and wide.column_blocks == 4  # 53 MB: thirds of 48 MB
    assert wide.derived_bytes == policy.layout_bytes(138_639, 15_091_983, 4, 4)
    monkeypatch.setattr(kernels, "CACHE_BYTES", 0)  # never
    assert policy.plan_step(batch=32, **fly).column_blocks == 1
    torch_plan = policy.plan_step(batch=32, **{**fly, "compiled": False})
    assert torch_plan.column_blocks == 1 and torch_plan.transposed


def test_bad_mode_and_backend_raise_data_errors():
    with pytest.raises(DataError, match="'mode' must be one of 'auto', 'sparse', 'dense'"):
        policy.plan_step(3, 3, 3, 1, torch.float32, mode="fast")
    with pytest.raises(DataError, match="'backend' must be one of"):
        kernels.set_backend("fast")
    with pytest.raises(ValueError, match="'mode'"):
        memory.estimate((3, 3), nnz=3, batch_size=1, mode="fast")


@pytest.mark.parametrize("batch, form", [(8, "fused"), (65, "gather")])
@needs_ext
def test_the_autograd_function_runs_the_plan(monkeypatch, batch, form):
    plans = []
    real = policy.plan_step
    monkeypatch.setattr(kernels, "plan_step", lambda *a, **k: plans.append(real(*a, **k))
                        or plans[-1])
    layer = SparseLinear(50, 40, Connectivity.random(40, 50, density=0.1, seed=0), mode="sparse")
    x = torch.randn(batch, 50, requires_grad=True)
    with kernels.use_backend("extension"):
        layer(x).sum().backward()
    # the forward pass plans its kernels, the backward pass its gradients
    assert [p.backward for p in plans] == ["none", form]
    built = layer._transpose_cache.peek(layer.crow_indices, layer.col_indices)
    assert (built is not None) == plans[-1].transposed


def test_estimate_honours_mode():
    conn = Connectivity.tril(600, 600)
    by_mode = {m: memory.estimate(conn, batch_size=16, mode=m).layers[0] for m in policy.MODES}
    assert by_mode["auto"].sparse == by_mode["dense"].sparse != by_mode["sparse"].sparse
    area = _bands(conn).area
    gap = by_mode["dense"].sparse["activations"] - by_mode["sparse"].sparse["activations"]
    assert gap == 4 * area - 4 * 600 * 16  # the tiles instead of the input's copy
    layer = SparseLinear(600, 600, conn, mode="sparse")
    assert memory.estimate(layer, batch_size=16).layers[0].sparse == by_mode["sparse"].sparse
    # a bare shape: sparse under auto
    shape = memory.estimate((600, 600), nnz=conn.nnz, batch_size=16).layers[0]
    assert shape.sparse == by_mode["sparse"].sparse
