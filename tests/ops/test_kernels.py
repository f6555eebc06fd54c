"""Kernels, backends and modes of the sparse linear layer against a dense float64 reference."""

from __future__ import annotations

import pytest
import torch
from conftest import needs_ext

from sparselinear import Connectivity, SparseLinear, kernels
from sparselinear.errors import DataError, SparseLinearError
from sparselinear.functional import sparse_linear
from sparselinear.ops import _ext
from sparselinear.ops import dense as _dense

BACKENDS = [pytest.param("extension", marks=needs_ext), "torch"]
MODES = ["sparse", "dense", "auto"]


def _pattern(kind: str) -> Connectivity:
    if kind == "random":  # rectangular, with empty rows and columns
        idx = torch.tensor([[0, 0, 2, 2, 2, 5, 6, 6], [1, 3, 0, 3, 8, 8, 2, 4]])
        return Connectivity(idx, shape=(8, 10))
    if kind == "empty":
        return Connectivity(torch.zeros(2, 0, dtype=torch.int64), shape=(4, 3))
    if kind == "tril":
        rows, cols = torch.tril_indices(9, 9)
        return Connectivity(torch.stack([rows, cols]), shape=(9, 9))
    if kind == "wide":
        return Connectivity.random(3, 40, density=0.3, seed=1)
    raise AssertionError(kind)


PATTERNS = ["random", "empty", "tril", "wide"]


def _dense_weight(conn: Connectivity, weight: torch.Tensor) -> torch.Tensor:
    rows, cols = conn.indices()
    return torch.zeros(conn.shape, dtype=weight.dtype).index_put((rows, cols), weight)


def _reference(conn, x, weight, bias):
    """Output and gradients of ``sum(y * probe)`` computed densely in float64."""
    x64 = x.detach().double().requires_grad_()
    w64 = weight.detach().double().requires_grad_()
    b64 = bias.detach().double().requires_grad_()
    y = x64 @ _dense_weight(conn, w64).t() + b64
    probe = torch.linspace(-1, 1, y.numel(), dtype=torch.float64).view_as(y)
    (y * probe).sum().backward()
    return y, x64.grad, w64.grad, b64.grad, probe


