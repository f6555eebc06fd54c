"""Run real training steps on a layer and measure their peak (used by the CLI, the demo and the
benchmark)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .optimizers import resolve_optimizer
from .peak import Measurement, PeakTracker, release_free_memory

__all__ = ["TrainingRun", "make_optimizer", "measure_training"]


def make_optimizer(params, optimizer: str | int, lr: float = 1e-3) -> torch.optim.Optimizer:
    """A ``torch.optim`` optimizer for a name of [`OPTIMIZERS`][sparselinear.memory.OPTIMIZERS].

    An integer slot count has no real optimizer behind it: Adam (2 slots) stands in for it.
    """
    spec = resolve_optimizer(optimizer)
    params = list(params)
    if spec.kind == "sgd":
        return torch.optim.SGD(params, lr=lr)
    if spec.kind == "momentum":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    # eps=1e-8 underflows to 0 in float16 and the update divides by zero.
    eps = 1e-4 if params and params[0].dtype == torch.float16 else 1e-8
    if spec.kind == "adamw":
        return torch.optim.AdamW(params, lr=lr, eps=eps)
    return torch.optim.Adam(params, lr=lr, eps=eps)


@dataclass
class TrainingRun:
    """The measured peak of ``steps`` training steps and the loss after each."""

    measurement: Measurement
    losses: list[float]
    seconds_per_step: float


def measure_training(
    model: nn.Module | Callable[[], nn.Module],
    *,
    batch_size: int,
    in_features: int,
    out_features: int,
    optimizer: str | int = "adam",
    steps: int = 3,
    progress: bool = True,
    desc: str = "training",
    seed: int = 0,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    baseline: int | None = None,
    method: str = "auto",
) -> TrainingRun:
    """Train a model on random data for ``steps`` steps (MSE loss) and measure the peak.

    Args:
        model: maps ``(batch, in_features)`` to ``(batch, out_features)``; or a function that
            builds it, called after the data exist and the baseline is taken, so that the
            measurement's ``increase`` covers the model and its training but not the data
            batch: the quantity [`estimate`][sparselinear.memory.estimate] predicts.
        baseline: bytes in use before anything was built (the data batch, made here, is added
            to it); default: the memory in use just before the model is built (or, for a built
            model, just before training).
        device: of the data (default: the model's).
        dtype: of the data (default: the model's).
        progress: show a tqdm progress bar.
        method: how the CPU peak is measured: ``"auto"``, ``"reset"`` (exact; resets the
            process's high-water mark, which ``getrusage`` and ``/usr/bin/time`` report) or
            ``"sample"`` (leaves it alone); see [`track_peak`][sparselinear.memory.track_peak].

    Returns:
        A [`TrainingRun`][sparselinear.memory.TrainingRun].
    """
    from tqdm.auto import tqdm  # imported before the baseline is taken

    device = torch.device(device or "cpu")
    gen = torch.Generator(device="cpu").manual_seed(seed)
    x = torch.randn(batch_size, in_features, generator=gen, dtype=dtype).to(device)
    target = torch.randn(batch_size, out_features, generator=gen, dtype=dtype).to(device)
    tracker = PeakTracker(device, method)
    m = Measurement(device=str(device), method=tracker.method)
    release_free_memory()
    # The data batch is not part of what an estimate counts: it joins the baseline.
    data_bytes = x.nbytes + target.nbytes
    m.baseline = tracker.current() if baseline is None else baseline + data_bytes
    if not isinstance(model, nn.Module):
        model = model()
    param = next(model.parameters())
    x, target = x.to(param.dtype), target.to(param.dtype)
    opt = make_optimizer(model.parameters(), optimizer)
    losses = []
    tracker.start(trim=True)
    t0 = time.perf_counter()
    for _ in tqdm(range(steps), desc=desc, disable=not progress, leave=False):
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.mse_loss(model(x), target)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    m.seconds = time.perf_counter() - t0
    m.peak = max(tracker.peak(), m.baseline)
    tracker.stop()
    del opt
    return TrainingRun(m, losses, m.seconds / max(1, steps))
