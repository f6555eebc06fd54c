import copy
import io

import numpy as np
import pytest
import scipy.sparse
import torch
from conftest import DEVICES, dense_reference, needs_ext, random_pattern_indices
from torch import nn

from sparselinear import Connectivity, SparseLinear, kernels
from sparselinear.errors import (
    InsufficientMemoryError,
    PatternError,
    ShapeError,
    SparseLinearError,
    WiringMismatchError,
)
from sparselinear.ops.policy import FUSED_MAX_BATCH
from sparselinear.pattern.caches import transpose_order

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def make_layer(out=12, n_in=9, density=0.3, seed=0, **kw):
    idx = random_pattern_indices(out, n_in, density, seed)
    return SparseLinear(n_in, out, Connectivity(idx, shape=(out, n_in)), **kw)


def test_parameters_and_buffers():
    layer = make_layer()
    c = layer.connectivity
    assert layer.weight.shape == (c.nnz,) and layer.bias.shape == (12,)
    assert [n for n, _ in layer.named_parameters()] == ["weight", "bias"]
    assert {n for n, _ in layer.named_buffers()} == {"crow_indices", "col_indices"}
    assert layer.nnz == c.nnz
    r = repr(layer)
    assert f"nnz={c.nnz}" in r and "in_features=9, out_features=12" in r and "density=" in r


def test_weight_is_aligned_with_indices():
    layer = make_layer().double()
    idx = layer.connectivity.indices()
    dense = layer.to_dense()
    assert torch.equal(dense[idx[0], idx[1]], layer.weight)
    off = torch.ones_like(dense, dtype=torch.bool)
    off[idx[0], idx[1]] = False
    assert not dense[off].any()


def test_accepts_any_connectivity_source():
    mask = np.random.default_rng(0).random((5, 4)) < 0.5
    for source in (mask, scipy.sparse.csr_matrix(mask), torch.from_numpy(mask)):
        layer = SparseLinear(4, 5, source)
        assert layer.connectivity == Connectivity(mask)


def test_init_uses_each_outputs_real_fan_in():
    torch.manual_seed(0)
    idx = torch.tensor([[0] * 4 + [1] * 400, list(range(4)) + list(range(400))])
    layer = SparseLinear(400, 3, Connectivity(idx, shape=(3, 400)))
    w = layer.weight.detach()
    assert w[:4].abs().max() <= 0.5 and w[:4].abs().max() > 0.05  # 1/sqrt(4)
    assert w[4:].abs().max() <= 0.05 and w[4:].abs().max() > 0.04  # 1/sqrt(400)
    assert layer.bias[2] == 0  # output 2 has no inputs
    before = layer.weight.detach().clone()
    layer.reset_parameters()
    assert not torch.equal(before, layer.weight)


def test_no_bias():
    layer = make_layer(bias=False).double()
    assert layer.bias is None and "bias=False" in repr(layer)
    x = torch.randn(3, 9, dtype=torch.float64)
    torch.testing.assert_close(layer(x), x @ layer.to_dense().t())
    assert len(list(layer.parameters())) == 1


@pytest.mark.parametrize("lead", [(), (4,), (2, 3)])
def test_leading_dimensions(lead):
    layer = make_layer().double()
    x = torch.randn(*lead, 9, dtype=torch.float64)
    torch.testing.assert_close(layer(x), x @ layer.to_dense().t() + layer.bias)


@pytest.mark.parametrize(
    "make_opt",
    [
        lambda p: torch.optim.Adam(p, lr=0.1),
        lambda p: torch.optim.AdamW(p, lr=0.1, weight_decay=0.5),
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
    ],
    ids=["adam", "adamw", "sgd-momentum"],
)
def test_optimizers_keep_off_pattern_entries_exactly_zero(make_opt):
    torch.manual_seed(0)
    layer = make_layer(out=10, n_in=8, density=0.3)
    mask = layer.connectivity.to_dense()
    opt = make_opt(layer.parameters())
    x, target = torch.randn(32, 8), torch.randn(32, 10)
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss = (layer(x) - target).square().mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    dense = layer.to_dense().detach()
    assert torch.count_nonzero(dense[~mask]) == 0
    assert losses[-1] < losses[0]


def test_to_device_and_dtype_carry_the_pattern():
    layer = make_layer()
    d = layer.double()
    assert d.weight.dtype == torch.float64 and d.col_indices.dtype == torch.int32
    m = make_layer().to("meta")
    assert m.connectivity.device.type == "meta" and m.weight.device.type == "meta"
    assert SparseLinear(9, 12, make_layer().connectivity, device="meta").col_indices.is_meta


