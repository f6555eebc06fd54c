"""The autograd functions at the edges: double backward against float64 references, non-finite
values in dense-band mode, and bitwise determinism when torch asks for it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sparselinear import Connectivity, SparseLinear, kernels
from sparselinear.functional import sparse_linear
from sparselinear.ops import _ext

MODES = ["sparse", "dense", "auto"]
BACKENDS = ["torch", "extension"] if _ext.available() else ["torch"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", ["sparse", "dense"])
@pytest.mark.parametrize("shape,density", [((4, 5), 0.5), ((3, 2), 1.0), ((3, 3), 0.0)])
def test_gradgradcheck_float64(backend, mode, shape, density):
    n_out, n_in = shape
    c = Connectivity.random(n_out, n_in, density=density, seed=1)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, n_in, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(c.nnz, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(n_out, dtype=torch.float64, generator=g, requires_grad=True)
    with kernels.use_backend(backend):
        f = lambda x, w, b: sparse_linear(x, w, c, b, mode=mode)  # noqa: E731
        assert torch.autograd.gradcheck(f, (x, w, b))
        assert torch.autograd.gradgradcheck(f, (x, w, b))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", MODES)
def test_gradient_penalty_matches_nn_linear(backend, mode):
    """WGAN-GP: the penalty on the critic's input gradient, differentiated by the weight."""
    c = Connectivity.random(1, 16, density=0.6, seed=2)
    critic = SparseLinear(16, 1, c, mode=mode).double()
    linear = nn.Linear(16, 1).double()
    with torch.no_grad():
        linear.weight.copy_(critic.to_dense())
        linear.bias.copy_(critic.bias)
    x = torch.randn(8, 16, dtype=torch.float64, requires_grad=True)
    grads = []
    with kernels.use_backend(backend):
        for model in (critic, linear):
            score = torch.tanh(model(x)).sum()
            (g,) = torch.autograd.grad(score, x, create_graph=True)
            penalty = ((g.norm(dim=1) - 1) ** 2).mean()
            (gw,) = torch.autograd.grad(penalty, model.weight)
            grads.append(gw)
    assert grads[0] is not None
    rows, cols = c.indices()
    torch.testing.assert_close(grads[0], grads[1][rows, cols])


@pytest.mark.parametrize("backend", BACKENDS)
def test_hessian_vector_product_matches_dense(backend):
    c = Connectivity.random(6, 5, density=0.5, seed=3)
    x = torch.randn(4, 5, dtype=torch.float64)
    w = torch.randn(c.nnz, dtype=torch.float64)
    v = torch.randn(c.nnz, dtype=torch.float64)
    rows, cols = c.indices()

    def loss_sparse(w):
        return torch.sin(sparse_linear(x, w, c)).pow(2).sum()

    def loss_dense(w):
        dense = torch.zeros(6, 5, dtype=torch.float64).index_put((rows, cols), w)
        return torch.sin(x @ dense.t()).pow(2).sum()

    with kernels.use_backend(backend):
        _, hvp = torch.autograd.functional.hvp(loss_sparse, w, v)
    _, expected = torch.autograd.functional.hvp(loss_dense, w, v)
    torch.testing.assert_close(hvp, expected)


# ---------------------------------------------------------------------- non-finite values
@pytest.mark.parametrize("n", [4, 512])
@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_dense_bands_keep_non_finite_inputs_on_their_edges(n, value):
    c = Connectivity.tril(n, n)
    dense_layer = SparseLinear(n, n, c, mode="auto")
    assert "auto(dense)" in repr(dense_layer)
    sparse_layer = SparseLinear(n, n, c, mode="sparse")
    sparse_layer.load_state_dict(dense_layer.state_dict())
    x = torch.randn(3, n)
    x[:, n - 1] = value  # read by output n - 1 only
    x[1, 0] = value  # read by every output
    y_dense, y_sparse = dense_layer(x), sparse_layer(x)
    assert torch.equal(torch.isfinite(y_dense), torch.isfinite(y_sparse))
    assert (~torch.isfinite(y_dense[0])).nonzero().flatten().tolist() == [n - 1]
    finite = torch.isfinite(y_sparse)
    torch.testing.assert_close(y_dense[finite], y_sparse[finite])


@pytest.mark.parametrize("mode", ["dense", "auto"])
def test_dense_bands_keep_non_finite_output_gradients_on_their_edges(mode):
    n = 64
    c = Connectivity.tril(n, n)
    layers = [SparseLinear(n, n, c, mode=m) for m in (mode, "sparse")]
    layers[1].load_state_dict(layers[0].state_dict())
    grads = []
    for layer in layers:
        x = torch.randn(2, n, generator=torch.Generator().manual_seed(0), requires_grad=True)
        g = torch.ones(2, n)
        g[:, 0] = float("inf")  # output 0 reads input 0 only
        layer(x).backward(g)
        grads.append((x.grad, layer.weight.grad))
    (gx_d, gw_d), (gx_s, gw_s) = grads
    assert (~torch.isfinite(gx_d)).sum(dim=1).tolist() == [1, 1]
    assert torch.equal(torch.isfinite(gx_d), torch.isfinite(gx_s))
    assert torch.equal(torch.isfinite(gw_d), torch.isfinite(gw_s))
    torch.testing.assert_close(gx_d[torch.isfinite(gx_d)], gx_s[torch.isfinite(gx_s)])


# ---------------------------------------------------------------------- determinism
@pytest.fixture
def deterministic():
    before = torch.are_deterministic_algorithms_enabled()
    threads = torch.get_num_threads()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(2)
    yield
    torch.use_deterministic_algorithms(before)
    torch.set_num_threads(threads)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", ["sparse", "auto"])
def test_deterministic_mode_gives_bitwise_identical_runs(deterministic, backend, mode):
    c = Connectivity.random(2000, 2000, density=0.01, seed=0)

    def run():
        torch.manual_seed(0)
        layer = SparseLinear(2000, 2000, c, mode=mode)
        x = torch.randn(16, 2000, requires_grad=True)
        layer(x).pow(2).sum().backward()
        return x.grad, layer.weight.grad, layer.bias.grad

    with kernels.use_backend(backend):
        first = run()
        for _ in range(3):
            again = run()
            assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))


def test_deterministic_mode_plans_no_fused_sweep_with_threads(deterministic):
    from sparselinear.ops import policy

    plan = policy.plan_step(2000, 2000, 40_000, 16, torch.float32, compiled=True, threads=2)
    assert plan.backward == "gather"
    one = policy.plan_step(2000, 2000, 40_000, 16, torch.float32, compiled=True, threads=1)
    assert one.backward == "fused"  # one thread sums in a fixed order
    torch.use_deterministic_algorithms(False)
    free = policy.plan_step(2000, 2000, 40_000, 16, torch.float32, compiled=True, threads=2)
    assert free.backward == "fused"
