"""ConnectomeRNN against the flyvis formulation written out with gather / scatter_add."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sparselinear import Connectivity, ConnectomeRNN, memory
from sparselinear.constraints import Dale
from sparselinear.errors import (
    DataError,
    PatternError,
    ShapeError,
    SparseLinearTypeError,
    WiringMismatchError,
)

ROOT = Path(__file__).resolve().parents[2]
N, NNZ, GROUPS = 24, 110, 7


def network(seed=0, dtype=torch.float64, **kw):
    """A random network with groups, per-neuron signs and counts, and its ingredients."""
    g = torch.Generator().manual_seed(seed)
    c = Connectivity.random(N, N, nnz=NNZ, seed=seed)
    parts = {
        "syn_count": torch.randint(1, 6, (NNZ,), generator=g),
        "signs": torch.where(torch.rand(N, generator=g) < 0.7, 1, -1),
        "groups": torch.randint(0, GROUPS, (NNZ,), generator=g),
        "n_groups": GROUPS,
        "syn_strength": 0.05 + 0.1 * torch.rand(GROUPS, generator=g, dtype=torch.float64),
        "time_const": 0.01 + 0.1 * torch.rand(N, generator=g, dtype=torch.float64),
        "bias": torch.randn(N, generator=g, dtype=torch.float64),
        "dt": 0.02,
        "input_neurons": [0, 3, 5, 7],
        "output_neurons": [20, 22, 23],
    }
    parts.update(kw)
    return c, ConnectomeRNN(c, dtype=dtype, **parts), parts


def flyvis_reference(c, parts, x, theta, tau, b, v0=None):
    """Euler steps with a per-edge gather and scatter_add (a batch x nnz tensor per step)."""
    post, pre = c.indices().to(torch.int64)
    sign = parts["signs"].to(theta.dtype)[pre]
    w = sign * parts["syn_count"].to(theta.dtype) * theta[parts["groups"]]
    batch, steps = x.shape[:2]
    v = b.expand(batch, N) if v0 is None else v0
    k = parts["dt"] / torch.max(tau, torch.tensor(parts["dt"], dtype=tau.dtype))
    outs = []
    for t in range(steps):
        edge = torch.relu(v)[:, pre] * w
        syn = torch.zeros_like(v).scatter_add(1, post.expand(batch, -1), edge)
        inp = torch.zeros_like(v).index_add(1, torch.tensor(parts["input_neurons"]), x[:, t])
        v = v + k * (-v + b + syn + inp)
        outs.append(v[:, parts["output_neurons"]])
    return torch.stack(outs, 1)


@pytest.mark.parametrize("every", [None, 4])
def test_activity_and_gradients_match_the_flyvis_reference(every):
    c, rnn, parts = network(checkpoint_every=every)
    x = torch.randn(3, 13, 4, dtype=torch.float64, requires_grad=True)
    out = rnn(x)
    target = torch.randn_like(out)
    ((out - target) ** 2).sum().backward()

    theta = parts["syn_strength"].clone().requires_grad_()
    tau = parts["time_const"].clone().requires_grad_()
    b = parts["bias"].clone().requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    ref = flyvis_reference(c, parts, x_ref, theta, tau, b)
    ((ref - target) ** 2).sum().backward()

    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-12)
    # gradients of the free parameters, mapped back to θ and τ through softplus' derivative
    u, ut = rnn.free_parameter("syn_strength"), rnn.free_parameter("time_const")
    torch.testing.assert_close(u.grad, theta.grad * torch.sigmoid(u.detach()), rtol=1e-5,
                               atol=1e-12)
    torch.testing.assert_close(ut.grad, tau.grad * torch.sigmoid(ut.detach()), rtol=1e-5,
                               atol=1e-12)
    torch.testing.assert_close(rnn.bias.grad, b.grad, rtol=1e-5, atol=1e-12)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-5, atol=1e-12)


def test_float32_matches_the_reference():
    c, rnn, parts = network(dtype=torch.float32)
    x = torch.randn(2, 10, 4)
    ref = flyvis_reference(c, parts, x.double(), parts["syn_strength"], parts["time_const"],
                           parts["bias"])
    torch.testing.assert_close(rnn(x).double(), ref, rtol=1e-5, atol=1e-5)


def test_gradcheck_through_time():
    c = Connectivity.random(6, 6, nnz=14, seed=2)
    rnn = ConnectomeRNN(c, syn_count=torch.arange(14) % 3 + 1, signs=torch.tensor([1, -1] * 3),
                        groups=torch.arange(14) % 4, input_neurons=[1, 4], output_neurons=[0, 5],
                        checkpoint_every=2, dtype=torch.float64)
    names = ("synapses.parametrizations.weight.original",
             "parametrizations.time_const.original", "bias")
    x = torch.randn(2, 5, 2, dtype=torch.float64, requires_grad=True)
    v0 = torch.randn(2, 6, dtype=torch.float64, requires_grad=True)
    free = dict(rnn.named_parameters())
    values = [free[n].detach().clone().requires_grad_() for n in names]
    with torch.no_grad():  # τ well above dt: no step crosses the clamp's kink
        values[1].fill_(0.5)

    def run(x, v0, *values):
        return torch.func.functional_call(rnn, dict(zip(names, values)), (x, v0))

    assert torch.autograd.gradcheck(run, (x, v0, *values))


def test_steady_state_of_a_linear_network():
    # f = identity, constant input: v* = (I - W)^-1 (b + x), reached from any start
    c = Connectivity.random(12, 12, nnz=40, seed=3)
    rnn = ConnectomeRNN(c, syn_strength=0.15, signs=torch.where(torch.arange(12) % 3 == 0, -1, 1),
                        time_const=0.05, dt=0.02, activation=lambda v: v, dtype=torch.float64)
    x = torch.linspace(-1, 1, 12, dtype=torch.float64)
    with torch.no_grad():
        rnn.bias.copy_(torch.linspace(0.5, -0.5, 12))
        out = rnn(x.expand(1, 300, 12))
        w = rnn.synapses.to_dense()
    fixed = torch.linalg.solve(torch.eye(12, dtype=torch.float64) - w, rnn.bias.detach() + x)
    torch.testing.assert_close(out[0, -1], fixed, rtol=1e-8, atol=1e-8)


def test_options_callable_names_states_and_frozen_parameters():
    c, rnn, parts = network(dtype=torch.float32, trainable=("bias",))
    x = torch.randn(2, 6, 4)
    out, states = rnn(x, return_states=True)
    assert states.shape == (2, 6, N)
    torch.testing.assert_close(states[:, :, parts["output_neurons"]], out)
    torch.testing.assert_close(rnn(lambda t: x[:, t], steps=6), out)
    out.sum().backward()
    assert rnn.free_parameter("syn_strength").grad is None
    assert rnn.free_parameter("time_const").grad is None
    assert rnn.bias.grad is not None
    assert rnn(x[:, :0]).shape == (2, 0, 3)
    # names, a Dale constraint for the signs, per-edge signs
    named = c.with_names([f"n{i}" for i in range(N)], [f"n{i}" for i in range(N)])
    by_name = ConnectomeRNN(named, signs=Dale(named, parts["signs"]),
                            input_neurons=["n0", "n3"], output_neurons="n23")
    assert by_name(torch.randn(1, 3, 2)).shape == (1, 3, 1)
    per_edge = parts["signs"][c.col_indices().long()]
    a = ConnectomeRNN(c, signs=per_edge, syn_strength=0.1)
    b = ConnectomeRNN(c, signs=parts["signs"], syn_strength=0.1)
    torch.testing.assert_close(a.synapses.weight, b.synapses.weight)
    assert "frozen" in repr(rnn)


def test_no_batch_by_nnz_tensor_is_made():
    c = Connectivity.random(300, 300, nnz=6000, seed=0)
    rnn = ConnectomeRNN(c, groups=torch.arange(6000) % 50)
    x = torch.randn(8, 5, 300)
    sizes = []

    def pack(t):
        sizes.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = rnn(x)
    out.sum().backward()
    assert max(sizes) < 8 * 6000


def test_checkpoint_of_other_wiring_is_refused():
    _, rnn, _ = network()
    _, other, _ = network(seed=1)
    with pytest.raises(WiringMismatchError, match="different wiring"):
        other.load_state_dict(rnn.state_dict())
    _, same, _ = network(syn_strength=0.3)
    same.load_state_dict(rnn.state_dict())
    torch.testing.assert_close(same.syn_strength, rnn.syn_strength)


@pytest.mark.parametrize("kw, error, match", [
    ({"syn_count": torch.ones(NNZ - 1)}, ShapeError, "one synapse count per edge"),
    ({"syn_count": -torch.ones(NNZ)}, DataError, "finite and >= 0"),
    ({"syn_count": ["a"] * NNZ}, SparseLinearTypeError, "syn_count"),
    ({"signs": torch.ones(5)}, ShapeError, "one sign per presynaptic neuron"),
    ({"signs": torch.zeros(N)}, DataError, "only \\+1 or -1"),
    ({"groups": torch.zeros(NNZ)}, SparseLinearTypeError, "integer tensor"),
    ({"groups": torch.zeros(3, dtype=torch.long)}, ShapeError, "one group index per edge"),
    ({"groups": torch.full((NNZ,), 9), "n_groups": 4}, DataError, "must lie in \\[0, 4\\)"),
    ({"n_groups": 3}, DataError, "needs 'groups'"),
    ({"dt": 0.0}, DataError, "'dt' must be a finite number > 0"),
    ({"dt": -1}, DataError, "'dt'"),
    ({"time_const": -1.0}, DataError, "'time_const' must be finite and > 0"),
    ({"syn_strength": torch.ones(3)}, ShapeError, "one per edge"),
    ({"input_neurons": ["x"]}, DataError, "no names"),
    ({"output_neurons": [N]}, DataError, "indices in \\[0, 24\\)"),
    ({"trainable": ("tau",)}, DataError, "unknown parameters"),
    ({"checkpoint_every": 0}, DataError, "checkpoint_every"),
    ({"activation": 3}, SparseLinearTypeError, "activation"),
])
def test_bad_construction_is_refused(kw, error, match):
    c = Connectivity.random(N, N, nnz=NNZ, seed=0)
    with pytest.raises(error, match=match):
        ConnectomeRNN(c, **kw)


def test_bad_patterns_and_names_are_refused():
    with pytest.raises(ShapeError, match="must be square"):
        ConnectomeRNN(Connectivity.random(4, 5, nnz=6, seed=0))
    c = Connectivity.random(N, N, nnz=NNZ, seed=0).with_names([f"n{i}" for i in range(N)],
                                                              [f"n{i}" for i in range(N)])
    with pytest.raises(DataError, match="Unknown output name 'm1'"):
        ConnectomeRNN(c, input_neurons=["n0", "m1"])
    other = Connectivity.random(N, N, nnz=NNZ, seed=5)
    with pytest.raises(WiringMismatchError, match="not for this model's pattern"):
        ConnectomeRNN(c, signs=Dale(other, torch.ones(N)))
    with pytest.raises(PatternError, match="same neurons"):
        ConnectomeRNN(c.with_names(c.out_names, list(reversed(c.in_names))))


def test_bad_inputs_are_refused():
    _, rnn, _ = network(dtype=torch.float32)
    with pytest.raises(ShapeError, match="no time axis"):
        rnn(torch.randn(2, 4))
    with pytest.raises(ShapeError, match=r"\(batch, T, 4\)"):
        rnn(torch.randn(2, 3, 5))
    with pytest.raises(SparseLinearTypeError, match="dtype"):
        rnn(torch.randn(2, 3, 4, dtype=torch.float64))
    with pytest.raises(SparseLinearTypeError, match="floating-point"):
        rnn(torch.ones(2, 3, 4, dtype=torch.long))
    with pytest.raises(DataError, match="pass 'steps'"):
        rnn(lambda t: torch.randn(2, 4))
    with pytest.raises(ShapeError, match="x\\(0\\)"):
        rnn(lambda t: torch.randn(2, 7), steps=3)
    with pytest.raises(ShapeError, match="initial_state"):
        rnn(torch.randn(2, 3, 4), torch.randn(3, N))
    with pytest.raises(SparseLinearTypeError, match="tensor"):
        rnn([1.0, 2.0])


def test_memory_estimate_counts_steps_and_checkpointing():
    _, rnn, _ = network(dtype=torch.float32)
    full = memory.estimate(rnn, batch_size=4, steps=100)
    chunked = memory.estimate_dynamics(rnn, batch_size=4, steps=100, checkpoint_every=10)
    assert isinstance(full, memory.DynamicsEstimate)
    assert chunked.category("states") < full.category("states") / 3
    assert full.gather_scatter == 100 * 4 * NNZ * 4
    assert "states kept through time" in str(full) and full.to_dict()["total"] == full.total
    with pytest.raises(ShapeError, match="pass 'steps'"):
        memory.estimate(rnn, batch_size=4)
    with pytest.raises(DataError, match="nnz"):
        memory.estimate_dynamics(100, batch_size=4, steps=3)


@pytest.mark.parametrize("trainable, activation, kept", [
    (("syn_strength", "time_const", "bias"), None, 2),  # f(v) and the increment d
    (("syn_strength", "bias"), None, 1),  # τ frozen: gain * d saves only gain
    (("syn_strength", "time_const", "bias"), torch.nn.Softplus(), 3),  # softplus saves v too
])
def test_memory_estimate_counts_the_states_backward_keeps(trainable, activation, kept):
    n, nnz, batch, steps = 300, 3_000, 4, 12
    c = Connectivity.random(n, n, nnz=nnz, seed=0)
    rnn = ConnectomeRNN(c, groups=torch.arange(nnz) % 9, input_neurons=range(5),
                        output_neurons=range(2), trainable=trainable, activation=activation)
    saved = {}

    def pack(t):
        saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        rnn(torch.randn(batch, steps, 5), torch.randn(batch, n, requires_grad=True))
    state = batch * n * 4
    states = sum(b for b in saved.values() if b == state)
    assert states == steps * kept * state  # no copy of f(v) is kept by the product
    est = memory.estimate(rnn, batch_size=batch, steps=steps)
    readout = 2 * batch * 2 * 4
    assert est.category("states") == states + steps * readout + state + nnz * 4


_MEASURE = """
import sys, torch
from sparselinear import Connectivity, ConnectomeRNN, memory
from sparselinear.memory.peak import PeakTracker
torch.set_num_threads(1)
n, nnz, batch, steps, every = {size}
memory.follow_live_memory()
memory.warm_up()
x, target = torch.randn(batch, steps, 50), torch.randn(batch, steps, 20)
memory.release_free_memory()
tracker = PeakTracker("cpu")
base = tracker.current()  # before the network: its pattern and edge data count, as estimated
c = Connectivity.random(n, n, nnz=nnz, seed=0)
groups = torch.randint(0, 500, (nnz,))
rnn = ConnectomeRNN(c, groups=groups, input_neurons=range(50), output_neurons=range(20),
                    checkpoint_every=every)
opt = torch.optim.Adam(rnn.parameters())
del c, groups
memory.release_free_memory()
tracker.start(trim=True)
for _ in range(2):
    torch.nn.functional.mse_loss(rnn(x), target).backward()
    opt.step()
    opt.zero_grad()
peak = tracker.peak() - base
print(peak, memory.estimate(rnn, batch_size=batch, steps=steps).total)
"""


@pytest.mark.slow
@pytest.mark.parametrize("size", [
    "6000, 200_000, 4, 40, None",
    "20_000, 1_000_000, 4, 100, 10",  # checkpointed
    pytest.param("45_669, 1_513_231, 4, 100, None", id="flyvis-scale"),  # ~15 s, 0.2 GB
])
def test_memory_estimate_within_15_percent_of_the_measured_peak(size):
    run = subprocess.run([sys.executable, "-c", _MEASURE.format(size=size)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    measured, estimated = map(int, run.stdout.split())
    assert estimated == pytest.approx(measured, rel=0.15), (estimated, measured)
