"""What training a [`ConnectomeRNN`][sparselinear.ConnectomeRNN] through time costs in memory.

Backpropagation through ``T`` steps keeps, for every step, what the step's backward reads: the
activation ``f(v)`` (one tensor: the activation's saved output is the sparse product's saved
input, which the product keeps as it is), the Euler increment ``d = drive - v`` when ``τ``
trains (saved by ``gain * d``), the voltage ``v`` too when the activation saves its input, and
the read-out. With gradient checkpointing every ``k`` steps it keeps one state per chunk instead
and recomputes the ``k`` steps of one chunk at a time. One step's kernels and their temporaries
are what [`sparselinear.ops.policy.plan_step`][sparselinear.kernels.plan_step] plans for the sparse
product (the same plan the product runs with): the gathered copy of the input that its backward pass
reads (``saved_bytes``) is made again by each step's backward pass, so it is counted once, in the
working memory, not per step. The optimizer's temporaries come from
``sparselinear.memory.transients``.

What is counted is the model and its training step: the pattern, the edge data, the parameters,
gradients and optimizer state, what the simulation keeps and the peak's temporaries; not the
process's baseline (torch and the library loaded) nor the caller's inputs and targets.
``benchmarks/dynamics.py`` and the tests measure the peak against the same baseline: the
resident size before the connectivity is built.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import DataError, ShapeError, SparseLinearTypeError, describe
from ..nn.connectome import ConnectomeRNN
from ..ops import policy
from ..pattern.connectivity import index_dtype_for
from .optimizers import resolve_optimizer
from .transients import optimizer_transient
from .units import format_bytes

__all__ = ["DYNAMICS_CATEGORIES", "DynamicsEstimate", "estimate_dynamics"]

#: The rows of a dynamics estimate, in table order.
DYNAMICS_CATEGORIES = ("values", "gradients", "optimizer_state", "pattern", "states", "working")
_LABELS = {
    "values": "parameters",
    "gradients": "gradients",
    "optimizer_state": "optimizer state",
    "pattern": "pattern and edge data",
    "states": "states kept through time",
    "working": "working memory",
}


@dataclass
class DynamicsEstimate:
    """The estimated peak of one training step of a connectome model through time.

    Attributes:
        n_neurons: the model's number of neurons.
        nnz: its number of edges (synapses).
        n_strengths: its number of strengths.
        batch_size: the simulation's batch size.
        steps: its number of time steps.
        checkpoint_every: steps per checkpointed chunk (``None``: every step kept).
        parts: bytes per category
            ([`DYNAMICS_CATEGORIES`][sparselinear.memory.DYNAMICS_CATEGORIES]).
        gather_scatter: bytes of the ``batch x nnz`` edge tensors a per-edge gather /
            ``scatter_add`` implementation of the same dynamics keeps for backward (one per
            step), for comparison.
    """

    n_neurons: int
    nnz: int
    n_strengths: int
    batch_size: int
    steps: int
    checkpoint_every: int | None
    optimizer: str
    device: str
    parts: dict[str, int]
    gather_scatter: int

    def category(self, name: str) -> int:
        return self.parts[name]

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    def to_dict(self) -> dict[str, Any]:
        """Everything as plain numbers (bytes)."""
        return {
            "n_neurons": self.n_neurons, "nnz": self.nnz, "n_strengths": self.n_strengths,
            "batch_size": self.batch_size, "steps": self.steps,
            "checkpoint_every": self.checkpoint_every, "optimizer": self.optimizer,
            "device": self.device, **self.parts, "total": self.total,
            "gather_scatter": self.gather_scatter,
        }

    def __str__(self) -> str:
        every = (f", checkpoint every {self.checkpoint_every} steps"
                 if self.checkpoint_every else "")
        lines = [
            f"Memory estimate for one training step through time: {self.n_neurons:,} neurons, "
            f"{self.nnz:,} edges, {self.n_strengths:,} strengths; batch {self.batch_size}, "
            f"{self.steps} steps{every}, {self.optimizer}, {self.device}"
        ]
        rows = [(_LABELS[c], format_bytes(self.parts[c])) for c in DYNAMICS_CATEGORIES]
        rows.append(("total (peak)", format_bytes(self.total)))
        rows.append(("gather/scatter_add edge tensors", format_bytes(self.gather_scatter)))
        width = max(len(r[0]) for r in rows)
        lines += [f"  {label:<{width}}  {value:>10}" for label, value in rows]
        return "\n".join(lines)


#: Activations whose backward pass reads their output (the tensor the sparse product keeps
#: anyway); any other activation is assumed to save its input ``v`` as well.
_OUTPUT_SAVING = (nn.ReLU, nn.Tanh, nn.Sigmoid)
_OUTPUT_SAVING_FUNCTIONS = (torch.relu, torch.tanh, torch.sigmoid, nn.functional.relu,
                            nn.functional.tanh, nn.functional.sigmoid)


def _saves_input(activation: Any) -> bool:
    """Whether backward through ``activation`` keeps its input ``v`` besides its output."""
    if isinstance(activation, _OUTPUT_SAVING):
        return False
    # a plain function is held by the model as a module with the function as ``fn``
    return getattr(activation, "fn", activation) not in _OUTPUT_SAVING_FUNCTIONS


def _positive_int(value: Any, name: str, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ShapeError(f"'{name}' must be a positive int; got {value!r}.")
    return value


def estimate_dynamics(
    model: ConnectomeRNN | int,
    *,
    batch_size: int,
    steps: int,
    checkpoint_every: int | None = None,
    nnz: int | None = None,
    n_strengths: int | None = None,
    n_outputs: int | None = None,
    trainable: tuple[str, ...] = ("syn_strength", "time_const", "bias"),
    optimizer: Any = "adam",
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> DynamicsEstimate:
    r"""Estimate the peak memory of one training step of a connectome model: simulate ``steps``
    steps, backward through time, optimizer step.

    Args:
        model: a [`ConnectomeRNN`][sparselinear.ConnectomeRNN], or the number of neurons ``n`` (then
            give ``nnz``; to ask before building anything).
        batch_size: samples per step. steps: simulated steps ``T``.
        checkpoint_every: chunk length ``k`` of gradient checkpointing; default: the model's
            (``None``: every step is kept).
        nnz: for a model given by ``n``: its number of edges.
        n_strengths: for a model given by ``n``: its number of strengths. Default: ``nnz``, one
            per edge.
        n_outputs: for a model given by ``n``: its read-out neurons. Default: ``n``.
        trainable: for a model given by ``n``: the parameters that train.
        optimizer: as for [`estimate`][sparselinear.memory.estimate].
        dtype: default: the model's, or ``torch.get_default_dtype()``.
        device: where training runs; default: the model's, else CPU.

    Returns:
        A [`DynamicsEstimate`][sparselinear.memory.DynamicsEstimate]. ``states`` counts, per kept
        step, ``f(v)`` (which the sparse product keeps as its input), ``v`` when the activation
        saves its input (not for ReLU, tanh or sigmoid), the Euler increment when ``τ`` trains and
        the read-out; with checkpointing, one state per chunk and the ``k`` steps of the chunk being
        recomputed. ``working`` is the backward pass's peak beyond them: the edge weights' gradient
        and its accumulator, the step's gathered input
        ([`plan_step`][sparselinear.kernels.plan_step]'s ``saved_bytes``, made again by each step's
        backward pass) and kernel temporaries, a few state-sized gradients; or the optimizer step's
        temporaries. The process's baseline (torch and the library loaded) and the caller's inputs
        and targets are not counted.
        Bytes in use are what is counted: for states (``batch x n`` values) smaller than the C
        allocator's mmap threshold (64 KiB with
        [`follow_live_memory`][sparselinear.memory.follow_live_memory]), the heap they come from
        grows beyond them and the resident size can exceed the estimate (1.3-1.7x at 48 KB states).

    Examples:
        >>> from sparselinear import memory
        >>> est = memory.estimate_dynamics(138_639, nnz=15_091_983, n_strengths=5_000,
        ...                                batch_size=4, steps=100)
        >>> est.total < 3e9, est.gather_scatter > 24e9
        (True, True)
    """
    batch = _positive_int(batch_size, "batch_size")
    if steps is None:
        raise ShapeError("A connectome model's memory depends on how many steps it simulates: "
                         "pass 'steps', e.g. `memory.estimate(model, batch_size=4, steps=100)`.")
    steps = _positive_int(steps, "steps")
    if isinstance(model, ConnectomeRNN):
        if nnz is not None or n_strengths is not None or n_outputs is not None:
            raise DataError("'nnz', 'n_strengths' and 'n_outputs' describe a model given by its "
                            "number of neurons; a ConnectomeRNN has its own.")
        n, k_edges = model.n_neurons, model.nnz
        groups = model.syn_strength.numel()
        outputs = model.n_outputs
        trained = {name for name in ("syn_strength", "time_const", "bias")
                   if model.free_parameter(name).requires_grad}
        every = model.checkpoint_every if checkpoint_every is None else checkpoint_every
        dtype = dtype or model.bias.dtype
        dev = torch.device(device) if device is not None else model.bias.device
        index_dtype = model.synapses.col_indices.dtype
        grouped = model.synapses.parametrizations.weight[0].edge_group is not None
        keeps_v = _saves_input(model.activation)
    elif isinstance(model, int) and not isinstance(model, bool):
        n = _positive_int(model, "model")
        if nnz is None:
            raise DataError("Give 'nnz', the number of edges, with a model given by its size.")
        k_edges = nnz
        groups = nnz if n_strengths is None else n_strengths
        grouped = n_strengths is not None
        outputs = n if n_outputs is None else n_outputs
        trained = set(trainable)
        every = checkpoint_every
        dtype = dtype or torch.get_default_dtype()
        dev = torch.device(device) if device is not None else torch.device("cpu")
        index_dtype = index_dtype_for((n, n), nnz)
        keeps_v = False  # the default activation, ReLU, saves its output
    else:
        raise SparseLinearTypeError(
            f"'model' must be a ConnectomeRNN or a number of neurons; got {describe(model)}."
        )
    every = _positive_int(every, "checkpoint_every", allow_none=True)
    spec = resolve_optimizer(optimizer)
    d, idx = dtype.itemsize, index_dtype.itemsize
    plan = policy.plan_step(n, n, k_edges, batch, dtype, dev, mode="sparse",
                            needs_input_grad=True, needs_weight_grad="syn_strength" in trained,
                            index_dtype=index_dtype)
    sizes = {"syn_strength": groups, "time_const": n, "bias": n}
    trained_sizes = [sizes[p] for p in ("bias", "syn_strength", "time_const") if p in trained]
    state = batch * n * d
    # kept per step: f(v) (saved by the activation and, as its input, by the sparse product: one
    # tensor), v when the activation saves its input, the increment d when τ trains (saved by
    # gain * d), and the read-out (kept by the loss; its gradient beside it at the start of
    # backward). The product's gathered input copy is not kept: its backward makes it again.
    readout = 2 * batch * outputs * d
    per_step = state * (1 + keeps_v + ("time_const" in trained)) + readout
    if every is None or every >= steps:
        states = steps * per_step + state
    else:
        chunks = math.ceil(steps / every)
        states = chunks * state + steps * readout + every * per_step + state
    edge_graph = k_edges * d  # the edge weights w, saved by every step's product
    # backward: the weight gradient of the step and its accumulator (plus the gradient of θ[g]
    # at the end), the step's gathered input copy and the kernels' temporaries, the state
    # gradients in flight
    backward = 2 * k_edges * d + plan.saved_bytes + plan.backward_bytes + 3 * state
    opt = optimizer_transient(spec.kind, trained_sizes, d, dev.type, spec.implementation)
    parts = {
        "values": (groups + 2 * n) * d,
        "gradients": sum(trained_sizes) * d,
        "optimizer_state": spec.slots * sum(trained_sizes) * d,
        "pattern": idx * (n + 1 + k_edges) + plan.derived_bytes + k_edges * d
        + (8 * k_edges if grouped else 0),
        "states": states + edge_graph,
        "working": max(backward, opt - states - edge_graph),
    }
    return DynamicsEstimate(n, k_edges, groups, batch, steps, every, spec.label, str(dev), parts,
                            gather_scatter=steps * batch * k_edges * d)
