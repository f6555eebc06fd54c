"""Tests of sparselinear.structured: triangular patterns and layers, positive definite layer."""

from __future__ import annotations

import resource

import numpy as np
import pytest
import scipy.sparse
import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional

from sparselinear import Connectivity
from sparselinear.errors import DataError, PatternError, ShapeError
from sparselinear.structured import PositiveDefiniteLinear, TriangularLinear, triangular_pattern

FREE = "parametrizations.weight.original"


pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------- patterns
@pytest.mark.parametrize("lower", [True, False])
@pytest.mark.parametrize("diagonal", [True, False])
@pytest.mark.parametrize("bandwidth", [None, 0, 2, 10])
def test_triangular_pattern_matches_dense_mask(lower, diagonal, bandwidth):
    n = 7
    i, j = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    d = i - j if lower else j - i
    expected = (d >= (0 if diagonal else 1)) & (d <= (n if bandwidth is None else bandwidth))
    p = triangular_pattern(n, lower, bandwidth=bandwidth, diagonal=diagonal)
    assert torch.equal(p.to_dense(), expected)


def test_triangular_pattern_random():
    n, density = 300, 0.05
    p = triangular_pattern(n, density=density, seed=3)
    rows, cols = p.indices()
    assert bool((cols <= rows).all())
    assert int((rows == cols).sum()) == n  # the whole diagonal
    assert p.nnz - n == round(density * n * (n - 1) / 2)
    assert p == triangular_pattern(n, density=density, seed=3)
    assert p != triangular_pattern(n, density=density, seed=4)
    upper = triangular_pattern(n, lower=False, density=density, seed=3, diagonal=False)
    r, c = upper.indices()
    assert bool((c > r).all()) and upper.nnz == p.nnz - n
    full = triangular_pattern(40, density=1.0)
    assert full == triangular_pattern(40)


def test_triangular_pattern_large_is_proportional_to_nnz():
    p = triangular_pattern(200_000, bandwidth=3)
    assert p.nnz == 4 * 200_000 - 6
    rows, cols = p.indices()
    assert bool(((rows - cols >= 0) & (rows - cols <= 3)).all())


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"n": -1}, ShapeError, "'n' must be a non-negative int"),
        ({"n": 2.5}, ShapeError, "'n' must be a non-negative int"),
        ({"n": 5, "bandwidth": 2, "density": 0.1}, DataError, "at most one of"),
        ({"n": 5, "density": 1.5}, DataError, r"'density' must lie in \[0, 1\]"),
        ({"n": 5, "bandwidth": -1}, DataError, "'bandwidth' must be a non-negative int"),
    ],
)
def test_triangular_pattern_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        triangular_pattern(**kwargs)


# ------------------------------------------------------------------------------- triangular
DIAGONALS = ["free", "unit", "positive", "negative"]


def _diagonal_holds(d: torch.Tensor, mode: str) -> bool:
    return {
        "free": True,
        "unit": bool((d == 1).all()),
        "positive": bool((d > 0).all()),
        "negative": bool((d < 0).all()),
    }[mode]


def _is_triangular(w: torch.Tensor, lower: bool) -> bool:
    return bool(torch.equal(w, w.tril() if lower else w.triu()))


@pytest.mark.parametrize("lower", [True, False])
@pytest.mark.parametrize("diagonal", DIAGONALS)
def test_triangular_forward_and_gradients(lower, diagonal):
    torch.manual_seed(0)
    layer = TriangularLinear(6, lower, diagonal, dtype=torch.float64)
    W = layer.to_dense()
    assert _is_triangular(W, lower) and _diagonal_holds(W.diagonal(), diagonal)
    assert layer.nnz == 21
    x = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(layer(x), x @ W.T + layer.bias)
    name = FREE if diagonal != "free" else "weight"
    u = dict(layer.named_parameters())[name].detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda u, x: functional_call(layer, {name: u}, (x,)), (u, x))


def test_triangular_unit_diagonal_is_frozen():
    layer = TriangularLinear(5, diagonal="unit", dtype=torch.float64)
    x = torch.randn(3, 5, dtype=torch.float64)
    layer(x).sum().backward()
    grad = layer.parametrizations.weight.original.grad
    diag = layer.connectivity.row_indices() == layer.col_indices
    assert bool((grad[diag] == 0).all()) and bool((grad[~diag] != 0).any())


@pytest.mark.parametrize("diagonal", DIAGONALS)
def test_triangular_adam_keeps_structure(diagonal):
    torch.manual_seed(1)
    n = 8
    layer = TriangularLinear(n, diagonal=diagonal, pattern=triangular_pattern(n, bandwidth=3))
    x = torch.randn(64, n)
    target = x @ torch.randn(n, n).T
    opt = torch.optim.Adam(layer.parameters(), lr=0.5)
    first = None
    for step in range(200):
        opt.zero_grad()
        loss = functional.mse_loss(layer(x), target)
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
        W = layer.to_dense().detach()
        assert _is_triangular(W, True) and _diagonal_holds(W.diagonal(), diagonal), step
    assert functional.mse_loss(layer(x), target).item() < first


