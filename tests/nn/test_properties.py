"""Property-based checks of the layer against a float64 dense reference: forward, input gradient,
weight gradient and bias gradient over random shapes (empty rows and columns, 0 x n, 1 x 1,
rectangular), leading batch dimensions (none, one, two; batch 0 to 300), contiguous, transposed
and expanded inputs, every floating dtype, both index dtypes, every mode, both CPU kernel backends
and one or two threads.

The default run draws a bounded number of examples; ``pytest -m fuzz`` runs the long profile.
"""

from __future__ import annotations

import pytest
import torch
from conftest import needs_ext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sparselinear import Connectivity, SparseLinear, kernels
from sparselinear.ops import _ext

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
#: (rtol, atol) of a result in each dtype, against float64, per unit of the reference's scale
TOLERANCE = {torch.float64: (1e-9, 1e-9), torch.float32: (1e-4, 1e-4),
             torch.float16: (2e-2, 2e-2), torch.bfloat16: (8e-2, 8e-2)}
BACKENDS = ["torch", "extension"] if _ext.available() else ["torch"]


@st.composite
def cases(draw):
    n_out, n_in = draw(st.integers(0, 24)), draw(st.integers(0, 24))
    density = draw(st.sampled_from([0.0, 0.05, 0.3, 0.7, 1.0]))
    lead = draw(st.sampled_from([(), (1,), (3,), (8,), (9,), (33,), (64,), (65,), (300,), (0,),
                                 (2, 5), (3, 0), (4, 17)]))
    return {
        "n_out": n_out, "n_in": n_in, "density": density, "lead": lead,
        "seed": draw(st.integers(0, 2**16)),
        "layout": draw(st.sampled_from(["contiguous", "transposed", "expanded"])),
        "dtype": draw(st.sampled_from(DTYPES)),
        "index_dtype": draw(st.sampled_from([torch.int32, torch.int64])),
        "mode": draw(st.sampled_from(["auto", "sparse", "dense"])),
        "backend": draw(st.sampled_from(BACKENDS)),
        "threads": draw(st.sampled_from([1, 2])),
        "bias": draw(st.booleans()),
    }


def _input(case, g: torch.Generator) -> torch.Tensor:
    n_in, lead, dtype = case["n_in"], case["lead"], case["dtype"]
    if case["layout"] == "transposed" and len(lead) == 1:
        x = torch.randn(n_in, *lead, generator=g, dtype=torch.float64).t()  # column stride 1
    elif case["layout"] == "expanded" and lead and lead[0] > 0:
        row = torch.randn(*lead[1:], 1, n_in, generator=g, dtype=torch.float64)
        x = row.expand(*lead[1:], lead[0], n_in)
        x = x.movedim(-2, 0) if len(lead) > 1 else x
    else:
        x = torch.randn(*lead, n_in, generator=g, dtype=torch.float64)
    return x.to(dtype).requires_grad_(True)