def test_state_dict_round_trip_through_torch_save():
    layer = make_layer()
    buf = io.BytesIO()
    torch.save(layer.state_dict(), buf)
    buf.seek(0)
    fresh = SparseLinear(9, 12, layer.connectivity)
    fresh.load_state_dict(torch.load(buf))
    x = torch.randn(4, 9)
    torch.testing.assert_close(fresh(x), layer(x))
    sd = layer.state_dict()
    assert "crow_indices" in sd and "col_indices" in sd
    assert set(sd) == {"weight", "bias", "crow_indices", "col_indices", "_extra_state"}


def test_checkpoint_from_other_wiring_with_same_nnz_is_refused():
    a = SparseLinear(50, 40, Connectivity.random(40, 50, nnz=200, seed=1))
    b = SparseLinear(50, 40, Connectivity.random(40, 50, nnz=200, seed=2))
    weights_before = b.weight.detach().clone()
    with pytest.raises(WiringMismatchError, match=r"different wiring.*nnz=200.*digest"):
        b.load_state_dict(a.state_dict())
    assert torch.equal(b.weight, weights_before)  # nothing was copied
    net = nn.Sequential(a)
    with pytest.raises(WiringMismatchError, match="'0.'"):
        nn.Sequential(b).load_state_dict(net.state_dict())


def test_checkpoint_pattern_rebuilds_the_layer():
    a = make_layer()
    sd = a.state_dict()
    c = Connectivity.from_csr(sd["crow_indices"], sd["col_indices"], (12, 9))
    b = SparseLinear(9, 12, c)
    b.load_state_dict(sd)
    torch.testing.assert_close(b.to_dense(), a.to_dense())


def test_to_scipy_export():
    layer = make_layer().double()
    s = layer.to_scipy()
    assert s.shape == (12, 9)
    np.testing.assert_allclose(s.toarray(), layer.to_dense().detach().numpy())


def test_shape_disagreement_with_features():
    c = Connectivity.random(5, 4, nnz=3, seed=0)
    with pytest.raises(ShapeError, match=r"shape \(5, 4\).*out_features=4, in_features=5.*\.T"):
        SparseLinear(5, 4, c)
    with pytest.raises(ShapeError, match="requested"):
        SparseLinear(5, 4, np.ones((5, 4), dtype=bool))


@pytest.mark.parametrize("device", DEVICES)
def test_layer_trains_on_device(device):
    torch.manual_seed(0)
    layer = make_layer(device=device)
    assert layer.col_indices.device.type == device
    opt = torch.optim.Adam(layer.parameters(), lr=0.05)
    x = torch.randn(16, 9, device=device)
    loss0 = layer(x).square().mean().item()
    for _ in range(10):
        opt.zero_grad()
        layer(x).square().mean().backward()
        opt.step()
    assert layer(x).square().mean().item() < loss0


def test_reset_parameters_keeps_constraints_and_redraws():
    from sparselinear.constraints import Sign, constrain

    torch.manual_seed(0)
    layer = make_layer(out=30, n_in=20, density=0.5)
    signs = torch.where(torch.arange(layer.nnz) % 2 == 0, 1.0, -1.0)
    constrain(layer, Sign(signs))
    before = layer.weight.detach().clone()
    layer.reset_parameters()
    after = layer.weight.detach()
    assert not torch.equal(before, after)
    assert torch.all(after * signs > 0)
    bound = layer.connectivity.fan_in().double().rsqrt()
    edge_bound = torch.repeat_interleave(bound, layer.connectivity.fan_in().long())
    assert torch.all(after.abs() <= edge_bound.float() + 1e-6)


def test_checkpoint_without_the_pattern_is_refused():
    a = make_layer()
    sd = {k: v for k, v in a.state_dict().items() if k != "col_indices"}
    b = make_layer(seed=1)
    with pytest.raises(WiringMismatchError, match="not the pattern.*col_indices"):
        b.load_state_dict(sd, strict=False)


# ---------------------------------------------------------------- the transposed pattern, lazily
def holds_transposed(layer: SparseLinear) -> bool:
    return layer._transpose_cache.peek(layer.crow_indices, layer.col_indices) is not None