def test_triangular_reset_parameters_keeps_constraint():
    torch.manual_seed(2)
    layer = TriangularLinear(6, diagonal="negative")
    before = layer.weight.detach().clone()
    layer.reset_parameters()
    after = layer.weight.detach()
    assert not torch.equal(before, after)
    assert _diagonal_holds(layer.to_dense().diagonal(), "negative")
    fan_in = layer.connectivity.fan_in().float()
    bound = torch.repeat_interleave(fan_in.rsqrt(), fan_in.long())
    assert bool((after.abs() <= bound).all())


def test_triangular_state_dict_and_double():
    torch.manual_seed(3)
    a, b = TriangularLinear(5, diagonal="positive"), TriangularLinear(5, diagonal="positive")
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 5)
    torch.testing.assert_close(b(x), a(x))
    a.double()
    torch.testing.assert_close(a(x.double()), b(x).double())
    assert _diagonal_holds(a.to_dense().diagonal(), "positive")


def test_triangular_custom_pattern():
    p = triangular_pattern(10, lower=False, density=0.3, seed=0)
    layer = TriangularLinear(10, lower=False, diagonal="unit", pattern=p)
    assert layer.connectivity == p
    assert torch.equal(layer.to_dense().diagonal(), torch.ones(10))
    free = TriangularLinear(10, pattern=triangular_pattern(10, diagonal=False))
    assert bool((free.to_dense().diagonal() == 0).all())
    mask = triangular_pattern(10).to_dense()
    assert TriangularLinear(10, pattern=mask).connectivity == triangular_pattern(10)


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "message"),
    [
        ((5,), {"diagonal": "zero"}, DataError, "'diagonal' must be one of"),
        ((-2,), {}, ShapeError, "'n' must be a non-negative int"),
        ((5,), {"pattern": triangular_pattern(5, lower=False)}, PatternError,
         r"no edge above the diagonal; got 10 such \(output, input\) edge\(s\): \(0, 1\)"),
        ((5, False), {"pattern": triangular_pattern(5)}, PatternError, "no edge below"),
        ((5,), {"pattern": triangular_pattern(4)}, ShapeError, r"must have shape \(5, 5\)"),
        ((5,), {"diagonal": "unit", "pattern": triangular_pattern(5, diagonal=False)},
         PatternError, r"needs every diagonal entry.*5 are missing"),
    ],
)
def test_triangular_bad_arguments(args, kwargs, error, message):
    with pytest.raises(error, match=message):
        TriangularLinear(*args, **kwargs)


# ------------------------------------------------------------------------------- positive definite
def _factor(pd: PositiveDefiniteLinear) -> torch.Tensor:
    """L, rebuilt independently from the pattern and the constrained values."""
    rows, cols = pd.factor.connectivity.indices()
    L = torch.zeros(pd.n, pd.n, dtype=torch.float64)
    L[rows, cols] = pd.factor.weight.detach().double()
    return L


