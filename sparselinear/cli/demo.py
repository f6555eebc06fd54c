"""The main demo (``python -m sparselinear demo``).

1. A FlyWire-sized layer — 138,639 neurons, 15,091,983 random edges generated here — is trained
   for a few steps; its measured peak is printed beside what the dense layer would cost, as
   ``dense_figures`` reads it from the layer's [`estimate`][sparselinear.memory.estimate] (the
   README quotes the same figures, and a test keeps them equal).
2. The C. elegans connectome (from [`sparselinear.datasets`][sparselinear.datasets], when present)
   is trained to reproduce the responses of the same network weighted by its synapse counts.

A plot of memory against density is written to ``sparselinear_memory.png``
(``sparselinear_memory_small.png`` with ``--small``) or the file named with ``--plot``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import nn

from .. import memory
from ..errors import MissingDependencyError, SparseLinearError, check_choice
from ..nn.linear import SparseLinear
from ..pattern.connectivity import Connectivity

__all__ = [
    "DENSE_FIGURES",
    "FLY_BATCH",
    "FLY_NNZ",
    "FLY_SHAPE",
    "PLOT",
    "PLOT_SMALL",
    "dense_figures",
    "describe_dense",
    "fly_estimate",
    "run_demo",
    "train_celegans",
]

FLY_SHAPE = (138_639, 138_639)
FLY_NNZ = 15_091_983
FLY_BATCH = 16
_SMALL_FACTOR = 10  # --small: each dimension / 10, nnz / 100 (the same density)
PLOT = "sparselinear_memory.png"
PLOT_SMALL = "sparselinear_memory_small.png"  # --small never overwrites the full-scale plot

# What the dense equivalent costs, each figure with what it counts (key, label).
DENSE_FIGURES = (
    ("weight", "weight alone"),
    ("state", "with its gradient and Adam state"),
    ("step", "a whole training step"),
)


def fly_estimate(small: bool = False) -> memory.MemoryEstimate:
    """The estimate of the demo's layer: the FlyWire-sized layer (1/10 per side with ``small``),
    batch 16, Adam. The demo prints it; the README's dense figures are read from it."""
    n = FLY_SHAPE[0] // _SMALL_FACTOR if small else FLY_SHAPE[0]
    nnz = FLY_NNZ // _SMALL_FACTOR**2 if small else FLY_NNZ
    return memory.estimate((n, n), nnz=nnz, batch_size=FLY_BATCH, optimizer="adam")


def dense_figures(est: memory.MemoryEstimate) -> dict[str, int]:
    """Bytes of the dense ``nn.Linear`` equivalent of ``est``'s layer: ``"weight"`` (the weight
    alone), ``"state"`` (weight, gradient and optimizer state: what training keeps between
    steps) and ``"step"`` (the estimate's dense total: that plus activations and working memory,
    the peak of a training step)."""
    weight = est.category("values", dense=True)
    state = (weight + est.category("gradients", dense=True)
             + est.category("optimizer_state", dense=True))
    return {"weight": weight, "state": state, "step": est.dense_total}


def describe_dense(est: memory.MemoryEstimate) -> str:
    """The dense figures as the demo and the README write them.

    Examples:
        >>> from sparselinear.cli.demo import describe_dense, fly_estimate
        >>> for part in describe_dense(fly_estimate()).split("; "):
        ...     print(part)
        weight alone: 76.9 GB
        with its gradient and Adam state: 307.5 GB
        a whole training step: 461.3 GB
    """
    figures = dense_figures(est)
    return "; ".join(f"{label}: {memory.format_bytes(figures[key])}"
                     for key, label in DENSE_FIGURES)


def _fly_layer(small: bool, steps: int, seed: int, plot: str | None, progress: bool,
               say: Callable[[str], None], method: str = "auto") -> None:

    f = memory.format_bytes
    est = fly_estimate(small)
    shape = est.layers[0].shape
    n, nnz = shape[0], est.layers[0].nnz
    dense_step = dense_figures(est)["step"]
    say(f"== 1. A FlyWire-sized layer{' (--small: 1/10 per side)' if small else ''}: "
        f"{n:,} neurons, {nnz:,} random edges (density {nnz / n / n:.3g}), batch {FLY_BATCH}, Adam")
    say(f"   dense nn.Linear (estimate) — {describe_dense(est)}; this machine has "
        f"{f(memory.total_memory())} of RAM.")
    say(f"   sparse estimate: {f(est.total)} per training step "
        f"(weight {f(est.category('values'))}, pattern {f(est.category('pattern'))}, "
        f"Adam state {f(est.category('optimizer_state'))}).")

    memory.check_fits(max(est.total, memory.BUILD_BYTES_PER_EDGE * nnz), None, "The demo layer")
    memory.follow_live_memory()
    memory.warm_up()
    built = {}

    def build() -> nn.Module:
        t0 = time.perf_counter()
        conn = Connectivity.random(n, n, nnz=nnz, seed=seed)
        layer = SparseLinear(n, n, conn)
        built["seconds"] = time.perf_counter() - t0
        return layer

    say("   generating the pattern and training ...")
    run = memory.measure_training(build, batch_size=FLY_BATCH, in_features=n, out_features=n,
                                  optimizer="adam", steps=steps, progress=progress,
                                  desc="FlyWire-sized layer", seed=seed, method=method)
    measured = run.measurement.increase
    per_step = memory.format_seconds(run.seconds_per_step)
    timing = f"{steps} steps at {per_step} each" if steps > 1 else f"1 step in {per_step}"
    say(f"   built in {memory.format_seconds(built['seconds'])}; {timing}; "
        f"loss {run.losses[0]:.4g} -> {run.losses[-1]:.4g}")
    say(f"   measured peak: {f(measured)} above the process baseline (estimated {f(est.total)}, "
        f"measured/estimated = {measured / est.total:.2f}); a whole dense training step would "
        f"need {f(dense_step)}: {dense_step / max(measured, 1):,.0f}x more.")
    if plot:
        try:
            memory.plot_memory_vs_density(shape, plot, batch_size=FLY_BATCH, nnz=nnz,
                                          measured=measured)
            say(f"   plot of memory against density written to {plot}")
        except memory.MissingDependencyError as exc:
            say(f"   no plot: {exc}")


