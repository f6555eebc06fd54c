"""The main demo (``python -m sparselinear demo``).

1. A FlyWire-sized layer — 138,639 neurons, 15,091,983 random edges generated here — is trained
   for a few steps; its measured peak is printed beside what the dense layer would cost
   (≈ 77 GB for the weight, ≈ 300 GB with gradient and Adam state).
2. The C. elegans connectome (from [`sparselinear.datasets`][sparselinear.datasets], when present)
   is trained to reproduce the responses of the same network weighted by its synapse counts.

A plot of memory against density is written to a file named on the command line.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import nn

from .. import memory
from ..errors import MissingDependencyError, SparseLinearError
from ..nn.linear import SparseLinear
from ..pattern.connectivity import Connectivity

__all__ = ["FLY_BATCH", "FLY_NNZ", "FLY_SHAPE", "run_demo", "train_celegans"]

FLY_SHAPE = (138_639, 138_639)
FLY_NNZ = 15_091_983
FLY_BATCH = 16
_SMALL_FACTOR = 10  # --small: each dimension / 10, nnz / 100 (the same density)


def _fly_layer(small: bool, steps: int, seed: int, plot: str | None, progress: bool,
               say: Callable[[str], None]) -> None:

    f = memory.format_bytes
    n = FLY_SHAPE[0] // _SMALL_FACTOR if small else FLY_SHAPE[0]
    nnz = FLY_NNZ // _SMALL_FACTOR**2 if small else FLY_NNZ
    shape = (n, n)
    est = memory.estimate(shape, nnz=nnz, batch_size=FLY_BATCH, optimizer="adam")
    dense_weight = est.category("values", dense=True)
    dense_train = dense_weight + est.category("gradients", dense=True) + est.category(
        "optimizer_state", dense=True)
    say(f"== 1. A FlyWire-sized layer{' (--small: 1/10 per side)' if small else ''}: "
        f"{n:,} neurons, {nnz:,} random edges (density {nnz / n / n:.3g}), batch {FLY_BATCH}, Adam")
    say(f"   dense nn.Linear: weight {f(dense_weight)}, with gradient and Adam state "
        f"{f(dense_train)}; this machine has {f(memory.total_memory())} of RAM.")
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
                                  desc="FlyWire-sized layer", seed=seed)
    measured = run.measurement.increase
    say(f"   built in {built['seconds']:.1f} s; {steps} steps at {run.seconds_per_step:.2f} s "
        f"each; loss {run.losses[0]:.4g} -> {run.losses[-1]:.4g}")
    say(f"   measured peak: {f(measured)} above the process baseline (estimated {f(est.total)}, "
        f"measured/estimated = {measured / est.total:.2f}); the dense layer would need "
        f"{f(dense_train)}: {dense_train / max(measured, 1):,.0f}x more.")
    if plot:
        try:
            memory.plot_memory_vs_density(shape, plot, batch_size=FLY_BATCH, nnz=nnz,
                                          measured=measured)
            say(f"   plot of memory against density written to {plot}")
        except memory.MissingDependencyError as exc:
            say(f"   no plot: {exc}")


def train_celegans(steps: int = 100, *, seed: int = 0, progress: bool = True,
                   say: Callable[[str], None] = print) -> list[float] | None:
    """Train a network wired like the C. elegans chemical connectome to reproduce the
    responses of the same network weighted by its synapse counts; return the losses, or ``None``
    (with a message) when the dataset module is not available."""
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
    with memory.track_peak("cpu") as peak:
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
             plot: str | None = "sparselinear_memory.png", progress: bool = True,
             say: Callable[[str], None] = print) -> int:
    """Run both parts of the demo; returns the exit status (0)."""
    if steps < 1:
        raise SparseLinearError(f"'steps' must be a positive integer; got {steps}.")
    if plot:
        try:
            memory.check_plot_target(plot)
        except MissingDependencyError as exc:
            say(f"(no plot will be written: {exc})")
            plot = None
    start = time.perf_counter()
    _fly_layer(small, steps, seed, plot, progress, say)
    say("== 2. The C. elegans connectome (chemical synapses), a real graph")
    train_celegans(20 if small else 100, seed=seed, progress=progress, say=say)
    say(f"done in {time.perf_counter() - start:.0f} s")
    return 0