def step_matches_dense_reference(layer: SparseLinear, x: torch.Tensor) -> None:
    """One forward and backward of ``sum(y * probe)``, checked against float64 dense algebra."""
    x = x.detach().requires_grad_()
    layer.zero_grad(set_to_none=True)
    y = layer(x)
    probe = torch.linspace(-1, 1, y.numel(), dtype=y.dtype, device=y.device).view_as(y)
    (y * probe).sum().backward()
    x64, w64, b64 = (t.detach().double().requires_grad_() for t in (x, layer.weight, layer.bias))
    indices = layer.connectivity.indices()
    y64 = dense_reference(x64, w64, indices, (layer.out_features, layer.in_features), b64)
    (y64 * probe.double()).sum().backward()
    for got, want in ((y, y64), (x.grad, x64.grad), (layer.weight.grad, w64.grad),
                      (layer.bias.grad, b64.grad)):
        torch.testing.assert_close(got.double(), want, rtol=1e-10, atol=1e-10)


def make_sparse_layer(**kw):
    return make_layer(mode="sparse", dtype=torch.float64, **kw)


def test_a_fresh_layer_holds_only_the_csr():
    layer = make_sparse_layer()
    c = layer.connectivity
    assert layer._transpose_cache._entry is None and not holds_transposed(layer)
    assert sum(b.numel() for b in layer.buffers()) == (layer.out_features + 1) + c.nnz
    assert not c._transpose_cache.peek(*c._fields())


@needs_ext
@pytest.mark.parametrize("batch", [1, FUSED_MAX_BATCH])
def test_the_fused_compiled_backward_does_not_build_the_transposed_pattern(batch):
    layer = make_sparse_layer()
    with kernels.use_backend("extension"):
        step_matches_dense_reference(layer, torch.randn(batch, 9, dtype=torch.float64))
    assert not holds_transposed(layer)


@pytest.mark.parametrize("mode", ["sparse", "dense"])
def test_no_input_gradient_or_dense_bands_need_no_transposed_pattern(mode):
    layer = make_layer(mode=mode, dtype=torch.float64)
    with kernels.use_backend("torch"):
        layer(torch.randn(4, 9, dtype=torch.float64)).sum().backward()  # input needs no grad
        if mode == "dense":
            step_matches_dense_reference(layer, torch.randn(4, 9, dtype=torch.float64))
    assert layer.weight.grad is not None and not holds_transposed(layer)


@pytest.mark.parametrize(
    "backend, batch",
    [("torch", 4), pytest.param("extension", FUSED_MAX_BATCH + 1, marks=needs_ext)],
)
def test_a_backward_that_reads_the_transposed_pattern_builds_it_once(backend, batch):
    layer = make_sparse_layer()
    x = torch.randn(batch, 9, dtype=torch.float64)
    with kernels.use_backend(backend):
        step_matches_dense_reference(layer, x)
        assert holds_transposed(layer)
        triple = layer.connectivity.transposed_csr()
        step_matches_dense_reference(layer, x)
    assert layer.connectivity.transposed_csr() is triple
    assert (layer.crow_indices_t, layer.row_indices_t, layer.transpose_perm) == triple
    rebuilt = transpose_order(layer.crow_indices, layer.col_indices, layer.in_features)
    for got, want in zip(triple, rebuilt, strict=True):
        assert torch.equal(got, want)
    assert {n for n, _ in layer.named_buffers()} == {"crow_indices", "col_indices"}


def test_the_transposed_pattern_follows_buffers_replaced_or_loaded_in_place():
    a, b = make_sparse_layer(), make_sparse_layer()
    x = torch.randn(5, 9, dtype=torch.float64)
    with kernels.use_backend("torch"):
        step_matches_dense_reference(a, x)
        a.load_state_dict(b.state_dict())  # copies into the buffers: their versions move on
        assert not holds_transposed(a)
        step_matches_dense_reference(a, x)
        torch.testing.assert_close(a(x), b(x))
        assert holds_transposed(a)
        a.float().double()  # index buffers are left alone: the cache stays valid
        assert holds_transposed(a)
        a.col_indices = a.col_indices.clone()
        assert not holds_transposed(a)
        step_matches_dense_reference(a, x)


def test_copies_of_a_layer_start_without_the_transposed_pattern():
    layer = make_sparse_layer()
    x = torch.randn(3, 9, dtype=torch.float64)
    with kernels.use_backend("torch"):
        step_matches_dense_reference(layer, x)
        buf = io.BytesIO()
        torch.save(layer, buf)
        buf.seek(0)
        for clone in (copy.deepcopy(layer), torch.load(buf, weights_only=False)):
            assert not holds_transposed(clone)
            step_matches_dense_reference(clone, x)
            assert holds_transposed(clone)


