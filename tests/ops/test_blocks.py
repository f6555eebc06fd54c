"""Column blocks of the compiled fused backward pass: layout, results, policy, caching, memory."""

from __future__ import annotations

import gc

import pytest
import torch
from conftest import needs_ext

from sparselinear import Connectivity, SparseLinear, kernels, memory
from sparselinear.errors import DataError
from sparselinear.ops import _ext, policy
from sparselinear.ops import blocks as _blocks


def _random_pattern(n_out, n_in, nnz, seed, index_dtype=torch.int32):
    """A canonical CSR with empty rows and columns (the last rows and columns get no edges)."""
    conn = Connectivity.random(n_out - 3, n_in - 2, nnz=nnz, seed=seed)
    rows, cols = conn.indices()
    full = Connectivity(torch.stack([rows, cols]), shape=(n_out, n_in))
    crow, col = full._fields()
    return crow.to(index_dtype), col.to(index_dtype)


def _kept(crow, col):
    """The block layout kept for the pattern ``(crow, col)``, or ``None``."""
    return _blocks._caches.for_tensor(col).peek(crow, col)


@pytest.fixture
def small_cache(monkeypatch):
    """Blocks for any layer whose tables pass 1 KB."""
    monkeypatch.setattr(kernels, "CACHE_BYTES", 1024)