def train_celegans(steps: int = 100, *, seed: int = 0, progress: bool = True,
                   say: Callable[[str], None] = print,
                   method: str = "auto") -> list[float] | None:
    """Train a network wired like the C. elegans chemical connectome to reproduce the
    responses of the same network weighted by its synapse counts; return the losses, or ``None``
    (with a message) when the dataset module is not available. ``method``: how the peak is
    measured ([`track_peak`][sparselinear.memory.track_peak])."""
    try:
        from ..datasets import load_celegans
    except ImportError:
        say("   skipped: the C. elegans connectome ships with `sparselinear.datasets`, which is "
            "not part of this installation.")
        return None
    from tqdm.auto import tqdm


    try:
        connectivity, counts = load_celegans(synapse_type="chemical")
    except (SparseLinearError, OSError) as exc:
        say(f"   skipped: could not load the C. elegans connectome: {exc}")
        return None
    n_out, n_in = connectivity.shape
    say(f"   {n_out} neurons, {connectivity.nnz:,} chemical connections, "
        f"{int(counts.sum()):,} synapses")
    gen = torch.Generator().manual_seed(seed)
    teacher = SparseLinear(n_in, n_out, connectivity, bias=False)
    with torch.no_grad():
        scale = counts.float() / counts.float().mean()
        fan_in = connectivity.fan_in().clamp(min=1).float()
        per_edge = torch.repeat_interleave(fan_in.rsqrt(), connectivity.fan_in().long())
        sign = torch.where(torch.rand(connectivity.nnz, generator=gen) < 0.8, 1.0, -1.0)
        teacher.weight.copy_(scale * per_edge * sign)
    student = SparseLinear(n_in, n_out, connectivity)

    def unroll(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
        h = torch.zeros(x.shape[0], n_out)
        for _ in range(ticks):
            h = torch.tanh(layer(h) + x) if n_in == n_out else torch.tanh(layer(x))
        return h

    ticks = 3
    est = memory.estimate(student, batch_size=64 * ticks, optimizer="adam")
    opt = torch.optim.Adam(student.parameters(), lr=1e-2)
    losses = []
    with memory.track_peak("cpu", method) as peak:
        for _ in tqdm(range(steps), desc="C. elegans", disable=not progress, leave=False):
            x = torch.randn(64, n_in, generator=gen)
            with torch.no_grad():
                target = unroll(teacher, x)
            loss = nn.functional.mse_loss(unroll(student, x), target)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
    say(f"   {steps} Adam steps ({ticks} recurrent ticks each): loss {losses[0]:.4f} -> "
        f"{losses[-1]:.4f}; peak {memory.format_bytes(peak.increase)} above baseline "
        f"(estimate for the layer over {ticks} ticks: {memory.format_bytes(est.total)}; "
        f"the tanh activations and the data come on top)")
    return losses


def run_demo(*, small: bool = False, steps: int = 3, seed: int = 0,
             plot: str | None = "", progress: bool = True,
             say: Callable[[str], None] = print, method: str = "auto") -> int:
    """Run both parts of the demo; returns the exit status (0).

    Args:
        plot: where to write the plot; ``""`` (default): ``PLOT``, or ``PLOT_SMALL``
            with ``small``, so that a small run never overwrites the full-scale plot; ``None``:
            no plot.
        method: how peaks are measured on CPU: ``"auto"``, ``"reset"`` (exact; resets the
            process's high-water mark, so that ``/usr/bin/time`` then reports the peak of the
            last measured steps, not the demo's) or ``"sample"`` (leaves it alone); see
            [`track_peak`][sparselinear.memory.track_peak].
    """
    if steps < 1:
        raise SparseLinearError(f"'steps' must be a positive integer; got {steps}.")
    check_choice(method, memory.METHODS, "method")
    if plot == "":
        plot = PLOT_SMALL if small else PLOT
    if plot:
        try:
            memory.check_plot_target(plot)
        except MissingDependencyError as exc:
            say(f"(no plot will be written: {exc})")
            plot = None
    start = time.perf_counter()
    _fly_layer(small, steps, seed, plot, progress, say, method)
    say("== 2. The C. elegans connectome (chemical synapses), a real graph")
    train_celegans(20 if small else 100, seed=seed, progress=progress, say=say, method=method)
    say(f"done in {time.perf_counter() - start:.0f} s")
    return 0
