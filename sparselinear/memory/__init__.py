"""Memory of sparse models: estimate it before training, measure it while training.

* [`estimate`][sparselinear.memory.estimate] — bytes per layer and category (values, gradients,
  optimizer state, pattern, activations, working memory), beside the dense equivalent.
* [`estimate_dynamics`][sparselinear.memory.estimate_dynamics] — the same for a
  [`ConnectomeRNN`][sparselinear.ConnectomeRNN] trained through time (states per step,
  checkpointing).
* [`measure`][sparselinear.memory.measure] / [`track_peak`][sparselinear.memory.track_peak] — the
  peak memory of a call, per call (``method=``: ``"reset"`` the process's high-water mark, exact,
  or ``"sample"`` it, leaving the counters that ``getrusage`` and ``/usr/bin/time`` read alone).
* [`step_breakdown`][sparselinear.memory.step_breakdown] — which module's forward or backward raised
  the peak of a step.
* [`plot_memory_vs_density`][sparselinear.memory.plot_memory_vs_density] — memory against density,
  sparse vs dense vs RAM (matplotlib).
* [`estimate_sharded`][sparselinear.memory.estimate_sharded] /
  [`ranks_needed`][sparselinear.memory.ranks_needed] — per-rank memory and communication of a layer
  sharded over ranks ([`sparselinear.distributed`][sparselinear.distributed]).
"""

from .breakdown import StepBreakdown, step_breakdown
from .dynamics import DYNAMICS_CATEGORIES, DynamicsEstimate, estimate_dynamics
from .estimate import (
    BUILD_BYTES_PER_EDGE,
    CATEGORIES,
    LayerEstimate,
    MemoryEstimate,
    estimate,
    format_bytes,
)
from .optimizers import OPTIMIZERS, resolve_optimizer
from .peak import (
    METHODS,
    InsufficientMemoryError,
    Measurement,
    available_memory,
    check_fits,
    current_memory,
    follow_live_memory,
    measure,
    release_free_memory,
    total_memory,
    track_peak,
    warm_up,
)
from .plot import MissingDependencyError, check_plot_target, plot_memory_vs_density
from .sharded import ShardedEstimate, estimate_sharded, ranks_needed
from .training import TrainingRun, measure_training
from .units import format_seconds

__all__ = [
    "BUILD_BYTES_PER_EDGE",
    "CATEGORIES",
    "DYNAMICS_CATEGORIES",
    "METHODS",
    "OPTIMIZERS",
    "DynamicsEstimate",
    "InsufficientMemoryError",
    "LayerEstimate",
    "Measurement",
    "MemoryEstimate",
    "MissingDependencyError",
    "ShardedEstimate",
    "StepBreakdown",
    "TrainingRun",
    "available_memory",
    "check_fits",
    "check_plot_target",
    "current_memory",
    "estimate",
    "estimate_dynamics",
    "estimate_sharded",
    "follow_live_memory",
    "format_bytes",
    "format_seconds",
    "measure",
    "measure_training",
    "plot_memory_vs_density",
    "ranks_needed",
    "release_free_memory",
    "resolve_optimizer",
    "step_breakdown",
    "total_memory",
    "track_peak",
    "warm_up",
]
