"""Forward and every gradient against a float64 dense masked reference."""

import pytest
import torch
from conftest import DEVICES, dense_reference, random_pattern_indices

from sparselinear import Connectivity, kernels
from sparselinear.errors import (
    DeviceMismatchError,
    ShapeError,
    SparseLinearTypeError,
)
from sparselinear.functional import sparse_linear
from sparselinear.ops import torch_kernels

CASES = [  # (out, in, density, input leading shape)
    (7, 5, 0.4, (3,)),
    (4, 11, 0.3, ()),
    (9, 3, 0.5, (2, 3)),
    (6, 6, 0.0, (4,)),  # nnz = 0
    (1, 8, 1.0, (5,)),
]


def _params(out, n_in, density, seed, device="cpu", bias=True):
    idx = random_pattern_indices(out, n_in, density, seed)
    c = Connectivity(idx, shape=(out, n_in)).to(device)
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(c.nnz, generator=g, dtype=torch.float64).to(device).requires_grad_()
    b = (
        torch.randn(out, generator=g, dtype=torch.float64).to(device).requires_grad_()
        if bias
        else None
    )
    return c, w, b


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("out,n_in,density,lead", CASES)
@pytest.mark.parametrize("bias", [True, False])
def test_forward_matches_dense_reference(device, out, n_in, density, lead, bias):
    c, w, b = _params(out, n_in, density, seed=out * n_in, device=device, bias=bias)
    x = torch.randn(*lead, n_in, dtype=torch.float64, device=device)
    y = sparse_linear(x, w, c, b)
    assert y.shape == (*lead, out)
    ref = dense_reference(x, w, c.indices().to(device), c.shape, b)
    torch.testing.assert_close(y, ref)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("out,n_in,density,lead", CASES)
def test_gradcheck_input_weight_bias(device, out, n_in, density, lead):
    c, w, b = _params(out, n_in, density, seed=out + n_in, device=device)
    x = torch.randn(*lead, n_in, dtype=torch.float64, device=device, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: sparse_linear(x, w, c, b), (x, w, b))


@pytest.mark.parametrize("out,n_in,density,lead", CASES)
def test_gradients_equal_dense_masked_gradients(out, n_in, density, lead):
    c, w, b = _params(out, n_in, density, seed=7)
    x = torch.randn(*lead, n_in, dtype=torch.float64, requires_grad=True)
    grads = torch.autograd.grad(sparse_linear(x, w, c, b).square().sum(), (x, w, b))
    x2 = x.detach().requires_grad_()
    w2, b2 = w.detach().requires_grad_(), b.detach().requires_grad_()
    ref = torch.autograd.grad(
        dense_reference(x2, w2, c.indices(), c.shape, b2).square().sum(), (x2, w2, b2)
    )
    for got, want in zip(grads, ref):
        torch.testing.assert_close(got, want)


def test_chunked_kernels_equal_unchunked(monkeypatch):
    c, w, b = _params(40, 30, 0.3, seed=3)
    x = torch.randn(8, 30, dtype=torch.float64, requires_grad=True)
    calls = []
    real_csr = torch_kernels._csr
    monkeypatch.setattr(torch_kernels, "_csr", lambda *a: calls.append(1) or real_csr(*a))

    def grads():
        with kernels.use_backend("torch"):  # the chunked pure-PyTorch kernels
            y = sparse_linear(x, w, c, b, mode="sparse")
            return torch.autograd.grad(y.sum(), (x, w, b))

    whole = grads()
    assert len(calls) == 3  # forward, grad input, grad weight: one chunk each
    monkeypatch.setattr(kernels, "CHUNK_BYTES", 8 * 8 * 5)  # ~5 edges per chunk
    chunks = list(torch_kernels._row_chunks(c.crow_indices(), 8, 8, 8 * 8 * 5))
    assert len(chunks) > 10
    assert chunks[0][0] == 0 and chunks[-1][1] == 40
    assert all(a[1] == b_[0] and a[3] == b_[2] for a, b_ in zip(chunks, chunks[1:]))
    chunked = grads()
    assert len(calls) > 3 + 3 * 10
    for got, want in zip(chunked, whole):
        torch.testing.assert_close(got, want)


