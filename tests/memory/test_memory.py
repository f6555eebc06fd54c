import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from sparselinear import Connectivity, SparseLinear, kernels, memory
from sparselinear.constraints import Sign, constrain
from sparselinear.errors import ShapeError, SparseLinearError, SparseLinearTypeError
from sparselinear.memory.transients import optimizer_transient
from sparselinear.ops import _ext, policy
from sparselinear.ops.policy import TRANSPOSE_BUILD_BYTES_PER_EDGE

ROOT = Path(__file__).resolve().parents[2]
MB = 1e6

# A (30, 20) layer with 100 edges, batch 8, float32 parameters, int32 indices.
OUT, IN, NNZ, BATCH = 30, 20, 100, 8
VALUES = 4 * (NNZ + OUT)  # weight + bias
PATTERN = 4 * ((OUT + 1) + NNZ)  # crow, col
TRANSPOSED = 4 * ((IN + 1) + 2 * NNZ)  # crow_t, row_t, perm: only where a step reads them
ACTIVATIONS = BATCH * (IN + OUT) * 4  # saved input copy + output
DENSE_VALUES = 4 * (OUT * IN + OUT)


def small(**kw):
    return memory.estimate((OUT, IN), nnz=NNZ, batch_size=BATCH, **kw)


@pytest.mark.parametrize(
    "optimizer, slots", [("sgd", 0), ("momentum", 1), ("adam", 2), ("adamw", 2), (3, 3), (0, 0)]
)
def test_estimate_bytes_per_optimizer(optimizer, slots):
    est = small(optimizer=optimizer)
    layer = est.layers[0]
    assert layer.sparse["values"] == VALUES == 520
    assert layer.sparse["gradients"] == VALUES
    assert layer.sparse["optimizer_state"] == slots * VALUES
    assert layer.sparse["pattern"] == PATTERN == 524
    assert layer.sparse["activations"] == ACTIVATIONS == 1600
    assert layer.dense["values"] == DENSE_VALUES == 2520
    assert layer.dense["optimizer_state"] == slots * DENSE_VALUES
    assert layer.dense["pattern"] == 0
    assert est.optimizer_slots == slots
    assert est.total == sum(layer.sparse.values())
    assert est.dense_total == sum(layer.dense.values())


NEEDS_EXT = pytest.mark.skipif(not _ext.available(), reason="compiled kernels unavailable")


def plan(*, itemsize=4, index_itemsize=4, compiled=False, threads=1, **kw):
    """The policy's plan of a CPU step, by item sizes."""
    dtype = {2: torch.float16, 4: torch.float32, 8: torch.float64}[itemsize]
    index_dtype = {4: torch.int32, 8: torch.int64}[index_itemsize]
    return policy.plan_step(dtype=dtype, device="cpu", index_dtype=index_dtype,
                            compiled=compiled, threads=threads, **kw)


@pytest.fixture
def torch_kernels():
    with kernels.use_backend("torch"):
        yield