@pytest.mark.cuda
@needs_cuda
def test_the_transposed_pattern_is_rebuilt_after_a_device_move():
    layer = make_sparse_layer()
    x = torch.randn(4, 9, dtype=torch.float64)
    with kernels.use_backend("torch"):
        step_matches_dense_reference(layer, x)
        assert layer.transpose_perm.device.type == "cpu"
        layer.cuda()
        assert not holds_transposed(layer)
        step_matches_dense_reference(layer, x.cuda())
        assert all(t.is_cuda for t in layer.connectivity.transposed_csr())
        layer.cpu()
        assert not holds_transposed(layer)
        step_matches_dense_reference(layer, x)
        assert layer.transpose_perm.device.type == "cpu"


# ---------------------------------------------------------------------- indices that changed
@pytest.mark.parametrize("assign", [False, True])
@pytest.mark.parametrize("crow_dtype,col_dtype", [(torch.int32, torch.int64),
                                                  (torch.int64, torch.int32)])
def test_checkpoint_with_mixed_index_dtypes_loads_in_the_layers_dtype(assign, crow_dtype,
                                                                      col_dtype):
    c = Connectivity.random(40, 30, density=0.2, seed=1)
    src = SparseLinear(30, 40, c)
    sd = src.state_dict()
    sd["crow_indices"] = sd["crow_indices"].to(crow_dtype)
    sd["col_indices"] = sd["col_indices"].to(col_dtype)
    layer = SparseLinear(30, 40, c)
    layer.load_state_dict(sd, assign=assign)
    assert layer.crow_indices.dtype == layer.col_indices.dtype == c.index_dtype
    x = torch.randn(5, 30)
    torch.testing.assert_close(layer(x), src(x))


def test_checkpoint_with_a_float_pattern_is_refused():
    c = Connectivity.tril(4, 4)
    sd = SparseLinear(4, 4, c).state_dict()
    sd["col_indices"] = sd["col_indices"].double()
    with pytest.raises(WiringMismatchError, match="'col_indices' as Tensor.*integer"):
        SparseLinear(4, 4, c).load_state_dict(sd)


@pytest.mark.parametrize("change", ["col out of range", "negative col", "crow decreases",
                                    "unsorted row", "dtype"])
def test_indices_written_in_place_are_refused_before_any_kernel(change):
    layer = SparseLinear(6, 5, Connectivity.random(5, 6, density=0.6, seed=0))
    x = torch.randn(3, 6)
    layer(x)  # checked once, then cached while unchanged
    with torch.no_grad():
        if change == "col out of range":
            layer.col_indices[0] = 10**6
        elif change == "negative col":
            layer.col_indices[-1] = -1
        elif change == "crow decreases":
            layer.crow_indices[2] = layer.crow_indices[3] + 1
        elif change == "unsorted row":
            row = int(torch.argmax(layer.crow_indices.diff()))
            k = int(layer.crow_indices[row])
            a, b = int(layer.col_indices[k]), int(layer.col_indices[k + 1])
            layer.col_indices[k], layer.col_indices[k + 1] = b, a
        else:
            layer.col_indices = layer.col_indices.to(torch.int64)
    with pytest.raises(SparseLinearError, match="crow_indices|col_indices"):
        layer(x)


def test_a_valid_in_place_change_is_checked_and_used():
    layer = SparseLinear(4, 3, Connectivity.diagonal(3, 4), bias=False)
    x = torch.randn(2, 4)
    layer(x)
    with torch.no_grad():
        layer.col_indices[0] = 3  # row 0 now reads input 3: still canonical
    torch.testing.assert_close(layer(x)[:, 0], layer.weight[0] * x[:, 3])


# ---------------------------------------------------------------------- names are wiring
def test_checkpoint_for_differently_named_neurons_is_refused():
    diag = Connectivity.diagonal(2, 2)
    mine = SparseLinear(2, 2, diag.with_names(["ASHL", "ASHR"], ["ASHL", "ASHR"]))
    other = SparseLinear(2, 2, diag.with_names(["gene1", "gene2"], ["gene1", "gene2"]))
    before = mine.weight.detach().clone()
    with pytest.raises(WiringMismatchError, match=r"out_names\[0\] is 'gene1' there and 'ASHL'"):
        mine.load_state_dict(other.state_dict())
    assert mine.out_names == ("ASHL", "ASHR")
    assert torch.equal(mine.weight, before)  # nothing was copied
    mine.load_state_dict(SparseLinear(2, 2, diag.with_names(["ASHL", "ASHR"])).state_dict())
    sd = other.state_dict()
    sd["_extra_state"] = None  # values by index, on purpose
    mine.load_state_dict(sd)
    assert mine.out_names == ("ASHL", "ASHR") and torch.equal(mine.weight, other.weight)