def test_int64_indices_give_the_same_result():
    c, w, b = _params(9, 7, 0.4, seed=1)
    c64 = Connectivity(c, index_dtype=torch.int64)
    x = torch.randn(5, 7, dtype=torch.float64, requires_grad=True)
    g32 = torch.autograd.grad(sparse_linear(x, w, c, b).sum(), (x, w))
    g64 = torch.autograd.grad(sparse_linear(x, w, c64, b).sum(), (x, w))
    for a, b_ in zip(g32, g64):
        torch.testing.assert_close(a, b_)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_low_precision_on_cpu_computes_in_float32(dtype):
    c, w, b = _params(6, 5, 0.5, seed=2)
    x = torch.randn(4, 5, dtype=torch.float64)
    y = sparse_linear(x.to(dtype), w.detach().to(dtype), c, b.detach().to(dtype))
    assert y.dtype == dtype
    ref = dense_reference(x, w.detach(), c.indices(), c.shape, b.detach())
    tol = {torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 5e-2}[dtype]
    torch.testing.assert_close(y.double(), ref, atol=tol * 10, rtol=tol)


def test_nan_in_input_does_not_leak_into_unrelated_gradients():
    c = Connectivity.from_indices(torch.tensor([[0, 1], [0, 1]]), shape=(2, 2))
    w = torch.tensor([1.0, float("nan")], requires_grad=True)
    x = torch.ones(3, 2, requires_grad=True)
    sparse_linear(x, w, c)[:, 0].sum().backward()
    assert torch.isfinite(w.grad[0])


# ------------------------------------------------------------------ errors
def test_wrong_last_dimension_names_both_numbers():
    c, w, b = _params(4, 6, 0.5, seed=0)
    with pytest.raises(ShapeError, match=r"\(\.\.\., 6\).*got last dimension 5"):
        sparse_linear(torch.randn(2, 5, dtype=torch.float64), w, c, b)
    with pytest.raises(ShapeError, match="got last dimension none"):
        sparse_linear(torch.tensor(1.0, dtype=torch.float64), w, c, b)


def test_non_floating_input():
    c, w, b = _params(4, 6, 0.5, seed=0)
    with pytest.raises(SparseLinearTypeError, match="floating-point.*int64"):
        sparse_linear(torch.ones(2, 6, dtype=torch.long), w, c, b)
    with pytest.raises(SparseLinearTypeError, match="must be a torch.Tensor"):
        sparse_linear([[1.0] * 6], w, c, b)


def test_dtype_mismatch():
    c, w, b = _params(4, 6, 0.5, seed=0)
    with pytest.raises(SparseLinearTypeError, match="float32 but 'weight' has dtype torch.float64"):
        sparse_linear(torch.ones(2, 6), w, c, b)


def test_weight_and_bias_shapes():
    c, w, b = _params(4, 6, 0.5, seed=0)
    x = torch.ones(2, 6, dtype=torch.float64)
    with pytest.raises(ShapeError, match=rf"'weight' must have shape \({c.nnz},\)"):
        sparse_linear(x, w[:-1], c, b)
    with pytest.raises(ShapeError, match=r"'bias' must have shape \(4,\)"):
        sparse_linear(x, w, c, b[:-1])
    with pytest.raises(SparseLinearTypeError, match="must be a Connectivity"):
        sparse_linear(x, w, c.indices(), b)


def test_device_mismatch():
    c, w, b = _params(4, 6, 0.5, seed=0)
    x = torch.ones(2, 6, dtype=torch.float64, device="meta")
    with pytest.raises(DeviceMismatchError, match="input on meta.*weight on cpu"):
        sparse_linear(x, w, c, b)


def test_second_order_gradients_are_computed_not_dropped():
    c, w, b = _params(5, 4, 0.5, seed=0)
    w = w.detach().requires_grad_(True)
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    (gx,) = torch.autograd.grad(sparse_linear(x, w, c, b).square().sum(), x, create_graph=True)
    (gw,) = torch.autograd.grad(gx.square().sum(), w)
    rows, cols = c.indices()
    dense = torch.zeros(5, 4, dtype=torch.float64).index_put((rows, cols), w.detach())
    dense.requires_grad_(True)
    (gx_ref,) = torch.autograd.grad((x @ dense.t() + b).square().sum(), x, create_graph=True)
    (gw_ref,) = torch.autograd.grad(gx_ref.square().sum(), dense)
    torch.testing.assert_close(gw, gw_ref[rows, cols])


def test_zero_input_features():
    c = Connectivity(torch.zeros(2, 0, dtype=torch.long), shape=(5, 0))
    b = torch.randn(5, dtype=torch.float64)
    y = sparse_linear(
        torch.randn(4, 0, dtype=torch.float64), torch.zeros(0, dtype=torch.float64), c, b
    )
    torch.testing.assert_close(y, b.expand(4, 5))