def test_working_memory_of_the_compiled_kernels_hand_computed(monkeypatch):
    kw = dict(n_out=OUT, n_in=IN, nnz=NNZ, batch=BATCH, itemsize=4, index_itemsize=4, compiled=True)
    t = plan(needs_input_grad=False, threads=2, **kw)
    assert t.forward_bytes == 0  # the kernel writes the output itself
    assert t.backward_bytes == 0  # grad_y read in place; the weight gradient counts as a gradient
    fused = plan(needs_input_grad=True, threads=2, **kw)
    # private buffers + their sum
    assert fused.backward_bytes == 2 * IN * BATCH * 4 + IN * BATCH * 4
    single = plan(needs_input_grad=True, threads=1, **kw)
    assert single.backward_bytes == 2 * IN * BATCH * 4
    half = plan(**{**kw, "itemsize": 2}, needs_input_grad=False, threads=2)
    # the float32 result beside its cast and the weight's float32 copy; in backward the float32
    # grad_y, the weight's copy and the float32 weight gradient beside its cast
    assert half.forward_bytes == OUT * BATCH * 4 + NNZ * 4
    assert half.backward_bytes == OUT * BATCH * 4 + 2 * NNZ * 4
    wide = plan(**{**kw, "batch": 256}, needs_input_grad=True, threads=2)
    # the (out, batch) copy of grad_y, grad_x gathered over the transposed pattern (with the
    # weight gradient) and its batch-major copy (more than building the pattern here)
    assert wide.backward_bytes == OUT * 256 * 4 + 2 * IN * 256 * 4
    monkeypatch.setattr("sparselinear.kernels.PRIVATE_BYTES", 0)
    no_private = plan(**kw, needs_input_grad=True, threads=2)
    # narrow batch without private buffers: grad_x written batch-major in place, or building
    # the transposed pattern, whichever is larger
    build = TRANSPOSE_BUILD_BYTES_PER_EDGE * NNZ
    assert no_private.backward_bytes == OUT * BATCH * 4 + max(IN * BATCH * 4, build)
    assert wide.forward_bytes == OUT * 256 * 4  # the (out, batch) result before its transposed copy
    only_w = plan(**{**kw, "batch": 256}, needs_input_grad=False, threads=2)
    assert only_w.backward_bytes == OUT * 256 * 4


def test_working_memory_hand_computed(torch_kernels):
    t = plan(n_out=OUT, n_in=IN, nnz=NNZ, batch=BATCH, itemsize=4,
                        index_itemsize=4, needs_input_grad=False)
    assert t.forward_bytes == OUT * BATCH * 4  # y_t beside the output
    assert t.backward_bytes == OUT * BATCH * 4 + NNZ * (2 * 4 + 8)  # g_t + sddmm chunk temporaries
    t2 = plan(n_out=OUT, n_in=IN, nnz=NNZ, batch=BATCH, itemsize=4,
                         index_itemsize=4, needs_input_grad=True)
    # + the gathered weight copy and grad_x while sddmm runs
    assert t2.backward_bytes == t.backward_bytes + NNZ * 4 + IN * BATCH * 4
    assert optimizer_transient("adam", [NNZ, OUT], 4, "cpu") == 2 * NNZ * 4
    # the previous parameter's result is alive while the next one's are computed
    assert optimizer_transient("adam", [OUT, NNZ], 4, "cpu") == (OUT + 2 * NNZ) * 4
    assert optimizer_transient("adam", [NNZ, OUT], 4, "cuda") == (NNZ + OUT) * 4
    assert optimizer_transient("momentum", [NNZ, OUT], 4, "cpu") == 0
    assert optimizer_transient("adam", [NNZ, OUT], 4, "cpu", "foreach") == (NNZ + OUT) * 4
    assert optimizer_transient("adam", [NNZ, OUT], 4, "cpu", "fused") == 0
    assert optimizer_transient("adam", [NNZ, OUT], 4, "cuda", "for-loop") == 2 * NNZ * 4
    assert small(optimizer="sgd").layers[0].sparse["working"] == t.backward_bytes
    assert small(input_requires_grad=True).layers[0].sparse["working"] == t2.backward_bytes


@pytest.mark.parametrize(
    "backend, batch, input_grad, transposed",
    [
        ("torch", BATCH, False, False),  # no grad_input: the transposed pattern is never read
        ("torch", BATCH, True, True),
        pytest.param("extension", BATCH, True, False, marks=NEEDS_EXT),  # the fused pass
        pytest.param("extension", 65, True, True, marks=NEEDS_EXT),  # the gather form
        pytest.param("extension", 65, False, False, marks=NEEDS_EXT),
    ],
)
def test_transposed_pattern_is_counted_only_where_a_step_reads_it(
    backend, batch, input_grad, transposed
):
    with kernels.use_backend(backend):
        est = memory.estimate((OUT, IN), nnz=NNZ, batch_size=batch, input_requires_grad=input_grad)
    assert est.layers[0].sparse["pattern"] == PATTERN + (TRANSPOSED if transposed else 0)


