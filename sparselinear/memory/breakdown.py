"""Which module raised the peak: the memory of one training step, split by module and phase.

Hooks mark a boundary whenever a leaf module's forward starts or ends, its backward starts (the
gradient of its output arrives), the backward pass ends, and the optimizer step starts or ends.
Between two boundaries the peak tracker is read and reset, so each segment gets its own peak.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import SparseLinearTypeError, describe
from .peak import PeakTracker, default_device
from .units import format_bytes

__all__ = ["SegmentPeak", "StepBreakdown", "step_breakdown"]


@dataclass
class SegmentPeak:
    """The highest memory in use while ``name`` ran its ``phase``."""

    name: str
    phase: str  # "forward", "backward", "step" or "other"
    peak: int


@dataclass
class StepBreakdown:
    """Peak memory of one training step by module and phase. ``str()`` gives a table."""

    device: str
    method: str
    baseline: int
    peak: int
    segments: list[SegmentPeak] = field(default_factory=list)

    @property
    def top(self) -> SegmentPeak | None:
        """The segment during which the step's peak was reached."""
        return max(self.segments, key=lambda s: s.peak, default=None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "method": self.method,
            "baseline": self.baseline,
            "peak": self.peak,
            "segments": [
                {"name": s.name, "phase": s.phase, "peak": s.peak,
                 "above_baseline": s.peak - self.baseline}
                for s in self.segments
            ],
        }

    def __str__(self) -> str:
        top = self.top
        lines = [
            f"Peak of one step: {format_bytes(self.peak)} on {self.device} "
            f"({format_bytes(self.peak - self.baseline)} above the "
            f"{format_bytes(self.baseline)} in use before)"
        ]
        width = max([len(f"{s.phase}: {s.name}") for s in self.segments] + [7])
        lines.append(f"{'segment':<{width}}  {'peak above start':>16}")
        for s in self.segments:
            mark = "  <- peak" if s is top else ""
            label = f"{s.phase}: {s.name}" if s.name else s.phase
            lines.append(f"{label:<{width}}  {format_bytes(s.peak - self.baseline):>16}{mark}")
        return "\n".join(lines)


class _Segments:
    def __init__(self, tracker: PeakTracker) -> None:
        self.tracker = tracker
        self.label = ("", "other")
        self.peaks: dict[tuple[str, str], int] = {}
        self.in_backward = False

    def switch(self, name: str, phase: str) -> None:
        peak = self.tracker.peak()
        self.peaks[self.label] = max(self.peaks.get(self.label, 0), peak)
        self.tracker.reset(trim=True)
        self.label = (name, phase)

    def backward_started(self, name: str) -> None:
        if not self.in_backward:
            engine = getattr(torch.autograd.Variable, "_execution_engine", None)
            if engine is not None and hasattr(engine, "queue_callback"):
                self.in_backward = True
                engine.queue_callback(self.backward_ended)  # runs when backward finishes
        self.switch(name, "backward")

    def backward_ended(self) -> None:
        self.in_backward = False
        self.switch("", "other")


def _leaves(model: nn.Module) -> list[tuple[str, nn.Module]]:
    leaves = [(n, m) for n, m in model.named_modules() if not list(m.children())]
    return [(n or type(m).__name__, m) for n, m in leaves]


def step_breakdown(
    model: nn.Module,
    step: Callable[[], Any],
    *,
    optimizer: torch.optim.Optimizer | None = None,
    device: torch.device | str | None = None,
    method: str = "auto",
) -> StepBreakdown:
    """Run ``step()`` once and report the peak memory reached in each module's forward and
    backward, in the optimizer step (when ``optimizer`` is given) and elsewhere.

    Args:
        model: the model whose leaf modules are hooked.
        step: a function running one training step (forward, loss, backward, optimizer step).
        optimizer: its step gets a row of its own.
        device: ``"cpu"`` or a CUDA device; default: the model's.
        method: how the CPU peak is measured: ``"auto"``, ``"reset"`` (exact; resets the
            process's high-water mark, which ``getrusage`` and ``/usr/bin/time`` report) or
            ``"sample"`` (leaves it alone); see [`track_peak`][sparselinear.memory.track_peak].

    Examples:
        >>> import torch
        >>> from sparselinear import Connectivity, SparseLinear
        >>> from sparselinear.memory import step_breakdown
        >>> model = torch.nn.Sequential(
        ...     SparseLinear(100, 50, Connectivity.random(50, 100, density=0.1, seed=0)),
        ...     torch.nn.ReLU())
        >>> opt = torch.optim.Adam(model.parameters())
        >>> def step():
        ...     opt.zero_grad()
        ...     model(torch.randn(32, 100)).sum().backward()
        ...     opt.step()
        >>> report = step_breakdown(model, step, optimizer=opt)
        >>> sorted({s.phase for s in report.segments})
        ['backward', 'forward', 'other', 'step']
    """
    if not isinstance(model, nn.Module):
        raise SparseLinearTypeError(f"'model' must be an nn.Module; got {describe(model)}.")
    if not callable(step):
        raise SparseLinearTypeError(
            f"'step' must be a function running one training step; got {describe(step)}."
        )
    if device is None:
        param = next(model.parameters(), None)
        device = param.device if param is not None else default_device()
    tracker = PeakTracker(device, method)
    segments = _Segments(tracker)
    handles = []

    def on_forward_start(name: str) -> Callable:
        return lambda module, args: segments.switch(name, "forward")

    def on_forward_end(name: str) -> Callable:
        def hook(module, args, output):
            segments.switch("", "other")
            outputs = output if isinstance(output, (tuple, list)) else (output,)
            for t in outputs:
                if isinstance(t, torch.Tensor) and t.requires_grad:
                    t.register_hook(lambda grad: segments.backward_started(name))

        return hook

    for name, module in _leaves(model):
        handles.append(module.register_forward_pre_hook(on_forward_start(name)))
        handles.append(module.register_forward_hook(on_forward_end(name)))
    if optimizer is not None:
        handles.append(optimizer.register_step_pre_hook(
            lambda *a: segments.switch("optimizer", "step")))
        handles.append(optimizer.register_step_post_hook(lambda *a: segments.switch("", "other")))
    tracker.start(trim=True)
    baseline = tracker.current()
    try:
        step()
        segments.switch("", "other")
    finally:
        tracker.stop()
        for h in handles:
            h.remove()
    rows = [SegmentPeak(n, p, v) for (n, p), v in segments.peaks.items()]
    peak = max([baseline] + [r.peak for r in rows])
    # Freed blocks the allocator still held at the start were handed back during the step: the
    # memory really in use at the start is at most the lowest peak seen.
    baseline = min([baseline] + [r.peak for r in rows])
    return StepBreakdown(str(tracker.device), tracker.method, baseline, peak, rows)
