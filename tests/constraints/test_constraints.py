"""Tests of sparselinear.constraints: maps, gradients, training, right_inverse, bad inputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional
from torch.nn.utils import parametrize

from sparselinear import Connectivity, SparseLinear
from sparselinear.constraints import Bounded, Dale, Diagonal, Sign, constrain
from sparselinear.errors import (
    DataError,
    PatternError,
    ShapeError,
    SparseLinearTypeError,
    WiringMismatchError,
)
from sparselinear.functional import sparse_linear

N_OUT, N_IN = 12, 10


pytestmark = pytest.mark.usefixtures("one_thread")


def _pattern() -> Connectivity:
    """A random pattern that also holds the whole diagonal."""
    g = torch.Generator().manual_seed(0)
    mask = torch.rand(N_OUT, N_IN, generator=g) < 0.4
    mask[torch.arange(N_IN), torch.arange(N_IN)] = True
    return Connectivity(mask)


PATTERN = _pattern()
ROWS, COLS = PATTERN.indices()
NNZ = PATTERN.nnz
DIAG = ROWS == COLS
G = torch.Generator().manual_seed(1)
EDGE_SIGNS = torch.randint(-1, 2, (NNZ,), generator=G)  # -1, 0, +1
INPUT_SIGNS = torch.tensor([1, -1, 1, 1, -1, 0, 1, -1, 0, 1])  # 0 = mixed
MIXED_EDGE = torch.where(torch.rand(NNZ, generator=G) < 0.5, 1, -1)
LOW_PER_EDGE = torch.rand(NNZ, generator=G) * 0.2 - 0.3  # in (-0.3, -0.1)
HIGH_PER_EDGE = LOW_PER_EDGE + 0.05 + torch.rand(NNZ, generator=G) * 0.3


def _signed(w, signs):
    """Exact check: w > 0 where signs == 1, w < 0 where signs == -1."""
    return bool((w[signs == 1] > 0).all() and (w[signs == -1] < 0).all())


_DALE_EDGE = torch.where(INPUT_SIGNS[COLS] == 0, MIXED_EDGE, INPUT_SIGNS[COLS])

# name -> (factory, exact predicate on the weight written from the spec, reference map on u)
CASES = {
    "sign": (
        lambda: Sign(EDGE_SIGNS),
        lambda w: _signed(w, EDGE_SIGNS),
        lambda u: torch.where(EDGE_SIGNS == 0, u, EDGE_SIGNS * functional.softplus(u)),
    ),
    "sign-bool-exp": (
        lambda: Sign(EDGE_SIGNS >= 0, map="exp"),
        lambda w: _signed(w, torch.where(EDGE_SIGNS >= 0, 1, -1)),
        lambda u: torch.where(EDGE_SIGNS >= 0, 1, -1) * torch.exp(u),
    ),
    "dale": (
        lambda: Dale(PATTERN, INPUT_SIGNS),
        lambda w: _signed(w, INPUT_SIGNS[COLS]),
        lambda u: torch.where(
            INPUT_SIGNS[COLS] == 0, u, INPUT_SIGNS[COLS] * functional.softplus(u)
        ),
    ),
    "dale-mixed": (
        lambda: Dale(PATTERN, INPUT_SIGNS, MIXED_EDGE * (INPUT_SIGNS[COLS] == 0)),
        lambda w: _signed(w, _DALE_EDGE),
        lambda u: _DALE_EDGE * functional.softplus(u),
    ),
    "diag-negative-exp": (
        lambda: Diagonal(PATTERN, "negative", map="exp"),
        lambda w: bool((w[DIAG] < 0).all()),
        lambda u: torch.where(DIAG, -torch.exp(u), u),
    ),
    "diag-positive": (
        lambda: Diagonal(PATTERN, "positive"),
        lambda w: bool((w[DIAG] > 0).all()),
        lambda u: torch.where(DIAG, functional.softplus(u), u),
    ),
    "diag-fixed": (
        lambda: Diagonal(PATTERN, "fixed", value=-0.5),
        lambda w: bool((w[DIAG] == -0.5).all()),
        lambda u: torch.where(DIAG, torch.full_like(u, -0.5), u),
    ),
    "bounded": (
        lambda: Bounded(-0.2, 0.3),
        lambda w: bool(((w > -0.2) & (w < 0.3)).all()),
        lambda u: -0.2 + 0.5 * torch.sigmoid(u),
    ),
    "bounded-per-edge": (
        lambda: Bounded(LOW_PER_EDGE, HIGH_PER_EDGE),
        lambda w: bool(((w > LOW_PER_EDGE.to(w)) & (w < HIGH_PER_EDGE.to(w))).all()),
        lambda u: LOW_PER_EDGE.double()
        + (HIGH_PER_EDGE.double() - LOW_PER_EDGE.double()) * torch.sigmoid(u),
    ),
    "bounded-magnitude": (
        lambda: Bounded(0.05, 0.25, signs=MIXED_EDGE),
        lambda w: _signed(w, MIXED_EDGE) and bool(((w.abs() > 0.05) & (w.abs() < 0.25)).all()),
        lambda u: MIXED_EDGE * (0.05 + 0.2 * torch.sigmoid(u)),
    ),
}


def _layer(name: str, dtype=torch.float64, seed: int = 0) -> SparseLinear:
    torch.manual_seed(seed)
    return constrain(SparseLinear(N_IN, N_OUT, PATTERN, dtype=dtype), CASES[name][0]())


def _free(layer: nn.Module) -> torch.Tensor:
    return layer.parametrizations.weight.original


def _dense_reference(layer: SparseLinear, x: torch.Tensor) -> torch.Tensor:
    dense = torch.zeros(N_OUT, N_IN, dtype=torch.float64)
    dense[ROWS, COLS] = layer.weight.detach().double()
    return x.double() @ dense.T + layer.bias.detach().double()


# ------------------------------------------------------------------------------- forward
@pytest.mark.parametrize("name", CASES)
def test_map_matches_formula_and_holds(name):
    factory, holds, reference = CASES[name]
    c = factory()
    u = torch.randn(NNZ, dtype=torch.float64, generator=torch.Generator().manual_seed(2)) * 3
    w = c(u)
    assert w.shape == (NNZ,) and w.dtype == torch.float64
    torch.testing.assert_close(w, reference(u).double(), rtol=1e-12, atol=1e-12)
    assert holds(w)


@pytest.mark.parametrize("name", CASES)
def test_layer_forward_uses_constrained_weight(name):
    layer = _layer(name)
    assert holds_now(layer, name)
    x = torch.randn(5, N_IN, dtype=torch.float64)
    torch.testing.assert_close(layer(x), _dense_reference(layer, x))
    dense = layer.to_dense()
    assert dense.shape == (N_OUT, N_IN)
    torch.testing.assert_close(dense[ROWS, COLS], layer.weight)
    assert int((dense != 0).sum()) <= NNZ


def holds_now(layer, name) -> bool:
    return CASES[name][1](layer.weight.detach())


# ------------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("name", CASES)
def test_gradcheck_through_constraint_and_layer(name):
    c = CASES[name][0]()
    g = torch.Generator().manual_seed(3)
    u = torch.randn(NNZ, dtype=torch.float64, generator=g).requires_grad_()
    x = torch.randn(4, N_IN, dtype=torch.float64, generator=g).requires_grad_()
    assert torch.autograd.gradcheck(c, (u,))
    assert torch.autograd.gradcheck(lambda u, x: sparse_linear(x, c(u), PATTERN), (u, x))


@pytest.mark.parametrize("name", CASES)
def test_gradient_reaches_free_parameter(name):
    layer = _layer(name)
    x = torch.randn(6, N_IN, dtype=torch.float64)
    layer(x).pow(2).sum().backward()
    u = _free(layer)
    # Reference: the same loss through a dense float64 weight built from the same map.
    u_ref = u.detach().clone().requires_grad_()
    dense = torch.zeros(N_OUT, N_IN, dtype=torch.float64).index_put(
        (ROWS, COLS), layer.parametrizations.weight[0](u_ref)
    )
    (x @ dense.T + layer.bias.detach()).pow(2).sum().backward()
    torch.testing.assert_close(u.grad, u_ref.grad)
    assert layer.parametrizations.weight.original is u and isinstance(u, nn.Parameter)


# ------------------------------------------------------------------------------- training
@pytest.mark.parametrize("name", CASES)
def test_adam_large_lr_keeps_constraint_exactly(name):
    layer = _layer(name, dtype=torch.float32)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(64, N_IN, generator=g)
    target = x @ (torch.randn(N_OUT, N_IN, generator=g) * 0.5).T
    opt = torch.optim.Adam(layer.parameters(), lr=0.5)
    losses = []
    for _ in range(200):
        opt.zero_grad()
        loss = functional.mse_loss(layer(x), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        assert holds_now(layer, name), f"constraint broken at step {len(losses)}"
    final = functional.mse_loss(layer(x), target).item()
    assert torch.isfinite(layer.weight).all()
    assert final < losses[0]


# ------------------------------------------------------------------------------- right_inverse
def _feasible(name: str) -> torch.Tensor:
    """Data-like values that satisfy the constraint (e.g. signed synapse counts)."""
    g = torch.Generator().manual_seed(5)
    counts = torch.randint(1, 50, (NNZ,), generator=g).double()
    if name.startswith("sign"):
        signs = EDGE_SIGNS if name == "sign" else torch.where(EDGE_SIGNS >= 0, 1, -1)
        return torch.where(signs == 0, torch.randn(NNZ, generator=g).double(), signs * counts)
    if name == "dale":
        return torch.where(INPUT_SIGNS[COLS] == 0, -counts, INPUT_SIGNS[COLS] * counts)
    if name == "dale-mixed":
        return _DALE_EDGE * counts
    if name.startswith("diag"):
        w = torch.randn(NNZ, generator=g).double()
        diag = {"diag-negative-exp": -counts, "diag-positive": counts}.get(name)
        return torch.where(DIAG, diag if diag is not None else torch.full_like(w, -0.5), w)
    if name == "bounded":
        return -0.2 + 0.5 * torch.rand(NNZ, generator=g).double().clamp(0.01, 0.99)
    if name == "bounded-per-edge":
        t = torch.rand(NNZ, generator=g).double().clamp(0.01, 0.99)
        return LOW_PER_EDGE.double() + (HIGH_PER_EDGE - LOW_PER_EDGE).double() * t
    return MIXED_EDGE * (0.06 + 0.18 * torch.rand(NNZ, generator=g).double())


@pytest.mark.parametrize("name", CASES)
def test_right_inverse_round_trip(name):
    c = CASES[name][0]()
    data = _feasible(name)
    assert CASES[name][1](data)
    torch.testing.assert_close(c(c.right_inverse(data)), data, rtol=1e-9, atol=1e-12)
    u = torch.randn(NNZ, dtype=torch.float64)
    torch.testing.assert_close(c(c.right_inverse(c(u))), c(u), rtol=1e-9, atol=1e-12)
    # Through the layer: assigning constrained data sets the free parameter.
    layer = _layer(name)
    free = _free(layer)
    layer.weight = data
    assert _free(layer) is free  # same Parameter object: optimizers keep tracking it
    torch.testing.assert_close(layer.weight, data, rtol=1e-9, atol=1e-12)


def test_right_inverse_float32_round_trip():
    c = Sign(EDGE_SIGNS)
    data = _feasible("sign").float()
    torch.testing.assert_close(c(c.right_inverse(data)), data, rtol=1e-5, atol=1e-6)


def test_right_inverse_rejects_violations_with_offending_edges():
    data = _feasible("dale")
    k = int(torch.nonzero(INPUT_SIGNS[COLS] == 1)[0, 0])
    data[k] = -3.0
    c = Dale(PATTERN, INPUT_SIGNS)
    pattern = rf"violates the Dale constraint on 1 edge\(s\): edge {k} \(output {int(ROWS[k])}, "
    with pytest.raises(DataError, match=pattern + rf"input {int(COLS[k])}\) = -3 must be > 0"):
        c.right_inverse(data)
    layer = _layer("dale")
    before = layer.weight.detach().clone()
    with pytest.raises(DataError, match="violates the Dale constraint"):
        layer.weight = data
    torch.testing.assert_close(layer.weight, before)  # nothing was written


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("sign", 0.0, "must be > 0|must be < 0"),  # a signed edge cannot be zero
        ("diag-negative-exp", 2.0, "must be < 0"),
        ("diag-fixed", 0.25, r"must be -0.5 \(fixed\)"),
        ("bounded", 0.3, r"must be in \(-0.2, 0.3\)"),
        ("bounded-magnitude", 0.0, r"in magnitude, with its sign, in \(0.05, 0.25\)"),
    ],
)
def test_right_inverse_rejects(name, value, message):
    data = _feasible(name)
    k = int(torch.nonzero(DIAG if name.startswith("diag") else EDGE_SIGNS != 0)[0, 0])
    data[k] = value
    with pytest.raises(DataError, match=message):
        CASES[name][0]().right_inverse(data)


def test_right_inverse_bad_values():
    c = Sign(EDGE_SIGNS)
    with pytest.raises(ShapeError, match=rf"must have shape \({NNZ},\)"):
        c.right_inverse(torch.ones(NNZ + 1))
    with pytest.raises(SparseLinearTypeError, match="floating-point"):
        c.right_inverse(torch.ones(NNZ, dtype=torch.int64))
    with pytest.raises(DataError, match="NaN"):
        c.right_inverse(torch.full((NNZ,), float("nan")))


# ------------------------------------------------------------------------------- registration
@pytest.mark.parametrize("name", CASES)
def test_raw_register_parametrization_projects_initial_weight(name):
    torch.manual_seed(6)
    layer = SparseLinear(N_IN, N_OUT, PATTERN, dtype=torch.float64)
    w0 = layer.weight.detach().clone()
    parametrize.register_parametrization(layer, "weight", CASES[name][0]())
    assert holds_now(layer, name)
    if name.startswith(("sign", "dale")):
        torch.testing.assert_close(layer.weight.abs(), w0.abs())  # fan-in scale kept


def test_sign_projection_keeps_free_edges():
    torch.manual_seed(7)
    layer = SparseLinear(N_IN, N_OUT, PATTERN)
    w0 = layer.weight.detach().clone()
    constrain(layer, Sign(EDGE_SIGNS))
    free = EDGE_SIGNS == 0
    torch.testing.assert_close(layer.weight[free], w0[free])


@pytest.mark.parametrize("name", ["dale", "diag-fixed", "bounded-magnitude"])
def test_state_dict_round_trip_and_double(name):
    layer = _layer(name, dtype=torch.float32, seed=8)
    x = torch.randn(3, N_IN)
    sd = layer.state_dict()
    assert "parametrizations.weight.original" in sd
    other = _layer(name, dtype=torch.float32, seed=9)
    assert not torch.equal(other.weight, layer.weight)
    other.load_state_dict(sd)
    torch.testing.assert_close(other(x), layer(x))
    layer.double()
    assert layer.weight.dtype == torch.float64 and _free(layer).dtype == torch.float64
    assert holds_now(layer, name)
    torch.testing.assert_close(layer(x.double()), _dense_reference(layer, x))


def test_remove_parametrization_keeps_values():
    layer = _layer("dale")
    w = layer.weight.detach().clone()
    parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)
    assert isinstance(layer.weight, nn.Parameter)
    torch.testing.assert_close(layer.weight.detach(), w)


def test_weight_decay_acts_on_free_parameter():
    # AdamW decay shrinks the free parameter u towards 0, i.e. the weight towards ±softplus(0).
    layer = _layer("sign", dtype=torch.float32)
    with torch.no_grad():
        _free(layer).fill_(3.0)
    opt = torch.optim.AdamW(layer.parameters(), lr=0.1, weight_decay=0.9)
    for _ in range(300):
        opt.zero_grad()
        (layer.bias.sum() * 0).backward()  # no data gradient: decay only
        _free(layer).grad = torch.zeros_like(_free(layer))
        opt.step()
    signed = EDGE_SIGNS != 0
    expected = EDGE_SIGNS[signed] * functional.softplus(torch.tensor(0.0))
    torch.testing.assert_close(layer.weight[signed], expected.float(), atol=0.02, rtol=0)


def test_penalty_on_constrained_weight_shrinks_magnitude():
    layer = _layer("sign", dtype=torch.float32)
    opt = torch.optim.Adam(layer.parameters(), lr=0.1)
    start = layer.weight.detach().abs().sum()
    for _ in range(100):
        opt.zero_grad()
        layer.weight.pow(2).sum().backward()
        opt.step()
    assert layer.weight.detach().abs().sum() < 0.1 * start
    assert holds_now(layer, "sign")


# ------------------------------------------------------------------------------- bad inputs
def test_sign_vector_of_wrong_length():
    layer = SparseLinear(N_IN, N_OUT, PATTERN)
    with pytest.raises(ShapeError, match=rf"made for {NNZ - 1} edges but 'layer.weight' has {NNZ}"):
        constrain(layer, Sign(torch.ones(NNZ - 1)))
    with pytest.raises(ShapeError, match=rf"must have shape \({NNZ - 1},\)"):
        parametrize.register_parametrization(layer, "weight", Sign(torch.ones(NNZ - 1)))
    with pytest.raises(ShapeError, match=r"'signs' must have shape 1-D"):
        Sign(torch.ones(2, 3))
    with pytest.raises(ShapeError, match=r"'input_signs' must have shape \(10,\), one sign per in"):
        Dale(PATTERN, torch.ones(N_IN + 1))
    with pytest.raises(ShapeError, match=rf"'edge_signs' must have shape \({NNZ},\)"):
        Dale(PATTERN, INPUT_SIGNS, torch.ones(3))


def test_diagonal_on_layer_without_diagonal():
    no_diag = Connectivity(torch.tensor([[0, 1, 2], [1, 2, 0]]), shape=(3, 3))
    with pytest.raises(PatternError, match="has no diagonal edge"):
        Diagonal(no_diag, "negative")
    with pytest.raises(PatternError, match="has no diagonal edge"):
        Diagonal(SparseLinear(3, 3, no_diag), "fixed")


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda: Sign(torch.tensor([1, 2, -1])), DataError, r"only \+1 or -1 or 0.*\[1\] = 2"),
        (lambda: Sign(["a", "b"]), SparseLinearTypeError, "must be a 1-D tensor of"),
        (lambda: Sign(torch.ones(3) * 1j), SparseLinearTypeError, "must be a 1-D tensor of"),
        (lambda: Sign(torch.ones(3), map="tanh"), DataError, "'map' must be one of"),
        (lambda: Dale(torch.ones(3), [1, -1]), SparseLinearTypeError, "'connectivity' must be"),
        (
            lambda: Dale(PATTERN, INPUT_SIGNS, -INPUT_SIGNS[COLS]),
            DataError,
            "'edge_signs' contradicts 'input_signs'",
        ),
        (lambda: Diagonal(PATTERN, "zero"), DataError, "'mode' must be one of"),
        (lambda: Diagonal(PATTERN, "negative", value=1.0), DataError, "applies to mode='fixed'"),
        (
            lambda: Diagonal(PATTERN, "fixed", value=torch.ones(3)),
            ShapeError,
            rf"'value' must be a number or have shape \({N_IN},\)",
        ),
        (lambda: Bounded(0.3, 0.3), DataError, "'low' must be < 'high'"),
        (lambda: Bounded(0.0, float("inf")), DataError, "must be finite"),
        (lambda: Bounded(float("nan"), 1.0), DataError, "NaN"),
        (lambda: Bounded("a", 1.0), SparseLinearTypeError, "'low' must be"),
        (lambda: Bounded(torch.zeros(3), torch.ones(4)), ShapeError, "of equal length"),
        (lambda: Bounded(-1.0, 1.0, signs=torch.ones(3)), DataError, "'low' must be >= 0"),
        (lambda: Bounded(0.0, 1.0, signs=torch.zeros(3)), DataError, r"only \+1 or -1;"),
    ],
)
def test_bad_constraint_arguments(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_constrain_bad_calls():
    layer = SparseLinear(N_IN, N_OUT, PATTERN)
    with pytest.raises(SparseLinearTypeError, match=r"'layer' must be an nn\.Module"):
        constrain("layer", Sign(EDGE_SIGNS))
    with pytest.raises(SparseLinearTypeError, match=r"'constraint' must be an nn\.Module"):
        constrain(layer, torch.ones(NNZ))
    with pytest.raises(SparseLinearTypeError, match=r"'layer.bias' must be a 1-D nn.Parameter"):
        constrain(SparseLinear(N_IN, N_OUT, PATTERN, bias=False), Bounded(-1, 1), name="bias")
    constrain(layer, Sign(EDGE_SIGNS))
    with pytest.raises(DataError, match="already has a constraint"):
        constrain(layer, Bounded(-1, 1))
    other = Connectivity(torch.stack([ROWS, (COLS + 1) % N_IN]), shape=(N_OUT, N_IN))
    assert other.nnz == NNZ
    with pytest.raises(WiringMismatchError, match="was built for the pattern"):
        constrain(SparseLinear(N_IN, N_OUT, PATTERN), Dale(other, INPUT_SIGNS))


def test_repr_names_counts():
    text = repr(Dale(PATTERN, INPUT_SIGNS))
    assert f"nnz={NNZ}" in text and "positive=" in text and "map='softplus'" in text
    assert "mode='fixed'" in repr(Diagonal(PATTERN, "fixed"))
    assert repr(Bounded(-1, 1)) == "Bounded(low=-1, high=1)"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bounded_strict_even_when_saturated(dtype):
    c = Bounded(-0.2, 0.3)
    w = c(torch.tensor([-1e4, -50.0, 50.0, 1e4], dtype=dtype))
    assert bool((w > -0.2).all() and (w < 0.3).all())
    # A layer whose free parameter has run into saturation still holds the bounds.
    layer = _layer("bounded", dtype=dtype)
    with torch.no_grad():
        _free(layer)[::2] = 60.0
        _free(layer)[1::2] = -800.0
    assert holds_now(layer, "bounded")
    x = torch.randn(3, N_IN, dtype=dtype)
    torch.testing.assert_close(layer(x).double(), _dense_reference(layer, x))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ["dale", "diag-fixed", "bounded-per-edge"])
def test_constraint_on_cuda_layer(name):
    torch.manual_seed(10)
    layer = SparseLinear(N_IN, N_OUT, PATTERN, device="cuda")
    parametrize.register_parametrization(layer, "weight", CASES[name][0]())  # buffers follow
    assert layer.weight.device.type == "cuda" and holds_now(layer.cpu(), name)
    layer.cuda()
    x = torch.randn(4, N_IN, device="cuda")
    torch.testing.assert_close(layer(x).cpu().double(), _dense_reference(layer.cpu(), x.cpu()))


def test_loading_signs_from_a_checkpoint_replaces_them():
    all_signed = Sign(torch.where(EDGE_SIGNS >= 0, 1, -1))
    all_signed.load_state_dict(Sign(EDGE_SIGNS).state_dict())
    u = torch.randn(NNZ, dtype=torch.float64)
    torch.testing.assert_close(all_signed(u), Sign(EDGE_SIGNS)(u))