def test_building_the_transposed_pattern_counts_once_in_the_backward_peak():
    kw = dict(n_out=OUT, n_in=IN, nnz=10_000, itemsize=4, index_itemsize=4,
              needs_input_grad=True, threads=2)
    gather = plan(batch=256, compiled=True, **kw)
    assert gather.transposed
    # the (out, batch) copy of grad_y and building the transposed pattern (larger than the
    # values in its order, grad_x and its copy: 4 * 10_000 + 2 * IN * 256 * 4)
    assert gather.backward_bytes == OUT * 256 * 4 + TRANSPOSE_BUILD_BYTES_PER_EDGE * 10_000
    fused = plan(batch=8, compiled=True, **kw)
    assert not fused.transposed and fused.backward_bytes < TRANSPOSE_BUILD_BYTES_PER_EDGE * 10_000
    assert plan(batch=8, compiled=False, **kw).transposed


def test_estimate_dtype_and_index_dtype():
    est = small(optimizer="sgd", dtype=torch.float64, bias=False)
    assert est.layers[0].sparse["values"] == 8 * NNZ
    assert est.layers[0].dtype == "float64"
    big = memory.estimate((2**31, 2), nnz=10, batch_size=1, optimizer="sgd", bias=False)
    assert big.layers[0].index_dtype == "int64"
    assert big.layers[0].sparse["pattern"] == 8 * ((2**31 + 1) + 10)
    assert memory.estimate((OUT, IN), density=0.5, batch_size=1).layers[0].nnz == 300


def test_estimate_of_connectivity_and_module_agree_with_shape():
    conn = Connectivity.random(OUT, IN, nnz=NNZ, seed=0)
    by_shape = small()
    assert memory.estimate(conn, batch_size=BATCH).to_dict() == by_shape.to_dict()
    layer = SparseLinear(IN, OUT, conn)
    by_module = memory.estimate(layer, batch_size=BATCH)
    assert by_module.layers[0].sparse == by_shape.layers[0].sparse
    opt = torch.optim.SGD(layer.parameters(), lr=0.1, momentum=0.9)
    assert memory.estimate(layer, batch_size=BATCH, optimizer=opt).optimizer_slots == 1


def test_estimate_of_a_model_with_other_parameters(torch_kernels):
    c1 = Connectivity.random(OUT, IN, nnz=NNZ, seed=0)
    c2 = Connectivity.random(IN, OUT, nnz=50, seed=1)
    model = nn.Sequential(SparseLinear(IN, OUT, c1), nn.ReLU(), SparseLinear(OUT, IN, c2),
                          nn.Linear(IN, 5))
    est = memory.estimate(model, batch_size=BATCH, optimizer="adam")
    assert [lay.name for lay in est.layers] == ["0", "2"]
    other = 4 * (IN * 5 + 5)
    assert est.other == {"values": other, "gradients": other, "optimizer_state": 2 * other}
    assert est.category("values") == VALUES + 4 * (50 + IN) + other
    # the second layer computes grad_input, the first does not
    w0, w2 = (lay.sparse["working"] for lay in est.layers)
    t = plan(n_out=IN, n_in=OUT, nnz=50, batch=BATCH, itemsize=4,
                        index_itemsize=4, needs_input_grad=True)
    assert w2 == max(t.forward_bytes, t.backward_bytes)
    assert est.working == max(w0, w2)
    text = str(est)
    assert "dense equivalent" in text and "pattern buffers" in text and "other parameters" in text
    assert json.loads(json.dumps(est.to_dict()))["sparse"]["total"] == est.total


def test_str_and_to_dict():
    est = memory.estimate((138_639, 138_639), nnz=15_091_983, batch_size=16)
    text = str(est)
    for label in ("weight values", "gradients", "optimizer state", "pattern buffers",
                  "activations", "working memory", "total (peak)", "76.9 GB"):
        assert label in text
    d = est.to_dict()
    assert d["layers"][0]["nnz"] == 15_091_983
    assert d["dense"]["values"] == 4 * (138_639**2 + 138_639)
    assert d["sparse"]["total"] == est.total