def check_against_dense(case) -> None:
    g = torch.Generator().manual_seed(case["seed"])
    n_out, n_in = case["n_out"], case["n_in"]
    mask = torch.rand(n_out, n_in, generator=g) < case["density"]
    conn = Connectivity(mask, index_dtype=case["index_dtype"])
    layer = SparseLinear(n_in, n_out, conn, bias=case["bias"], dtype=case["dtype"],
                         mode=case["mode"])
    x = _input(case, g)
    grad_y = torch.randn(*x.shape[:-1], n_out, generator=g, dtype=torch.float64)

    threads = torch.get_num_threads()
    torch.set_num_threads(case["threads"])
    try:
        with kernels.use_backend(case["backend"]):
            y = layer(x)
            y.backward(grad_y.to(y.dtype))
    finally:
        torch.set_num_threads(threads)

    rows, cols = conn.indices().to(torch.int64)
    w64 = layer.weight.detach().double().requires_grad_(True)
    b64 = layer.bias.detach().double().requires_grad_(True) if case["bias"] else None
    x64 = x.detach().double().requires_grad_(True)
    dense = torch.zeros(n_out, n_in, dtype=torch.float64).index_put((rows, cols), w64)
    y64 = x64 @ dense.t() + (b64 if b64 is not None else 0)
    y64.backward(grad_y)

    rtol, atol = TOLERANCE[case["dtype"]]
    scale = 1.0 + n_in  # a sum over up to n_in products of unit-size numbers
    assert y.shape == y64.shape and y.dtype == case["dtype"]
    torch.testing.assert_close(y.double(), y64.detach(), rtol=rtol, atol=atol * scale)
    torch.testing.assert_close(x.grad.double(), x64.grad, rtol=rtol, atol=atol * (1 + n_out))
    batch = max(1, x64.numel() // max(1, n_in))
    torch.testing.assert_close(layer.weight.grad.double(), w64.grad, rtol=rtol,
                               atol=atol * (1 + batch))
    if case["bias"]:
        torch.testing.assert_close(layer.bias.grad.double(), b64.grad, rtol=rtol,
                                   atol=atol * (1 + batch))


QUICK = settings(max_examples=40, deadline=None, derandomize=True,
                 suppress_health_check=[HealthCheck.too_slow])
LONG = settings(max_examples=3000, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


@QUICK
@given(cases())
def test_layer_matches_dense_float64(case):
    check_against_dense(case)


@pytest.mark.fuzz
@LONG
@given(cases())
def test_layer_matches_dense_float64_long(case):
    check_against_dense(case)


@needs_ext
@QUICK
@given(cases().filter(lambda c: c["backend"] == "extension" and c["mode"] == "sparse"))
def test_compiled_kernels_match_dense_float64(case):
    check_against_dense(case)


@st.composite
def small_cases(draw):
    return {"n_out": draw(st.integers(0, 8)), "n_in": draw(st.integers(0, 8)),
            "density": draw(st.sampled_from([0.0, 0.3, 1.0])),
            "batch": draw(st.sampled_from([0, 1, 3])), "seed": draw(st.integers(0, 2**16)),
            "mode": draw(st.sampled_from(["auto", "sparse", "dense"])),
            "backend": draw(st.sampled_from(BACKENDS))}


def check_double_backward(case) -> None:
    """Second derivatives through the input and weight gradients (create_graph) against the
    same computation on a float64 dense weight."""
    g = torch.Generator().manual_seed(case["seed"])
    n_out, n_in = case["n_out"], case["n_in"]
    conn = Connectivity(torch.rand(n_out, n_in, generator=g) < case["density"])
    rows, cols = conn.indices().to(torch.int64)
    x0 = torch.randn(case["batch"], n_in, generator=g, dtype=torch.float64)
    w0 = torch.randn(conn.nnz, generator=g, dtype=torch.float64)
    v = torch.randn(case["batch"], n_in, generator=g, dtype=torch.float64)
    u = torch.randn(conn.nnz, generator=g, dtype=torch.float64)

    def second(product):
        x, w = x0.clone().requires_grad_(True), w0.clone().requires_grad_(True)
        loss = torch.sin(product(x, w)).pow(2).sum()
        gx, gw = torch.autograd.grad(loss, (x, w), create_graph=True)
        mixed = (gx * v).sum() + (gw * u).sum()
        return torch.autograd.grad(mixed, (x, w), allow_unused=True)

    def sparse(x, w):
        layer = SparseLinear(n_in, n_out, conn, bias=False, dtype=torch.float64,
                             mode=case["mode"])
        del layer.weight
        layer.weight = w
        return layer(x)

    def dense(x, w):
        return x @ torch.zeros(n_out, n_in, dtype=torch.float64).index_put((rows, cols), w).t()

    with kernels.use_backend(case["backend"]):
        got = second(sparse)
    expected = second(dense)
    for a, b in zip(got, expected, strict=True):
        if b is None:
            continue
        assert a is not None
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


@QUICK
@given(small_cases())
def test_double_backward_matches_dense_float64(case):
    check_double_backward(case)


@pytest.mark.fuzz
@LONG
@given(small_cases())
def test_double_backward_matches_dense_float64_long(case):
    check_double_backward(case)