# ---------------------------------------------------------------------- the meta device
def test_meta_device_to_empty_then_checkpoint():
    c = Connectivity.random(50, 40, density=0.1, seed=3)
    trained = SparseLinear(40, 50, c)
    layer = SparseLinear(40, 50, c, device="meta")
    assert layer.weight.is_meta and layer.crow_indices.is_meta
    assert layer(torch.randn(2, 40, device="meta")).shape == (2, 50)  # shapes only
    layer.to_empty(device="cpu")
    with pytest.raises(PatternError, match="meta device"):
        layer(torch.randn(2, 40))  # to_empty alone leaves the indices unknown
    layer.load_state_dict(trained.state_dict())
    x = torch.randn(3, 40)
    torch.testing.assert_close(layer(x), trained(x))
    assert layer.connectivity == c


def test_meta_layer_refuses_a_checkpoint_of_another_size():
    layer = SparseLinear(40, 50, Connectivity.random(50, 40, nnz=100, seed=0), device="meta")
    layer.to_empty(device="cpu")
    other = SparseLinear(40, 50, Connectivity.random(50, 40, nnz=99, seed=0))
    with pytest.raises(WiringMismatchError, match="different wiring"):
        layer.load_state_dict(other.state_dict())


def test_to_dense_of_a_layer_too_large_for_memory_names_the_size(monkeypatch):
    layer = SparseLinear(300, 200, Connectivity.random(200, 300, nnz=10, seed=0))

    def refuse(*args, **kwargs):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory")

    monkeypatch.setattr(torch.Tensor, "new_zeros", refuse)
    with pytest.raises(InsufficientMemoryError, match=r"200 x 300 values = 0\.0 GiB"):
        layer.to_dense()


def test_meta_layer_propagates_shapes_of_meta_inputs():
    layer = SparseLinear(40, 50, Connectivity.random(50, 40, nnz=100, seed=0), device="meta")
    y = layer(torch.empty(7, 3, 40, device="meta"))
    assert y.is_meta and y.shape == (7, 3, 50)
    with pytest.raises(ShapeError, match=r"\(\.\.\., 40\)"):
        SparseLinear(40, 50, Connectivity.random(50, 40, nnz=100, seed=0))(
            torch.empty(7, 39, device="meta")
        )


# ---------------------------------------------------------------------- tensors only
def test_state_dict_holds_tensors_only_and_clones():
    layer = SparseLinear(3, 3, Connectivity.diagonal(3, 3).with_names(["a", "b", "c"]))
    sd = layer.state_dict()
    assert all(isinstance(v, torch.Tensor) for v in sd.values())
    fresh = SparseLinear(3, 3, Connectivity.diagonal(3, 3))
    fresh.load_state_dict({k: v.clone() for k, v in sd.items()})
    assert fresh.out_names == ("a", "b", "c") and torch.equal(fresh.weight, layer.weight)


def test_safetensors_round_trip_keeps_names_and_the_wiring_check(tmp_path):
    from safetensors.torch import load_model, save_model

    from sparselinear.datasets import load_celegans

    conn, _ = load_celegans("chemical")
    layer = SparseLinear(309, 309, conn)
    path = tmp_path / "celegans.safetensors"
    save_model(layer, str(path))
    unnamed = SparseLinear(309, 309, Connectivity.from_csr(conn.crow_indices(),
                                                           conn.col_indices(), conn.shape))
    load_model(unnamed, str(path))
    assert unnamed.out_names == conn.out_names and torch.equal(unnamed.weight, layer.weight)
    renamed = SparseLinear(309, 309, conn.with_names([f"n{i}" for i in range(309)],
                                                     [f"n{i}" for i in range(309)]))
    with pytest.raises(WiringMismatchError, match="differently named nodes"):
        load_model(renamed, str(path))


def test_integer_node_ids_survive_a_checkpoint():
    ids = np.array([720575940000000001, 720575940000000002], dtype=np.int64)
    named = Connectivity.diagonal(2, 2).with_names(ids, ids)
    layer = SparseLinear(2, 2, named)
    fresh = SparseLinear(2, 2, Connectivity.diagonal(2, 2))
    fresh.load_state_dict(layer.state_dict())
    assert np.array_equal(np.asarray(fresh.out_names), ids)


def test_damaged_name_bytes_are_refused():
    layer = SparseLinear(2, 2, Connectivity.diagonal(2, 2).with_names(["a", "b"]))
    sd = layer.state_dict()
    sd["_extra_state"] = torch.tensor([255, 254], dtype=torch.uint8)
    with pytest.raises(WiringMismatchError, match="not the UTF-8 JSON"):
        layer.load_state_dict(sd)