def _run(conn, x, weight, bias, mode, probe):
    x, weight, bias = (t.detach().requires_grad_() for t in (x, weight, bias))
    y = sparse_linear(x, weight, conn, bias, mode=mode)
    (y * probe.to(y.dtype)).sum().backward()
    return y, x.grad, weight.grad, bias.grad


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", PATTERNS)
@pytest.mark.parametrize("lead", [(5,), (2, 3), (0,)])
def test_matches_dense_reference(backend, mode, kind, lead):
    conn = _pattern(kind)
    torch.manual_seed(0)
    x = torch.randn(*lead, conn.in_features, dtype=torch.float64)
    weight = torch.randn(conn.nnz, dtype=torch.float64)
    bias = torch.randn(conn.out_features, dtype=torch.float64)
    *expected, probe = _reference(conn, x, weight, bias)
    with kernels.use_backend(backend):
        got = _run(conn, x, weight, bias, mode, probe)
    for g, e in zip(got, expected, strict=True):
        assert g.dtype == torch.float64 and g.shape == e.shape
        torch.testing.assert_close(g, e, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", ["random", "tril", "empty"])
def test_gradcheck(backend, mode, kind):
    conn = _pattern(kind)
    torch.manual_seed(1)
    x = torch.randn(3, conn.in_features, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(conn.nnz, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(conn.out_features, dtype=torch.float64, requires_grad=True)
    with kernels.use_backend(backend):
        assert torch.autograd.gradcheck(
            lambda a, w, b: sparse_linear(a, w, conn, b, mode=mode), (x, weight, bias)
        )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_low_precision_computes_in_float32(backend, mode, dtype):
    conn = Connectivity.random(30, 50, density=0.2, seed=2)
    torch.manual_seed(2)
    x, weight, bias = (torch.randn(*s).to(dtype) for s in ((7, 50), (conn.nnz,), (30,)))
    *expected, probe = _reference(conn, x, weight, bias)
    with kernels.use_backend(backend):
        got = _run(conn, x, weight, bias, mode, probe)
    tol = {torch.float16: 1e-2, torch.bfloat16: 5e-2, torch.float32: 1e-5}[dtype]
    for g, e in zip(got, expected, strict=True):
        assert g.dtype == dtype
        torch.testing.assert_close(g.double(), e, rtol=tol, atol=tol * e.abs().max().item())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("needs", [(True, False), (False, True), (True, True)])
def test_only_requested_gradients(backend, needs):
    conn = Connectivity.random(20, 30, density=0.05, seed=3)
    x = torch.randn(4, 30, dtype=torch.float64, requires_grad=needs[0])
    weight = torch.randn(conn.nnz, dtype=torch.float64, requires_grad=needs[1])
    *expected, probe = _reference(conn, x, weight, torch.zeros(20, dtype=torch.float64))
    with kernels.use_backend(backend):
        (sparse_linear(x, weight, conn, mode="sparse") * probe).sum().backward()
    for tensor, wanted, reference in ((x, needs[0], expected[1]), (weight, needs[1], expected[2])):
        if wanted:
            torch.testing.assert_close(tensor.grad, reference)
        else:
            assert tensor.grad is None


# ---------------------------------------------------------------- the compiled kernels directly


@needs_ext
@pytest.mark.parametrize("sweep_bytes", [0, 23 * 8 * 8])
@pytest.mark.parametrize("batch", [0, 1, 8, 24, 33, 129])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("index_dtype", [torch.int32, torch.int64])
def test_compiled_kernels_every_batch_tile(monkeypatch, sweep_bytes, batch, dtype, index_dtype):
    monkeypatch.setattr(_ext, "SWEEP_BYTES", sweep_bytes)  # > 0: several sweeps of 8 columns
    conn = Connectivity.random(37, 23, density=0.2, seed=4)
    crow, col, crow_t, row_t, perm = (
        t.to(index_dtype) for t in conn._fields() + conn.transposed_csr()
    )
    torch.manual_seed(4)
    w = torch.randn(conn.nnz, dtype=dtype)
    x, g = torch.randn(23, batch, dtype=dtype), torch.randn(37, batch, dtype=dtype)
    dense = _dense_weight(conn, w.double())
    rows, cols = conn.indices()
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {}
    torch.testing.assert_close(_ext.spmm(crow, col, w, x).double(), dense @ x.double(), **tol)
    w_t = w[perm.long()]  # the gather form: the transposed pattern with values in its order
    torch.testing.assert_close(
        _ext.spmm(crow_t, row_t, w_t, g).double(), dense.t() @ g.double(), **tol
    )
    gw, gx = _ext.backward(crow, col, w, x, g, 23, want_gw=True, want_gx=True)
    torch.testing.assert_close(gx.double(), dense.t() @ g.double(), **tol)
    torch.testing.assert_close(gw.double(), (g.double() @ x.double().t())[rows, cols], **tol)
    gw_t, gx_t = _ext.backward_transposed(crow_t, row_t, perm, w, x, g)  # one pass over it
    torch.testing.assert_close(gx_t.double(), dense.t() @ g.double(), **tol)
    torch.testing.assert_close(gw_t.double(), (g.double() @ x.double().t())[rows, cols], **tol)
    only_w, none = _ext.backward(crow, col, w, x, g, 23, want_gw=True, want_gx=False)
    assert none is None
    torch.testing.assert_close(only_w.double(), (g.double() @ x.double().t())[rows, cols], **tol)
    # Strided operands: output written batch-major with the bias, grad read batch-major.
    bias = torch.randn(37, dtype=dtype)
    y = torch.full((batch, 37), float("nan"), dtype=dtype)
    _ext.spmm(crow, col, w, x, bias, out=y.t())
    torch.testing.assert_close(y.t().double(), dense @ x.double() + bias.double()[:, None], **tol)
    g_batch_major = g.t().contiguous()
    gx_out = torch.full((batch, 23), float("nan"), dtype=dtype)
    gw2, _ = _ext.backward(crow, col, w, x, g_batch_major.t(), 23, want_gw=True, want_gx=True,
                           out=gx_out.t())
    torch.testing.assert_close(gx_out.t().double(), dense.t() @ g.double(), **tol)
    torch.testing.assert_close(gw2, gw)
    gx_out.fill_(float("nan"))
    gw3, _ = _ext.backward_transposed(crow_t, row_t, perm, w, x, g, out=gx_out.t())
    torch.testing.assert_close(gx_out.t().double(), dense.t() @ g.double(), **tol)
    torch.testing.assert_close(gw3, gw_t)


@needs_ext
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("sweep_bytes", [0, 23 * 8 * 8])
@pytest.mark.parametrize("batch", [1, 8, 33])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_backward_into_buffers_writes_and_accumulates(monkeypatch, threads, sweep_bytes, batch,
                                                      dtype):
    """The fused sweep writes into given buffers (the one thread's input-gradient buffer is the
    result itself) or adds to them, over every batch tile and sweep."""
    monkeypatch.setattr(_ext, "SWEEP_BYTES", sweep_bytes)
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    conn = Connectivity.random(37, 23, density=0.2, seed=5)
    crow, col = conn._fields()
    torch.manual_seed(5)
    w = torch.randn(conn.nnz, dtype=dtype)
    x, g = torch.randn(23, batch, dtype=dtype), torch.randn(37, batch, dtype=dtype)
    dense = _dense_weight(conn, w.double())
    rows, cols = conn.indices()
    want_x, want_w = dense.t() @ g.double(), (g.double() @ x.double().t())[rows, cols]
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {}
    gx = torch.full((23, batch), float("nan"), dtype=dtype)
    gw = torch.full((conn.nnz,), float("nan"), dtype=dtype)
    out_w, out_x = _ext.backward(crow, col, w, x, g, 23, want_gw=True, want_gx=True, out=gx,
                                 gw_out=gw)
    assert out_w is gw and out_x is gx
    torch.testing.assert_close(gx.double(), want_x, **tol)
    torch.testing.assert_close(gw.double(), want_w, **tol)
    start_x, start_w = torch.randn(23, batch, dtype=dtype), torch.randn(conn.nnz, dtype=dtype)
    gx.copy_(start_x)
    gw.copy_(start_w)
    _ext.backward(crow, col, w, x, g.t().contiguous().t(), 23, want_gw=True, want_gx=True,
                  out=gx, gw_out=gw, accumulate_gw=True, accumulate_gx=True)
    torch.testing.assert_close(gx.double(), start_x.double() + want_x, **tol)
    torch.testing.assert_close(gw.double(), start_w.double() + want_w, **tol)
    # a strided input-gradient buffer goes through the private buffers, its content added
    strided = start_x.t().clone(memory_format=torch.contiguous_format)
    _ext.backward(crow, col, w, x, g, 23, want_gw=False, want_gx=True, out=strided.t(),
                  accumulate_gx=True)
    torch.testing.assert_close(strided.t().double(), start_x.double() + want_x, **tol)
    with pytest.raises(ValueError, match="pass 'out'"):
        _ext.backward(crow, col, w, x, g, 23, want_gw=False, want_gx=True, accumulate_gx=True)
    with pytest.raises(ValueError, match="pass 'gw_out'"):
        _ext.backward(crow, col, w, x, g, 23, want_gw=True, want_gx=False, accumulate_gw=True)
    with pytest.raises(ValueError, match="expected gw_out contiguous"):
        _ext.backward(crow, col, w, x, g, 23, want_gw=True, want_gx=False, gw_out=gw[:-1])


@needs_ext
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("batch", [1, 8, 20, 33])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("index_dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("window", [(0, 23), (5, 17), (0, 9), (14, 23), (7, 7)])
def test_backward_over_a_column_window(monkeypatch, threads, batch, dtype, index_dtype, window):
    """Only the edges whose column lies in the window take part: the input gradient of the
    window's columns, and the weight gradients of its edges (the others left as they were)."""
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    lo, hi = window
    conn = Connectivity.random(37, 23, density=0.3, seed=6)
    crow, col = (t.to(index_dtype) for t in conn._fields())
    torch.manual_seed(6)
    w = torch.randn(conn.nnz, dtype=dtype)
    x, g = torch.randn(23, batch, dtype=dtype), torch.randn(37, batch, dtype=dtype)
    dense = _dense_weight(conn, w.double())
    rows, cols = conn.indices()
    inside = (cols >= lo) & (cols < hi)
    want_x = (dense.t() @ g.double())[lo:hi]
    want_w = (g.double() @ x.double().t())[rows, cols]
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {}
    start_w = torch.randn(conn.nnz, dtype=dtype)
    for accumulate in (False, True):
        gw = start_w.clone()
        gx = torch.randn(hi - lo, batch, dtype=dtype)
        start_x = gx.clone()
        _ext.backward(crow, col, w, x[lo:hi].contiguous(), g.t().contiguous().t(), hi - lo,
                      want_gw=True, want_gx=True, out=gx, gw_out=gw, window=window,
                      accumulate_gw=accumulate, accumulate_gx=accumulate)
        base_x = start_x.double() if accumulate else 0
        torch.testing.assert_close(gx.double(), base_x + want_x, **tol)
        expected_w = torch.where(inside, want_w + (start_w.double() if accumulate else 0),
                                 start_w.double())
        torch.testing.assert_close(gw.double(), expected_w, **tol)
    with pytest.raises(ValueError, match="column window"):
        _ext.backward(crow, col, w, x, g, 23, want_gw=True, want_gx=False, window=(3, 2))


@needs_ext
@pytest.mark.parametrize("batch", [3, 16, 17, 40])  # narrow, 16-wide tile, and their tails
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_transposed_pass_over_columns_of_many_edges_and_none(batch, dtype):
    # Columns of 600 edges take several stack chunks of dot products; column 1 has no edge.
    rows = torch.arange(600).repeat_interleave(2)
    cols = torch.tensor([0, 2]).repeat(600)
    conn = Connectivity.from_indices(torch.stack([rows, cols]), (600, 3))
    crow_t, row_t, perm = conn.transposed_csr()
    torch.manual_seed(6)
    w = torch.randn(conn.nnz, dtype=dtype)
    x, g = torch.randn(3, batch, dtype=dtype), torch.randn(600, batch, dtype=dtype)
    gx_out = torch.full((batch, 3), float("nan"), dtype=dtype)
    gw, _ = _ext.backward_transposed(crow_t, row_t, perm, w, x, g, out=gx_out.t())
    dense = _dense_weight(conn, w.double())
    r, c = conn.indices()
    tol = {"rtol": 1e-4, "atol": 1e-4} if dtype == torch.float32 else {}
    torch.testing.assert_close(gx_out.t().double(), dense.t() @ g.double(), **tol)
    torch.testing.assert_close(gw.double(), (g.double() @ x.double().t())[r, c], **tol)


@needs_ext
@pytest.mark.parametrize("shape", [(10, 16), ((8 << 20) // 64 + 3, 16), ((8 << 20) // 1024, 256)])
def test_gather_tables_are_contiguous_and_private(shape):
    a = _ext.empty(*shape, dtype=torch.float32)
    b = _ext.empty(*shape, dtype=torch.float32)
    assert a.shape == shape and a.is_contiguous()
    a.fill_(1.0)
    b.fill_(2.0)
    assert float(a.sum()) == a.numel() and float(b.sum()) == 2 * b.numel()
    narrow = shape[-1] * 4 <= _ext.HUGEPAGE_MAX_ROW_BYTES
    if a.numel() * 4 >= _ext.HUGEPAGE_MIN_BYTES and narrow:
        assert a.data_ptr() % (2 << 20) == 0  # aligned so that whole huge pages can back it
    del a  # its mapping goes with it; b is untouched
    assert float(b.sum()) == 2 * b.numel()


@needs_ext
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("budget", ["private", "batch"])
@pytest.mark.parametrize("frozen_weight", [False, True])
def test_gather_form_when_private_buffers_exceed_budget(monkeypatch, threads, budget,
                                                         frozen_weight):
    conn = Connectivity.random(40, 60, density=0.1, seed=5)
    x = torch.randn(9, 60, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(conn.nnz, dtype=torch.float64, requires_grad=not frozen_weight)
    *expected, probe = _reference(conn, x, weight, torch.zeros(40, dtype=torch.float64))
    if budget == "private":
        monkeypatch.setattr(kernels, "PRIVATE_BYTES", 0)
    else:
        monkeypatch.setattr(kernels, "FUSED_MAX_BATCH", 4)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with kernels.use_backend("extension"):
            (sparse_linear(x, weight, conn, mode="sparse") * probe).sum().backward()
    finally:
        torch.set_num_threads(previous)
    torch.testing.assert_close(x.grad, expected[1])
    if frozen_weight:
        assert weight.grad is None
    else:
        torch.testing.assert_close(weight.grad, expected[2])


# ---------------------------------------------------------------- building and falling back
@pytest.fixture
def fresh_ext(monkeypatch, tmp_path):
    """The extension module with its load state reset and a private build folder."""
    monkeypatch.setattr(_ext, "_lib", None)
    monkeypatch.setattr(_ext, "_tried", False)
    monkeypatch.setattr(_ext, "_openmp", False)
    monkeypatch.setenv("SPARSELINEAR_BUILD_DIR", str(tmp_path))
    monkeypatch.delenv("SPARSELINEAR_DISABLE_EXTENSION", raising=False)
    return _ext


def test_missing_compiler_warns_and_falls_back(fresh_ext, monkeypatch):
    monkeypatch.setattr(fresh_ext.build, "find_compiler", lambda: None)
    assert not fresh_ext.build_expected()  # the test command then accepts the fallback
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler found"):
        assert not fresh_ext.available()
    conn = Connectivity.random(5, 6, density=0.5, seed=0)
    x, w = torch.randn(2, 6, dtype=torch.float64), torch.randn(conn.nnz, dtype=torch.float64)
    expected = x @ _dense_weight(conn, w).t()
    torch.testing.assert_close(sparse_linear(x, w, conn, mode="sparse"), expected)
    with kernels.use_backend("extension"), pytest.raises(SparseLinearError, match="not available"):
        sparse_linear(x, w, conn, mode="sparse")


def test_failing_compiler_warns_with_its_output(fresh_ext, monkeypatch, tmp_path):
    fake = tmp_path / "broken-c++"
    fake.write_text("#!/bin/sh\necho 'fatal: broken compiler' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(fresh_ext.build, "find_compiler", lambda: str(fake))
    with pytest.warns(RuntimeWarning, match="(?s)could not build.*broken compiler"):
        assert fresh_ext.load() is None
    assert not list(tmp_path.rglob("*.so"))


@needs_ext
def test_builds_into_the_build_dir_and_reuses_it(fresh_ext, tmp_path):
    assert fresh_ext.available()
    built = list(tmp_path.rglob("sparselinear_kernels.so"))
    assert len(built) == 1
    stamp = built[0].stat().st_mtime_ns
    fresh_ext._lib, fresh_ext._tried = None, False
    assert fresh_ext.available() and built[0].stat().st_mtime_ns == stamp


def test_disabled_by_environment(fresh_ext, monkeypatch):
    monkeypatch.setattr(fresh_ext.build, "find_compiler", lambda: "/usr/bin/c++")
    assert fresh_ext.build_expected()
    monkeypatch.setenv("SPARSELINEAR_DISABLE_EXTENSION", "1")
    assert fresh_ext.load() is None and not fresh_ext.available()
    assert not fresh_ext.build_expected()


def test_backend_names():
    assert kernels.get_backend() in ("auto", "extension", "torch")
    with pytest.raises(DataError, match="'backend' must be one of"):
        kernels.set_backend("fast")
    with kernels.use_backend("torch"):
        assert kernels.get_backend() == "torch"
        assert not kernels.extension_enabled(torch.zeros(1))


# ---------------------------------------------------------------- modes
def test_mode_is_visible_and_overridable():
    rows, cols = torch.tril_indices(64, 64)
    layer = SparseLinear(64, 64, torch.stack([rows, cols]))
    assert "mode=auto(dense)" in repr(layer)
    layer.mode = "sparse"
    assert "mode=sparse" in repr(layer)
    sparse = SparseLinear(400, 500, Connectivity.random(500, 400, density=0.01, seed=0))
    assert "mode=auto(sparse)" in repr(sparse)
    assert "mode=dense" in repr(SparseLinear(500, 400, sparse.connectivity.T, mode="dense"))


def test_auto_respects_memory_budget_and_fill(monkeypatch):
    rows, cols = torch.tril_indices(1024, 1024)
    conn = Connectivity(torch.stack([rows, cols]), shape=(1024, 1024))
    crow, col = conn.crow_indices(), conn.col_indices()
    plan = _dense.plan_for(crow, col, "auto", torch.float32, torch.device("cpu"))
    assert plan is not None and plan.area <= 0.6 * 1024 * 1024  # the upper triangle is skipped
    monkeypatch.setattr(kernels, "DENSE_BUDGET_BYTES", 64)
    assert _dense.plan_for(crow, col, "auto", torch.float32, torch.device("cpu")) is None
    assert _dense.plan_for(crow, col, "dense", torch.float32, torch.device("cpu")) is plan
    monkeypatch.setattr(kernels, "DENSE_BUDGET_BYTES", 1 << 30)
    monkeypatch.setattr(kernels, "DENSE_MIN_FILL", {"cpu": 1.01, "cuda": 1.01})
    assert _dense.plan_for(crow, col, "auto", torch.float32, torch.device("cpu")) is None


def test_band_plan_covers_every_edge_once():
    conn = Connectivity.random(300, 200, density=0.05, seed=6)
    plan = _dense.plan_for(conn.crow_indices(), conn.col_indices(), "dense", torch.float32,
                           torch.device("cpu"))
    rows, cols = conn.indices()
    covered = torch.zeros(conn.nnz, dtype=torch.int64)
    for r0, r1, c0, c1, k0, k1 in plan.bands:
        assert bool(((rows[k0:k1] >= r0) & (rows[k0:k1] < r1)).all())
        assert bool(((cols[k0:k1] >= c0) & (cols[k0:k1] < c1)).all())
        covered[k0:k1] += 1
    assert bool((covered == 1).all())
    where = plan.positions(conn.crow_indices(), conn.col_indices())
    assert where.unique().numel() == conn.nnz and int(where.max()) < plan.area
    flat = torch.zeros(plan.area, dtype=torch.float64)
    flat[where] = torch.arange(1.0, conn.nnz + 1, dtype=torch.float64)
    dense = torch.zeros(conn.shape, dtype=torch.float64)
    for (r0, r1, c0, c1, _, _), tile in zip(plan.bands, plan.tiles(flat), strict=True):
        dense[r0:r1, c0:c1] += tile
    assert torch.equal(dense[rows, cols], torch.arange(1.0, conn.nnz + 1, dtype=torch.float64))
    assert int((dense != 0).sum()) == conn.nnz


@pytest.mark.parametrize("bad", ["fast", None, 3])
def test_bad_mode(bad):
    conn = Connectivity.random(4, 5, density=0.5, seed=0)
    with pytest.raises(DataError, match="'mode' must be one of"):
        SparseLinear(5, 4, conn, mode=bad)
    with pytest.raises(DataError, match="'mode' must be one of"):
        sparse_linear(torch.randn(2, 5), torch.randn(conn.nnz), conn, mode=bad)


def test_plan_cache_does_not_keep_patterns_alive():
    import gc
    import weakref

    conn = Connectivity.random(50, 40, density=0.5, seed=9)
    x = torch.randn(2, 40)
    sparse_linear(x, torch.randn(conn.nnz), conn, mode="auto")
    ref = weakref.ref(conn.crow_indices())
    del conn
    gc.collect()
    assert ref() is None


def test_plan_follows_in_place_changes_of_the_pattern():
    layer = SparseLinear(64, 64, Connectivity.random(64, 64, density=0.5, seed=7), mode="dense")
    x = torch.randn(3, 64, dtype=torch.float64)
    layer.double()
    first = layer(x)
    new = Connectivity.random(64, 64, nnz=layer.nnz, seed=8)
    with torch.no_grad():
        layer.crow_indices.copy_(new.crow_indices())
        layer.col_indices.copy_(new.col_indices())
    second = layer(x)
    expected = x @ _dense_weight(new, layer.weight.detach()).t() + layer.bias.detach()
    torch.testing.assert_close(second, expected)
    assert not torch.allclose(first, second)


# ---------------------------------------------------------------- CUDA
@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device; none is present")
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", PATTERNS)
def test_cuda_matches_reference(mode, kind):
    conn = _pattern(kind)
    x = torch.randn(6, conn.in_features, dtype=torch.float64)
    weight, bias = torch.randn(conn.nnz, dtype=torch.float64), torch.randn(conn.out_features,
                                                                           dtype=torch.float64)
    *expected, probe = _reference(conn, x, weight, bias)
    got = _run(conn.to("cuda"), x.cuda(), weight.cuda(), bias.cuda(), mode, probe.cuda())
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g.cpu(), e)


@needs_ext
@pytest.mark.parametrize("shape", [(1, 1), (3, 70), (70, 3), (33, 65), (1100, 1030)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_blocked_transpose_matches_torch(shape, dtype):
    src = torch.randn(*shape, dtype=dtype)
    out = _ext.transposed(src)
    assert out.is_contiguous() and out.dtype == dtype
    assert torch.equal(out, src.t())
    wide = torch.randn(shape[0], shape[1] + 5, dtype=dtype)[:, 2 : 2 + shape[1]]  # row stride
    assert torch.equal(_ext.transposed(wide), wide.t())
    assert torch.equal(_ext.transposed(src.t().contiguous().t()), src.t())  # torch's copy path
    cast = _ext.transposed(src, torch.float32 if dtype == torch.float64 else torch.float64)
    torch.testing.assert_close(cast.double(), src.t().double())