def test_format_bytes():
    assert memory.format_bytes(0) == "0 B"
    assert memory.format_bytes(1500) == "1.5 kB"
    assert memory.format_bytes(2.5e12) == "2.5 TB"
    assert memory.format_bytes(5e15) == "5000.0 TB"


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"batch_size": 0}, ShapeError, "'batch_size' must be a positive int"),
        ({"batch_size": 2.5}, ShapeError, "'batch_size' must be a positive int"),
        ({"batch_size": 1, "dtype": torch.int32}, SparseLinearTypeError, "'dtype' must be"),
        ({"batch_size": 1, "dtype": "float99"}, SparseLinearTypeError, "'dtype' must be"),
        ({"batch_size": 1, "optimizer": "rmsprop"}, SparseLinearTypeError, "one of sgd"),
        ({"batch_size": 1, "optimizer": -1}, SparseLinearTypeError, "non-negative int"),
        ({"batch_size": 1, "optimizer": 1.5}, SparseLinearTypeError, "got float"),
    ],
)
def test_estimate_argument_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        memory.estimate((OUT, IN), nnz=NNZ, **kwargs)


def test_estimate_description_errors():
    with pytest.raises(ShapeError, match="'nnz' must be an integer in"):
        memory.estimate((3, 3), nnz=10, batch_size=1)
    with pytest.raises(ShapeError, match="'density' must lie in"):
        memory.estimate((3, 3), density=1.5, batch_size=1)
    with pytest.raises(ShapeError, match="exactly one of"):
        memory.estimate((3, 3), batch_size=1)
    with pytest.raises(ShapeError, match="must be non-negative"):
        memory.estimate((-3, 3), nnz=1, batch_size=1)
    with pytest.raises(SparseLinearTypeError, match=r"'model' must be an nn\.Module"):
        memory.estimate("big", nnz=1, batch_size=1)
    with pytest.raises(ShapeError, match="not with a Connectivity"):
        memory.estimate(Connectivity.random(3, 3, nnz=2, seed=0), nnz=2, batch_size=1)


def test_optimizer_from_instance():
    p = [nn.Parameter(torch.zeros(3))]
    assert memory.resolve_optimizer(torch.optim.Adam(p, amsgrad=True)).slots == 3
    assert memory.resolve_optimizer(torch.optim.AdamW(p)).kind == "adamw"
    assert memory.resolve_optimizer(torch.optim.SGD(p, lr=0.1)).slots == 0
    assert memory.resolve_optimizer(torch.optim.RMSprop(p, momentum=0.9, centered=True)).slots == 3
    assert memory.resolve_optimizer(torch.optim.Adagrad(p)).slots == 1
    fused = memory.resolve_optimizer(torch.optim.Adam(p, fused=True))
    assert fused.implementation == "fused" and fused.label == "Adam (fused)"
    assert memory.resolve_optimizer(torch.optim.Adam(p, foreach=True)).implementation == "foreach"
    assert memory.resolve_optimizer(torch.optim.Adam(p)).implementation is None
    loop = memory.resolve_optimizer(torch.optim.Adam(p, foreach=False, amsgrad=True))
    assert loop.implementation == "for-loop" and loop.label == "Adam (amsgrad, for-loop)"
    with pytest.raises(SparseLinearTypeError, match="Cannot tell how much state LBFGS"):
        memory.resolve_optimizer(torch.optim.LBFGS(p))