@pytest.mark.parametrize(
    "pattern",
    [None, triangular_pattern(9, bandwidth=2), triangular_pattern(9, density=0.3, seed=1)],
)
def test_positive_definite_matches_dense_reference(pattern):
    torch.manual_seed(4)
    pd = PositiveDefiniteLinear(9, eps=0.01, bias=True, pattern=pattern, dtype=torch.float64)
    with torch.no_grad():
        pd.factor.parametrizations.weight.original.normal_()
        pd.bias.normal_()
    L = _factor(pd)
    A = L @ L.T + 0.01 * torch.eye(9, dtype=torch.float64)
    torch.testing.assert_close(pd.to_dense(), A)
    x = torch.randn(5, 9, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(pd(x), x @ A + pd.bias)
    u = pd.factor.parametrizations.weight.original.detach().clone().requires_grad_()
    name = "factor." + FREE
    assert torch.autograd.gradcheck(lambda u, x: functional_call(pd, {name: u}, (x,)), (u, x))
    assert pd(torch.randn(2, 3, 9, dtype=torch.float64)).shape == (2, 3, 9)


def test_positive_definite_starts_as_identity():
    pd = PositiveDefiniteLinear(4, eps=0.5)
    torch.testing.assert_close(pd.to_dense(), 1.5 * torch.eye(4))
    assert pd.bias is None


def test_positive_definite_adam_stays_positive_definite():
    torch.manual_seed(5)
    n = 10
    pd = PositiveDefiniteLinear(n, eps=1e-3, pattern=triangular_pattern(n, density=0.4, seed=2))
    x = torch.randn(64, n)
    target = x @ torch.randn(n, n)  # not symmetric: the best PD fit is only approximate
    opt = torch.optim.Adam(pd.parameters(), lr=0.5)
    first = None
    for _ in range(200):
        opt.zero_grad()
        loss = functional.mse_loss(pd(x), target)
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
        assert bool((pd.factor.to_dense().diagonal() > 0).all())
    assert functional.mse_loss(pd(x), target).item() < first
    L = _factor(pd)
    A = L @ L.T + 1e-3 * torch.eye(n, dtype=torch.float64)
    torch.testing.assert_close(pd.to_dense().double(), A, rtol=1e-5, atol=1e-5)
    eig = torch.linalg.eigvalsh(A)
    assert bool((eig > 0).all()) and eig.min() >= 1e-3 * (1 - 1e-6)
    torch.testing.assert_close(pd(x).double(), x.double() @ A, rtol=1e-4, atol=1e-4)


def test_positive_definite_builds_the_transposed_factor_on_first_use():
    pd = PositiveDefiniteLinear(8, pattern=triangular_pattern(8, bandwidth=2), dtype=torch.float64)
    f = pd.factor
    assert {n for n, _ in pd.named_buffers() if "indices" in n} == {
        "factor.crow_indices", "factor.col_indices"
    }
    assert f._transpose_cache.peek(f.crow_indices, f.col_indices) is None
    x = torch.randn(3, 8, dtype=torch.float64)
    y = pd(x)
    lt = pd._transposed_pattern()
    assert f._transpose_cache.peek(f.crow_indices, f.col_indices) is not None
    assert pd._transposed_pattern() is lt and lt == f.connectivity.T
    with torch.no_grad():
        f.parametrizations.weight.original.normal_()
    pd.load_state_dict(pd.state_dict())  # in-place copies into the factor's buffers
    assert pd._transposed_pattern() is not lt
    L = _factor(pd)
    torch.testing.assert_close(pd(x), x @ (L @ L.T + pd.eps * torch.eye(8, dtype=torch.float64)))
    assert not torch.equal(pd(x), y)


def test_positive_definite_large_banded_never_densifies():
    # n = 20,000: a dense L Lᵀ would be 1.6 GB in float32; the banded factor has 60 k edges.
    n = 20_000
    pd = PositiveDefiniteLinear(n, eps=0.1, pattern=triangular_pattern(n, bandwidth=2))
    with torch.no_grad():
        pd.factor.parametrizations.weight.original.normal_()
    x = torch.randn(3, n, requires_grad=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    y = pd(x)
    y.square().sum().backward()
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak
    assert grown < 400 * 1024, f"peak memory grew by {grown / 1024:.0f} MiB"
    assert x.grad.shape == (3, n) and pd.factor.parametrizations.weight.original.grad is not None
    y = y.detach()
    rows, cols = pd.factor.connectivity.indices()
    L = scipy.sparse.csr_array(
        (pd.factor.weight.detach().double().numpy(), (rows.numpy(), cols.numpy())), shape=(n, n)
    )
    A = (L @ L.T + 0.1 * scipy.sparse.eye_array(n)).tocsr()
    expected = (A.T @ x.detach().double().numpy().T).T
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-4, atol=1e-4)


def test_positive_definite_in_sequential_state_dict_and_double():
    torch.manual_seed(6)
    model = nn.Sequential(
        TriangularLinear(6, diagonal="unit"), nn.Tanh(), PositiveDefiniteLinear(6, bias=True)
    )
    x = torch.randn(8, 6)
    model(x).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    clone = nn.Sequential(
        TriangularLinear(6, diagonal="unit"), nn.Tanh(), PositiveDefiniteLinear(6, bias=True)
    )
    clone.load_state_dict(model.state_dict())
    torch.testing.assert_close(clone(x), model(x))
    model.double()
    torch.testing.assert_close(model(x.double()), clone(x).double())
    assert "PositiveDefiniteLinear(\n  n=6, nnz(L)=21, eps=0.001, bias=True" in repr(model[2])


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"eps": -1.0}, DataError, "'eps' must be a finite number >= 0"),
        ({"eps": float("nan")}, DataError, "'eps' must be a finite number >= 0"),
        ({"eps": "small"}, DataError, "'eps' must be a number >= 0"),
        ({"pattern": triangular_pattern(5, lower=False)}, PatternError, "no edge above"),
        ({"pattern": triangular_pattern(5, diagonal=False)}, PatternError, "needs every diagonal"),
        ({"pattern": Connectivity.random(5, 5, nnz=4, seed=0)}, PatternError, "triangular"),
    ],
)
def test_positive_definite_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        PositiveDefiniteLinear(5, **kwargs)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_positive_definite_on_cuda():
    torch.manual_seed(7)
    pd = PositiveDefiniteLinear(9, pattern=triangular_pattern(9, density=0.4, seed=0))
    with torch.no_grad():
        pd.factor.parametrizations.weight.original.normal_()
    x = torch.randn(5, 9)
    expected, dense = pd(x).detach(), pd.to_dense().detach()
    pd.cuda()
    torch.testing.assert_close(pd(x.cuda()).detach().cpu(), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(pd.to_dense().detach().cpu(), dense, rtol=1e-5, atol=1e-5)