@needs_ext
@pytest.mark.parametrize("index_dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("n_blocks", [1, 2, 3, 7])
def test_layout_lists_every_edge_once_in_its_block(index_dtype, n_blocks):
    crow, col = _random_pattern(23, 31, 200, seed=n_blocks, index_dtype=index_dtype)
    crow_blk, col_blk, run = _ext.block_layout(crow, col, 31, n_blocks)
    assert crow_blk.shape == (n_blocks, 24) and run.shape == (n_blocks, 23)
    assert col_blk.dtype == run.dtype == crow_blk.dtype == index_dtype
    assert crow_blk[0, 0] == 0 and crow_blk[-1, -1] == col.numel()
    assert torch.equal(crow_blk[1:, 0], crow_blk[:-1, -1])  # blocks one after another
    for b in range(n_blocks):
        lo, hi = b * 31 // n_blocks, (b + 1) * 31 // n_blocks
        for r in range(23):
            k0, k1 = int(crow_blk[b, r]), int(crow_blk[b, r + 1])
            s = int(run[b, r])
            # the block's run of row r: its CSR edges [s, s + n), all in the block's columns
            assert torch.equal(col_blk[k0:k1], col[s : s + k1 - k0])
            assert bool(((col_blk[k0:k1] >= lo) & (col_blk[k0:k1] < hi)).all())
            row_cols = col[int(crow[r]) : int(crow[r + 1])]
            assert k1 - k0 == int(((row_cols >= lo) & (row_cols < hi)).sum())


@needs_ext
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("batch", [0, 1, 5, 16, 17, 40])
@pytest.mark.parametrize("n_blocks", [2, 5])
def test_blocked_backward_equals_the_dense_reference(dtype, batch, n_blocks):
    crow, col = _random_pattern(29, 37, 300, seed=batch)
    gen = torch.Generator().manual_seed(batch)
    w = torch.randn(300, generator=gen, dtype=torch.float64)
    x = torch.randn(37, batch, generator=gen, dtype=torch.float64)
    g = torch.randn(29, batch, generator=gen, dtype=torch.float64)
    rows = torch.repeat_interleave(torch.arange(29), crow.diff().long())
    dense = torch.zeros(29, 37, dtype=torch.float64).index_put((rows, col.long()), w)
    ref_gw = (g @ x.t())[rows, col.long()]
    ref_gx = dense.t() @ g
    crow_blk, col_blk, run = _ext.block_layout(crow, col, 37, n_blocks)
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {}
    args = (w.to(dtype), x.to(dtype).contiguous(), g.to(dtype))
    gw, gx = _ext.backward(crow_blk, col_blk, *args, 37, want_gw=True, want_gx=True, run=run,
                           recycle=False)
    torch.testing.assert_close(gw.double(), ref_gw, **tol)
    torch.testing.assert_close(gx.double(), ref_gx, **tol)
    only_w, none = _ext.backward(crow_blk, col_blk, *args, 37, want_gw=True, want_gx=False,
                                 run=run, recycle=False)
    assert none is None
    torch.testing.assert_close(only_w.double(), ref_gw, **tol)
    # into a batch-major output gradient, as the layer passes it
    out = torch.full((batch, 37), float("nan"), dtype=dtype)
    _ext.backward(crow_blk, col_blk, args[0], args[1], args[2].t().contiguous().t(), 37,
                  want_gw=False, want_gx=True, run=run, out=out.t())
    torch.testing.assert_close(out.t().double(), ref_gx, **tol)


@needs_ext
def test_no_edges_in_blocks():
    crow = torch.zeros(5, dtype=torch.int32)
    col = torch.zeros(0, dtype=torch.int32)
    crow_blk, col_blk, run = _ext.block_layout(crow, col, 6, 3)
    assert crow_blk.abs().sum() == 0 and col_blk.numel() == 0
    gw, gx = _ext.backward(crow_blk, col_blk, torch.zeros(0), torch.randn(6, 4),
                           torch.randn(4, 4), 6, want_gw=True, want_gx=True, run=run)
    assert gw.numel() == 0 and torch.equal(gx, torch.zeros(6, 4))


def test_policy_blocks_only_tables_that_outgrow_the_cache(monkeypatch):
    monkeypatch.setattr(kernels, "CACHE_BYTES", 48 << 20)
    fly = {"n_in": 138_639, "n_out": 138_639, "nnz": 15_091_983, "itemsize": 4}
    assert policy.column_blocks(**fly, batch=16, tables=3) == 1  # 27 MB: fits
    assert policy.column_blocks(**fly, batch=32, tables=3) == 4  # 53 MB: thirds of 48 MB
    assert policy.column_blocks(**fly, batch=16, tables=1) == 1
    # rows 8 edges long at most per block: 109 edges per row allow 13
    assert policy.column_blocks(**fly, batch=64, tables=9) == 13
    # a row costs at least a cache line: batch 1 counts as 16 floats
    assert policy.column_blocks(**fly, batch=1, tables=3) == 1
    # a small cache: blocks of 8 MiB at least (27 MB of tables in 4, not 10)
    monkeypatch.setattr(kernels, "CACHE_BYTES", 8 << 20)
    assert policy.column_blocks(**fly, batch=16, tables=3) == 4
    monkeypatch.setattr(kernels, "CACHE_BYTES", 0)
    assert policy.column_blocks(**fly, batch=64, tables=9) == 1  # 0 disables blocks
    assert policy.column_blocks(10, 0, 0, 16, 4, 3) == 1


def test_detected_cache_size_is_plausible():
    assert (256 << 10) <= policy._detected_cache_bytes() <= (4 << 30)


@needs_ext
@pytest.mark.parametrize("bias", [True, False])
def test_layer_in_blocks_matches_gradcheck_and_unblocked(small_cache, bias):
    conn = Connectivity.random(12, 40, density=0.4, seed=2)
    layer = SparseLinear(40, 12, conn, bias=bias, mode="sparse").double()
    x = torch.randn(3, 7, 40, dtype=torch.float64, requires_grad=True)
    args = (layer.weight, layer.bias) if bias else (layer.weight,)

    def f(x, *params):
        return torch.func.functional_call(layer, dict(zip(("weight", "bias"), params)), (x,))

    assert torch.autograd.gradcheck(f, (x, *args))
    crow, col = layer.crow_indices, layer.col_indices
    assert _kept(crow, col).n_blocks > 1  # the check ran in blocks


@needs_ext
def test_layer_results_do_not_depend_on_blocks(monkeypatch):
    conn = Connectivity.random(300, 500, density=0.05, seed=4)
    x = torch.randn(16, 500, requires_grad=True)
    results = []
    for cache in (0, 1024):
        monkeypatch.setattr(kernels, "CACHE_BYTES", cache)
        torch.manual_seed(0)
        layer = SparseLinear(500, 300, conn, mode="sparse")
        x.grad = None
        layer(x).pow(2).sum().backward()
        results.append((layer.weight.grad.clone(), x.grad.clone()))
        built = _kept(layer.crow_indices, layer.col_indices)
        assert (built is not None) == (cache > 0)
    # the same sums, some reduced in another order
    assert not torch.equal(results[0][1], torch.zeros_like(results[0][1]))
    torch.testing.assert_close(results[0][0], results[1][0])
    torch.testing.assert_close(results[0][1], results[1][1])


@needs_ext
def test_layout_is_built_once_rebuilt_on_change_and_freed(small_cache):
    conn = Connectivity.random(50, 60, density=0.3, seed=5)
    layer = SparseLinear(60, 50, conn, mode="sparse")
    del conn
    x = torch.randn(8, 60, requires_grad=True)
    crow, col = layer.crow_indices, layer.col_indices
    layer(x).sum().backward()
    first = _kept(crow, col)
    assert first is not None
    layer(x).sum().backward()
    assert _kept(crow, col) is first  # kept between steps
    with torch.no_grad():
        col.copy_(col)  # any in-place change of the pattern invalidates the layout
    assert _kept(crow, col) is None
    layer(x).sum().backward()
    assert _kept(crow, col) is not None
    key = id(col)
    assert key in _blocks._caches
    del layer, crow, col, first
    gc.collect()
    assert key not in _blocks._caches  # freed with the pattern


@needs_ext
def test_layout_is_dropped_when_a_backward_pass_runs_without_blocks(monkeypatch):
    layer = SparseLinear(60, 50, Connectivity.random(50, 60, density=0.3, seed=5), mode="sparse")
    x = torch.randn(8, 60, requires_grad=True)
    crow, col = layer.crow_indices, layer.col_indices
    monkeypatch.setattr(kernels, "CACHE_BYTES", 1024)
    layer(x).sum().backward()
    assert _kept(crow, col) is not None
    monkeypatch.setattr(kernels, "CACHE_BYTES", 0)
    layer(x).sum().backward()
    assert _kept(crow, col) is None


@needs_ext
def test_one_layout_with_and_without_input_gradient(small_cache):
    layer = SparseLinear(200, 30, Connectivity.random(30, 200, density=0.3, seed=8), mode="sparse")
    crow, col = layer.crow_indices, layer.col_indices
    built = []
    original = _ext.block_layout
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_ext, "block_layout", lambda *a: built.append(a[-1]) or original(*a))
        for needs_grad in (True, False, True, False):
            layer(torch.randn(16, 200, requires_grad=needs_grad)).sum().backward()
    assert len(built) == 1 and built[0] > 1  # built once, reused by both kinds of pass
    assert _kept(crow, col).n_blocks == built[0]