def test_estimate_of_a_model_follows_the_optimizers_implementation_and_order(monkeypatch):
    model = nn.Sequential(
        SparseLinear(30, 20, Connectivity.random(20, 30, nnz=400, seed=0), bias=False),
        nn.Linear(20, 20),
        SparseLinear(20, 10, Connectivity.random(10, 20, nnz=150, seed=1), bias=False),
    )
    calls = []

    def recording(kind, sizes, itemsize, device_type, implementation=None):
        calls.append((sizes, implementation))
        return optimizer_transient(kind, sizes, itemsize, device_type, implementation)

    estimate_module = sys.modules["sparselinear.memory.estimate"]  # the name is the function's
    monkeypatch.setattr(estimate_module, "optimizer_transient", recording)

    def passed(**kwargs):
        calls.clear()
        memory.estimate(model, batch_size=1, optimizer=torch.optim.Adam(model.parameters(),
                                                                         **kwargs))
        return calls[-2]  # the model-level calls: the sparse sizes, then the dense equivalents

    # the trained parameters in parameters() order, no placeholder for a missing bias
    assert passed()[0] == [400, 400, 20, 150]
    assert passed(fused=True)[1] == "fused" and passed(foreach=True)[1] == "foreach"
    model[1].weight.requires_grad_(False)  # not updated: no temporaries for it
    assert passed()[0] == [400, 20, 150]
    calls.clear()
    memory.estimate(model, batch_size=1, optimizer="adam")
    assert calls[-2][0] == [400, 20, 150] and calls[-1][0] == [600, 20, 200]  # dense: out * in
    # a constrained bias keeps its own size in the dense equivalent; a constrained weight's free
    # parameter takes the dense weight's
    model[2].bias = nn.Parameter(torch.ones(10))
    constrain(model[2], Sign(torch.ones(10)), name="bias")
    constrain(model[0], Sign(torch.ones(400)))
    calls.clear()
    memory.estimate(model, batch_size=1, optimizer="adam")
    assert calls[-1][0] == [600, 20, 200, 10]


_ADAM = """
import json, sys
import torch
sys.path.insert(0, {root!r})
from sparselinear import memory
memory.follow_live_memory()
out = []
for implementation in (None, "foreach", "fused"):
    params = [torch.nn.Parameter(torch.randn(n)) for n in {sizes!r}]
    kwargs = {{implementation: True}} if implementation else {{}}
    opt = torch.optim.Adam(params, lr=1e-3, **kwargs)
    for p in params:
        p.grad = torch.randn_like(p)
    opt.step()  # creates the state
    out.append([implementation, memory.measure(opt.step).increase])
    del opt, params
print(json.dumps(out))
"""


def test_adam_temporaries_match_the_model():
    # In a fresh process whose allocator returns freed memory, so that the peak is exactly
    # what the step held.
    sizes = [6_000_000, 4_000_000]
    code = _ADAM.format(root=str(ROOT), sizes=sizes)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    for implementation, measured in json.loads(out.strip().splitlines()[-1]):
        expected = optimizer_transient("adam", sizes, 4, "cpu", implementation)
        assert abs(measured - expected) <= max(2e6, 0.1 * expected), (implementation, measured)


