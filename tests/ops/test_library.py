"""The custom operators under PyTorch's transforms: torch.compile(fullgraph=True), torch.export,
fake and meta tensors, autocast, torch.func.vmap and torch.func.grad."""

from __future__ import annotations

import pytest
import torch
from conftest import DEVICES
from torch import nn
from torch.func import functional_call, grad, vmap

from sparselinear import Connectivity, SparseLinear
from sparselinear.errors import SparseLinearError


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(12, 16), nn.ReLU(),
        SparseLinear(16, 10, Connectivity.random(10, 16, density=0.3, seed=0), mode="sparse"),
        nn.Tanh(),
        SparseLinear(10, 10, Connectivity.tril(10, 10), mode="dense"),
    )


def test_compile_fullgraph_matches_eager():
    net, x = model(), torch.randn(5, 12)
    expected = net(x)
    expected.sum().backward()
    grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    compiled = torch.compile(net, fullgraph=True, backend="aot_eager")
    y = compiled(x)
    y.sum().backward()
    torch.testing.assert_close(y, expected)
    for p, g in zip(net.parameters(), grads, strict=True):
        torch.testing.assert_close(p.grad, g)


def test_export_keeps_the_operator():
    net, x = model(), torch.randn(5, 12)
    exported = torch.export.export(net, (x,))
    assert "sparselinear.linear" in str(exported.graph)
    torch.testing.assert_close(exported.module()(x), net(x))


def test_fake_and_meta_tensors_propagate_shapes_without_kernels(monkeypatch):
    from torch._subclasses.fake_tensor import FakeTensorMode

    from sparselinear.ops import autograd

    monkeypatch.setattr(autograd, "sparse_forward", lambda *a: pytest.fail("a kernel ran"))
    net = model()
    with FakeTensorMode(allow_non_fake_inputs=True) as mode:
        y = net(mode.from_tensor(torch.randn(7, 3, 12)))
    assert y.shape == (7, 3, 10)
    meta = SparseLinear(16, 10, Connectivity.random(10, 16, density=0.3, seed=0), device="meta")
    assert meta(torch.empty(4, 16, device="meta")).shape == (4, 10)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("device", DEVICES)
def test_autocast_follows_nn_linear(device, dtype):
    net, x = model().to(device), torch.randn(5, 12, device=device)
    expected = net(x)
    with torch.autocast(device, dtype=dtype):
        y = net(x)
    assert y.dtype == dtype  # computed in float32 where no kernel exists, output in the dtype
    torch.testing.assert_close(y.float(), expected, rtol=0.05, atol=0.05)
    y.float().sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in net.parameters())


def test_vmap_joins_the_mapped_dimension_to_the_batch():
    net, xs = model(), torch.randn(3, 5, 12)
    torch.testing.assert_close(vmap(net)(xs), torch.stack([net(x) for x in xs]))


def test_func_grad_and_per_sample_gradients():
    net, x = model(), torch.randn(6, 12)
    params = dict(net.named_parameters())

    def loss(p, xb):
        return functional_call(net, p, (xb,)).pow(2).sum()

    grads = grad(loss)(params, x)
    net(x).pow(2).sum().backward()
    for name, p in net.named_parameters():
        torch.testing.assert_close(grads[name], p.grad)
    per_sample = vmap(grad(loss), in_dims=(None, 0))(params, x.unsqueeze(1))
    for i in range(6):
        net.zero_grad()
        net(x[i : i + 1]).pow(2).sum().backward()
        torch.testing.assert_close(per_sample["2.weight"][i], net[2].weight.grad)


def test_vmap_over_the_weight_raises_a_library_error():
    layer = SparseLinear(4, 3, Connectivity.tril(3, 4), bias=False)
    weights, x = torch.randn(2, layer.nnz), torch.randn(5, 4)

    def run(w):
        return functional_call(layer, {"weight": w}, (x,))

    with pytest.raises(SparseLinearError, match="vmap over the weight"):
        vmap(run)(weights)