@needs_ext
def test_blocks_with_batch_sweeps_and_long_runs(monkeypatch):
    # 150 edges per row: the 8-edge groups of the AVX2 dot products run inside each block
    crow, col = _random_pattern(13, 203, 1500, seed=9)
    gen = torch.Generator().manual_seed(9)
    w = torch.randn(1500, generator=gen)
    x = torch.randn(203, 40, generator=gen)
    g = torch.randn(13, 40, generator=gen)
    rows = torch.repeat_interleave(torch.arange(13), crow.diff().long())
    dense = torch.zeros(13, 203).index_put((rows, col.long()), w)
    monkeypatch.setattr(_ext, "SWEEP_BYTES", 203 * 8 * 4 * 2)  # sweeps of 8 batch columns
    assert _ext.sweep_width(203, 40, 4, 2) == 8
    crow_blk, col_blk, run = _ext.block_layout(crow, col, 203, 3)
    gw, gx = _ext.backward(crow_blk, col_blk, w, x, g, 203, want_gw=True, want_gx=True, run=run)
    torch.testing.assert_close(gw, (g @ x.t())[rows, col.long()], rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(gx, dense.t() @ g, rtol=1e-5, atol=1e-4)


@needs_ext
def test_mismatched_block_arguments_are_refused():
    crow, col = _random_pattern(9, 12, 40, seed=1)
    crow_blk, col_blk, _ = _ext.block_layout(crow, col, 12, 2)
    x, g = torch.randn(12, 4), torch.randn(9, 4)
    with pytest.raises(ValueError, match="column blocks"):
        _ext.backward(crow_blk, col_blk, torch.randn(40), x, g, 12, want_gw=True, want_gx=False)
    with pytest.raises(ValueError, match="index dtype"):
        _ext.block_layout(crow.long(), col, 12, 2)


@needs_ext
def test_estimate_counts_the_layout(monkeypatch):
    conn = Connectivity.random(200, 300, density=0.2, seed=7)
    layer = SparseLinear(300, 200, conn, mode="sparse")
    kwargs = {"batch_size": 16, "optimizer": "adam", "input_requires_grad": True}
    monkeypatch.setattr(kernels, "CACHE_BYTES", 0)
    plain = memory.estimate(layer, **kwargs).layers[0].sparse["pattern"]
    monkeypatch.setattr(kernels, "CACHE_BYTES", 1024)
    blocked = memory.estimate(layer, **kwargs).layers[0].sparse["pattern"]
    n_blocks = policy.column_blocks(300, 200, conn.nnz, 16, 4, 1 + torch.get_num_threads())
    assert n_blocks > 1
    assert blocked - plain == policy.layout_bytes(200, conn.nnz, n_blocks, 4)
    # and the layout the layer builds has that size
    layer(torch.randn(16, 300, requires_grad=True)).sum().backward()
    built = _kept(layer.crow_indices, layer.col_indices)
    assert built.n_blocks == n_blocks
    size = sum(t.numel() * t.element_size() for t in (built.crow, built.col, built.run))
    assert size == policy.layout_bytes(200, conn.nnz, n_blocks, 4)


def test_environment_sets_the_cache_size(monkeypatch):
    monkeypatch.setattr(kernels, "CACHE_BYTES", None)
    monkeypatch.setenv("SPARSELINEAR_CACHE_BYTES", "12345")
    assert policy.cache_bytes() == 12345
    monkeypatch.setattr(kernels, "CACHE_BYTES", 777)  # the attribute wins
    assert policy.cache_bytes() == 777
    monkeypatch.setattr(kernels, "CACHE_BYTES", None)
    monkeypatch.setenv("SPARSELINEAR_CACHE_BYTES", "lots")
    with pytest.raises(DataError, match="SPARSELINEAR_CACHE_BYTES.*'lots'"):
        policy.cache_bytes()
    monkeypatch.delenv("SPARSELINEAR_CACHE_BYTES")
    assert policy.cache_bytes() == policy._detected_cache_bytes()