# ---------------------------------------------------------------------------- measurement
def _allocate(n_bytes: int, hold: float = 0.0) -> torch.Tensor:
    t = torch.ones(n_bytes // 4)
    time.sleep(hold)
    return t


def test_measure_sees_a_200mb_allocation():
    m = memory.measure(_allocate, 200_000_000)
    assert m.result.numel() == 50_000_000
    assert m.device == "cpu"
    assert abs(m.increase - 200e6) < 0.1 * 200e6, m
    assert "above the" in str(m)


def test_measure_is_per_call_not_lifetime():
    memory.measure(_allocate, 300_000_000)  # freed again: must not count for the next call
    m = memory.measure(_allocate, 20_000_000)
    assert m.increase < 60e6, m


def test_sampling_fallback(monkeypatch):
    from sparselinear.memory import peak as measure_mod

    monkeypatch.setattr(measure_mod, "_CLEAR_REFS_OK", False)
    with memory.track_peak("cpu") as m:
        t = _allocate(200_000_000, hold=0.05)
        del t
    assert m.method == "sample"
    assert abs(m.increase - 200e6) < 0.1 * 200e6, m
    with pytest.raises(ValueError, match="method='sample'"):
        memory.track_peak("cpu", method="reset").__enter__()


def _max_rss() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss in kB, /proc")
def test_sampling_leaves_the_process_high_water_mark_alone(monkeypatch, tmp_path):
    """method="sample" never writes clear_refs (nor probes it), so getrusage and /usr/bin/time
    still report the lifetime peak afterwards, and it sees a known allocation."""
    from sparselinear.memory import peak as peak_mod

    def no_probe():
        raise AssertionError("clear_refs probed")

    t = _allocate(400_000_000)  # a lifetime peak well above what follows
    del t
    before = _max_rss()
    decoy = tmp_path / "clear_refs"
    monkeypatch.setattr(peak_mod, "_CLEAR_REFS", str(decoy))  # a write would land here
    monkeypatch.setattr(peak_mod, "_can_clear_refs", no_probe)
    with memory.track_peak("cpu", method="sample") as m:
        t = _allocate(100_000_000, hold=0.05)
        del t
    run = memory.measure_training(nn.Linear(64, 32), batch_size=4, in_features=64,
                                  out_features=32, steps=1, progress=False, method="sample")
    breakdown = memory.step_breakdown(nn.Linear(8, 8), lambda: None, method="sample")
    assert m.method == run.measurement.method == breakdown.method == "sample"
    assert abs(m.increase - 100e6) < 0.1 * 100e6, m  # a plausible peak for the allocation
    assert not decoy.exists()
    assert _max_rss() >= before


def test_unknown_measuring_method_is_refused():
    with pytest.raises(ValueError, match="'method' must be one of 'auto', 'reset', 'sample'"):
        memory.track_peak("cpu", method="vmhwm").__enter__()


def test_check_fits():
    memory.check_fits(1000)
    with pytest.raises(memory.InsufficientMemoryError, match=r"needs about 5000\.0 TB but"):
        memory.check_fits(int(5e15), what="This layer")
    with pytest.raises(MemoryError):
        memory.check_fits(int(5e15))
    assert memory.total_memory() >= memory.available_memory() > 0


class _Hungry(nn.Module):
    """Allocates a large temporary in forward."""

    def forward(self, x):
        big = torch.ones(40_000_000)  # 160 MB
        return x + big[:1]


def test_step_breakdown_names_the_module_that_raised_the_peak():
    conn = Connectivity.random(40, 60, nnz=300, seed=0)
    model = nn.Sequential(SparseLinear(60, 40, conn), nn.ReLU(), _Hungry(),
                          SparseLinear(40, 10, Connectivity.random(10, 40, nnz=100, seed=1)))
    opt = torch.optim.Adam(model.parameters())

    def step():
        opt.zero_grad()
        model(torch.randn(16, 60)).square().mean().backward()
        opt.step()

    report = memory.step_breakdown(model, step, optimizer=opt)
    seen = {(s.name, s.phase) for s in report.segments}
    for name in ("0", "3"):
        assert (name, "forward") in seen and (name, "backward") in seen
    assert ("optimizer", "step") in seen
    assert report.top.name == "2" and report.top.phase == "forward"
    assert report.peak - report.baseline > 150e6
    assert "<- peak" in str(report)
    assert report.to_dict()["segments"][0]["above_baseline"] >= 0


def test_step_breakdown_errors():
    with pytest.raises(SparseLinearTypeError, match=r"'model' must be an nn\.Module"):
        memory.step_breakdown("model", lambda: None)
    with pytest.raises(SparseLinearTypeError, match="'step' must be a function"):
        memory.step_breakdown(nn.Linear(2, 2), 3)


def test_measure_training_runs_real_steps():
    conn = Connectivity.random(50, 40, nnz=200, seed=0)
    run = memory.measure_training(lambda: SparseLinear(40, 50, conn), batch_size=8,
                                  in_features=40, out_features=50, optimizer="momentum",
                                  steps=3, progress=False)
    assert len(run.losses) == 3 and run.losses[-1] < run.losses[0]
    assert run.measurement.peak >= run.measurement.baseline


_COMPARE = """
import json, sys
import torch
sys.path.insert(0, {root!r})
from sparselinear import Connectivity, SparseLinear, kernels, memory
memory.follow_live_memory()
memory.warm_up()
results = []
for n, nnz, batch, opt, dtype in {cases!r}:
    dtype = getattr(torch, dtype)
    est = memory.estimate((n, n), nnz=nnz, batch_size=batch, optimizer=opt, dtype=dtype)
    build = lambda: SparseLinear(n, n, Connectivity.random(n, n, nnz=nnz, seed=0), dtype=dtype)
    run = memory.measure_training(build, batch_size=batch, in_features=n, out_features=n,
                                  optimizer=opt, steps=2, progress=False, dtype=dtype)
    results.append([est.total, run.measurement.increase])
    del run
print(json.dumps(results))
"""


def test_estimate_matches_measurement_at_small_size():
    # In a fresh process, with the allocator returning freed memory (as the CLI does).
    # float16 weights: computed in float32, with float32 temporaries the estimate counts
    cases = [(6000, 600_000, 32, "adam", "float32"), (2000, 100_000, 256, "sgd", "float32"),
             (6000, 2_000_000, 32, "sgd", "float16")]
    code = _COMPARE.format(root=str(ROOT), cases=cases)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    for estimated, measured in json.loads(out.strip().splitlines()[-1]):
        assert measured == pytest.approx(estimated, rel=0.2), (estimated, measured)


_TRIANGLE = """
import json, sys
sys.path.insert(0, {root!r})
from sparselinear import Connectivity, SparseLinear, memory
memory.follow_live_memory()
memory.warm_up()
results = {{}}
for mode in {modes!r}:
    build = lambda: SparseLinear(3000, 3000, Connectivity.tril(3000, 3000), mode=mode)
    run = memory.measure_training(build, batch_size=64, in_features=3000, out_features=3000,
                                  optimizer="adam", steps=3, progress=False)
    results[mode] = run.measurement.increase
    del run
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def triangle_peaks():
    """Measured peak above baseline of three Adam steps of a ``tril(3000)`` layer at batch 64,
    per mode, in a fresh process (the pattern built after the baseline)."""
    code = _TRIANGLE.format(root=str(ROOT), modes=("auto", "sparse", "dense"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=180).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize("mode", ["auto", "sparse", "dense"])
def test_estimate_follows_the_mode_of_a_triangle(triangle_peaks, mode):
    # auto runs dense bands here: their tiles, the tiles' gradient and the edges' positions
    # cost about 45 MB more than the sparse kernels' temporaries
    layer = SparseLinear(3000, 3000, Connectivity.tril(3000, 3000), mode=mode)
    estimated = memory.estimate(layer, batch_size=64, optimizer="adam").total
    assert triangle_peaks[mode] == pytest.approx(estimated, rel=0.15), (estimated, triangle_peaks)
    sparse = memory.estimate(layer, batch_size=64, optimizer="adam", mode="sparse").total
    if mode != "sparse":
        assert estimated > sparse + 30 * MB


# ---------------------------------------------------------------------------- plot
def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "mem.png"
    out = memory.plot_memory_vs_density((1000, 2000), path, batch_size=16, nnz=5000,
                                        measured=200_000)
    assert out == str(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_errors(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    with pytest.raises(SparseLinearError, match="Cannot write the plot"):
        memory.plot_memory_vs_density((10, 10), tmp_path / "no" / "x.png", batch_size=1)
    with pytest.raises(SparseLinearError, match="empty shape"):
        memory.plot_memory_vs_density((0, 10), tmp_path / "x.png", batch_size=1)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(memory.MissingDependencyError, match="pip install matplotlib"):
        memory.plot_memory_vs_density((10, 10), tmp_path / "x.png", batch_size=1)
