"""The [`ConnectomeRNN`][sparselinear.ConnectomeRNN] module: leaky rate dynamics on a connectome,
through time."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.utils.checkpoint import checkpoint

from ..errors import (
    DataError,
    DeviceMismatchError,
    PatternError,
    ShapeError,
    SparseLinearTypeError,
    describe,
)
from ..pattern.connectivity import Connectivity
from .functional import sparse_linear
from .linear import SparseLinear
from .synapses import EdgeWeights, Positive, as_positive, edge_groups, edge_scale, neuron_index

__all__ = ["ConnectomeRNN"]

PARAMETERS = ("syn_strength", "time_const", "bias")
Input = torch.Tensor | Callable[[int], torch.Tensor]


class ConnectomeRNN(nn.Module):
    r"""Leaky rate dynamics on a connectome, integrated by explicit Euler steps and trained by
    backpropagation through time.

    Every neuron ``i`` is a leaky unit with voltage ``v_i``:

        τ_i dv_i/dt = -v_i + b_i + Σ_j w_ij f(v_j) + x_i(t),    w_ij = s_j · c_ij · θ_g(i,j)

    with ``s`` the sign of the synapse (Dale's law: the presynaptic neuron's), ``c`` the synapse
    count (fixed), ``θ > 0`` a strength shared by the edges of one group (e.g. one pre/post
    cell-type pair), ``f`` the activation. One step is
    ``v ← v + dt / max(τ, dt) · (−v + b + W f(v) + x)``, starting from ``v = b``: the
    formulation of flyvis (Lappalainen et al. 2024), so the same parameters give the same
    activity. The sum over edges is one sparse product per step
    ([`sparse_linear`][sparselinear.functional.sparse_linear]): no ``batch x nnz`` tensor is ever
    made.

    Args:
        connectivity: the synapses, shape ``(n, n)``: rows are postsynaptic neurons, columns
            presynaptic. A [`Connectivity`][sparselinear.Connectivity] (its names, if any, name the
            neurons) or anything it accepts.
        syn_count: synapse count of each edge, shape ``(nnz,)`` in the order of
            ``connectivity.indices()``, ``>= 0``; fixed. Default: 1 for every edge.
        signs: ``+1``/``-1`` per presynaptic neuron (shape ``(n,)``) or per edge (``(nnz,)``), or
            a [`Dale`][sparselinear.constraints.Dale] / [`Sign`][sparselinear.constraints.Sign]
            made for the pattern (which also settles the case ``n == nnz``); fixed. Default: all
            ``+1``.
        groups: group index of each edge, integer ``(nnz,)``; edges of a group share one
            strength θ. Default: ``None``, every edge its own strength.
        n_groups: the number of groups (some may have no edge). Default: ``groups.max() + 1``.
        syn_strength: initial θ, a number or one per group (per edge without groups), ``> 0``.
            Default: ``0.5 / m``, ``m`` the mean total synapse count onto a neuron that has
            inputs, so that each neuron's summed weight starts near ``±0.5``.
        time_const: initial τ, a number or one per neuron, ``> 0``. Default: ``5 · dt``.
        bias: initial resting potential ``b``, a number or one per neuron. Default: ``0``.
        dt: the Euler step, ``> 0``. Default: ``0.02``.
        activation: the elementwise ``f`` (an ``nn.Module`` or a function). Default: ReLU.
        input_neurons: the neurons that receive the input ``x``, by index or by name. Default:
            all, in order.
        output_neurons: the neurons read out, by index or by name. Default: all, in order.
        trainable: which of ``"syn_strength"``, ``"time_const"``, ``"bias"`` train; the others
            are frozen (``requires_grad=False``). Default: all three.
        checkpoint_every: with an int ``k``, the simulation runs in chunks of ``k`` steps under
            ``torch.utils.checkpoint.checkpoint``: backward keeps one state per chunk and
            recomputes a chunk's steps when it reaches it, so memory grows like ``T / k + k``
            states instead of ``T``. Default: ``None`` (keep every step).
        mode: how the sparse product computes, as for [`SparseLinear`][sparselinear.SparseLinear].
            Default: ``"auto"``.
        device: of the parameters.
        dtype: of the parameters.

    Shape:
        - Input ``x``: ``(batch, T, n_input)`` (``n_input`` the number of input neurons), or a
          function ``x(t) -> (batch, n_input)`` called for ``t = 0 … T-1`` (then pass ``steps``);
          it must return the same values when called again (checkpointing recomputes).
        - ``initial_state``: ``(batch, n)``; default ``b`` for every sample.
        - Output: ``(batch, T, n_output)``, the voltages of the read-out neurons after each
          step; with ``return_states=True`` also every neuron's voltage, ``(batch, T, n)``.

    Attributes:
        synapses: the [`SparseLinear`][sparselinear.SparseLinear] holding the pattern (its
            checkpoints refuse other wiring); its ``weight`` is computed from the strengths,
            ``s · c · θ[group]``.
        syn_strength: θ, shape ``(n_groups,)`` (``(nnz,)`` without groups), positive.
        time_const: τ, shape ``(n,)``, positive (clamped at ``dt`` in the dynamics).
        bias: ``b``, shape ``(n,)``.

    The free parameters are ``synapses.parametrizations.weight.original`` (θ through softplus),
    ``parametrizations.time_const.original`` (τ through softplus) and ``bias``.

    Examples:
        >>> import torch
        >>> from sparselinear import Connectivity, ConnectomeRNN
        >>> c = Connectivity.random(50, 50, nnz=400, seed=0)
        >>> rnn = ConnectomeRNN(c, signs=torch.where(torch.arange(50) < 40, 1, -1),
        ...                     groups=torch.arange(400) % 8, input_neurons=range(5),
        ...                     output_neurons=[48, 49])
        >>> rnn.syn_strength.shape, rnn.time_const.shape
        (torch.Size([8]), torch.Size([50]))
        >>> rnn(torch.randn(4, 30, 5)).shape  # (batch, T, read-out neurons)
        torch.Size([4, 30, 2])
    """

    def __init__(
        self,
        connectivity: Any,
        *,
        syn_count: Any = None,
        signs: Any = None,
        groups: Any = None,
        n_groups: int | None = None,
        syn_strength: Any = None,
        time_const: Any = None,
        bias: Any = 0.0,
        dt: float = 0.02,
        activation: Callable[[torch.Tensor], torch.Tensor] | None = None,
        input_neurons: Any = None,
        output_neurons: Any = None,
        trainable: Sequence[str] = PARAMETERS,
        checkpoint_every: int | None = None,
        mode: str = "auto",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        pattern = _square(connectivity)
        n = pattern.out_features
        self.dt = _check_dt(dt)
        self.checkpoint_every = _check_every(checkpoint_every)
        trainable = _check_trainable(trainable)
        scale = edge_scale(pattern, syn_count, signs)
        group, n_strengths = edge_groups(pattern, groups, n_groups)
        if syn_strength is None:
            syn_strength = _default_strength(pattern, scale)
        theta = as_positive(syn_strength, "syn_strength", n_strengths,
                            "group" if group is not None else "edge")
        tau = as_positive(5 * self.dt if time_const is None else time_const, "time_const", n,
                          "neuron")
        b = _as_bias(bias, n)

        self.synapses = SparseLinear(n, n, pattern, bias=False, device=device, dtype=dtype,
                                     mode=mode)
        factory = {"device": self.synapses.crow_indices.device,
                   "dtype": dtype or torch.get_default_dtype()}
        del self.synapses.weight  # replaced by the strengths, through EdgeWeights
        self.synapses.weight = nn.Parameter(theta.to(**factory))
        parametrize.register_parametrization(
            self.synapses, "weight",
            EdgeWeights(scale.to(**factory), None if group is None else group.to(
                factory["device"]), n_strengths),
            unsafe=True,
        )
        self.time_const = nn.Parameter(tau.to(**factory))
        parametrize.register_parametrization(self, "time_const", Positive())
        self.bias = nn.Parameter(b.to(**factory))
        self.activation = nn.ReLU() if activation is None else _check_activation(activation)
        self.register_buffer("input_index", neuron_index(pattern, input_neurons,
                                                         "input_neurons"))
        self.register_buffer("output_index", neuron_index(pattern, output_neurons,
                                                          "output_neurons"))
        for name in PARAMETERS:
            self.free_parameter(name).requires_grad_(name in trainable)

    # ------------------------------------------------------------------ parameters
    @property
    def n_neurons(self) -> int:
        return self.synapses.out_features

    @property
    def nnz(self) -> int:
        return self.synapses.nnz

    @property
    def connectivity(self) -> Connectivity:
        """The synapses' pattern, on the module's device."""
        return self.synapses.connectivity

    @property
    def syn_strength(self) -> torch.Tensor:
        """θ: one positive strength per group (per edge without groups)."""
        chain = self.synapses.parametrizations.weight
        return chain[0].strengths(chain.original)

    @property
    def n_inputs(self) -> int:
        return self.n_neurons if self.input_index is None else self.input_index.numel()

    @property
    def n_outputs(self) -> int:
        return self.n_neurons if self.output_index is None else self.output_index.numel()

    def free_parameter(self, name: str) -> nn.Parameter:
        """The parameter the optimizer updates for ``"syn_strength"``, ``"time_const"`` or
        ``"bias"`` (freeze one with ``.requires_grad_(False)``)."""
        if name == "syn_strength":
            return self.synapses.parametrizations.weight.original
        if name == "time_const":
            return self.parametrizations.time_const.original
        if name == "bias":
            return self.bias
        raise DataError(f"Unknown parameter {name!r}; expected one of {', '.join(PARAMETERS)}.")

    # ------------------------------------------------------------------ dynamics
    def forward(
        self,
        x: Input,
        initial_state: torch.Tensor | None = None,
        *,
        steps: int | None = None,
        return_states: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        batch, steps = self._check_input(x, steps, initial_state)
        w = self.synapses.weight  # s · c · θ[group]: nnz values, once per simulation
        tau = self.time_const
        gain = self.dt / tau.clamp(min=self.dt)  # dt / max(τ, dt)
        b = self.bias
        v = b.expand(batch, -1) if initial_state is None else initial_state
        pattern = self.synapses.connectivity
        every = self.checkpoint_every
        chunked = every is not None and torch.is_grad_enabled() and steps > every
        outputs, states = [], []
        for t0 in range(0, steps, every if chunked else max(steps, 1)):
            t1 = min(steps, t0 + every) if chunked else steps
            args = (v, w, gain, b, x if callable(x) else x[:, t0:t1])
            run = self._chunk(pattern, t0, t1, return_states)
            if chunked:
                v, out, full = checkpoint(run, *args, use_reentrant=False)
            else:
                v, out, full = run(*args)
            outputs.append(out)
            states.append(full)
        if not outputs:  # steps == 0
            out = b.new_zeros(batch, 0, self.n_outputs)
            return (out, b.new_zeros(batch, 0, self.n_neurons)) if return_states else out
        out = outputs[0] if len(outputs) == 1 else torch.cat(outputs, 1)
        if not return_states:
            return out
        return out, states[0] if len(states) == 1 else torch.cat(states, 1)

    def _chunk(self, pattern: Connectivity, t0: int, t1: int, keep_states: bool) -> Callable:
        """The function simulating steps ``t0 … t1-1`` from a state (checkpointed as a whole)."""

        def run(v, w, gain, b, x):
            outs, full = [], []
            for t in range(t0, t1):
                x_t = x(t) if callable(x) else x[:, t - t0]
                v = self.step(v, w, gain, b, x_t, pattern)
                outs.append(v if self.output_index is None else v.index_select(1,
                                                                                self.output_index))
                if keep_states:
                    full.append(v)
            return v, torch.stack(outs, 1), torch.stack(full, 1) if keep_states else None

        return run

    def step(self, v: torch.Tensor, w: torch.Tensor, gain: torch.Tensor, b: torch.Tensor,
             x_t: torch.Tensor | None, pattern: Connectivity | None = None) -> torch.Tensor:
        """One Euler step ``v + gain · (−v + b + W f(v) + x_t)`` for edge weights ``w`` and
        ``gain = dt / max(τ, dt)``; ``x_t`` of shape ``(batch, n_input)`` or ``None``."""
        pattern = self.synapses.connectivity if pattern is None else pattern
        # In place where autograd allows (the product's output is saved by no one, nor is the
        # product gain · d), so a step allocates only what backward keeps, f(v) (the product
        # keeps it as its input) and d, besides the new state and the product's transient
        # gathered copy of f(v). Fewer short-lived buffers, less heap fragmentation.
        drive = sparse_linear(self.activation(v), w, pattern, b, mode=self.synapses.mode)
        if x_t is not None:
            if self.input_index is None:
                drive.add_(x_t)
            else:
                drive.index_add_(1, self.input_index, x_t)
        return (gain * drive.sub_(v)).add_(v)

    # ------------------------------------------------------------------ checks
    def _check_input(self, x: Input, steps: int | None,
                     initial_state: torch.Tensor | None) -> tuple[int, int]:
        dtype, device = self.bias.dtype, self.bias.device
        n_in = self.n_inputs
        if callable(x) and not isinstance(x, torch.Tensor):
            if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
                raise DataError(
                    f"With 'x' a function of the step, pass 'steps', the number of steps (a "
                    f"non-negative int); got {steps!r}."
                )
            first = x(0) if steps else None
            if first is not None:
                _check_tensor(first, "x(0)", (None, n_in), dtype, device,
                              f"(batch, {n_in}), one value per input neuron")
            batch = first.shape[0] if first is not None else (
                initial_state.shape[0] if initial_state is not None else 1)
        else:
            if not isinstance(x, torch.Tensor):
                raise SparseLinearTypeError(
                    f"'x' must be a tensor (batch, T, {n_in}) or a function of the step; got "
                    f"{describe(x)}."
                )
            hint = (" It has no time axis: add one with `x.unsqueeze(1)` (one step) or pass "
                    "the steps along dim 1." if x.dim() == 2 else "")
            _check_tensor(x, "x", (None, None, n_in), dtype, device,
                          f"(batch, T, {n_in}): batch, time, one value per input neuron", hint)
            if steps is not None and steps != x.shape[1]:
                raise ShapeError(f"'steps' is {steps} but 'x' has {x.shape[1]} steps (dim 1).")
            batch, steps = x.shape[0], x.shape[1]
        if initial_state is not None:
            _check_tensor(initial_state, "initial_state", (batch, self.n_neurons), dtype, device,
                          f"(batch, n_neurons) = ({batch}, {self.n_neurons})")
        return batch, steps

    def extra_repr(self) -> str:
        grouped = self.synapses.parametrizations.weight[0].edge_group is not None
        frozen = [n for n in PARAMETERS if not self.free_parameter(n).requires_grad]
        parts = [f"n_neurons={self.n_neurons}", f"nnz={self.nnz}",
                 f"strengths={self.syn_strength.numel()}{' (grouped)' if grouped else ''}",
                 f"dt={self.dt:g}", f"inputs={self.n_inputs}", f"outputs={self.n_outputs}"]
        if frozen:
            parts.append(f"frozen={frozen}")
        if self.checkpoint_every is not None:
            parts.append(f"checkpoint_every={self.checkpoint_every}")
        return ", ".join(parts)


# ---------------------------------------------------------------------------- argument checks
def _square(connectivity: Any) -> Connectivity:
    pattern = connectivity if isinstance(connectivity, Connectivity) else Connectivity(
        connectivity)
    n_out, n_in = pattern.shape
    if n_out != n_in:
        raise ShapeError(
            f"A connectome's connectivity must be square (n_neurons, n_neurons), rows "
            f"postsynaptic and columns presynaptic; got {pattern.shape}. Give both sides the "
            "same neurons (e.g. `Connectivity.from_edgelist(..., nodes=all_neurons)`)."
        )
    if pattern.out_names is not None and pattern.in_names is not None and \
            tuple(pattern.out_names) != tuple(pattern.in_names):
        raise PatternError(
            "The connectivity's rows and columns must be the same neurons in the same order; "
            "its out_names and in_names differ. Build it with one node list for both sides."
        )
    return pattern


def _check_dt(dt: Any) -> float:
    if isinstance(dt, bool) or not isinstance(dt, (int, float)) or not dt > 0 or \
            dt == float("inf"):
        raise DataError(f"'dt' must be a finite number > 0 (the Euler step); got {dt!r}.")
    return float(dt)


def _check_every(every: Any) -> int | None:
    if every is None:
        return None
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise DataError(
            f"'checkpoint_every' must be None or a positive int (steps per checkpointed chunk); "
            f"got {every!r}."
        )
    return every


def _check_trainable(trainable: Any) -> set[str]:
    names = {trainable} if isinstance(trainable, str) else set(trainable)
    unknown = names - set(PARAMETERS)
    if unknown:
        raise DataError(f"'trainable' names unknown parameters {sorted(unknown)}; choose among "
                        f"{', '.join(PARAMETERS)}.")
    return names


def _check_activation(activation: Any) -> Callable:
    if not callable(activation):
        raise SparseLinearTypeError(
            f"'activation' must be an elementwise nn.Module or function, e.g. nn.ReLU(); got "
            f"{describe(activation)}."
        )
    return activation if isinstance(activation, nn.Module) else _Function(activation)


class _Function(nn.Module):
    """A plain function as a module (so the model prints it)."""

    def __init__(self, fn: Callable) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return self.fn(v)

    def extra_repr(self) -> str:
        return getattr(self.fn, "__name__", repr(self.fn))


def _as_bias(bias: Any, n: int) -> torch.Tensor:
    t = bias if isinstance(bias, torch.Tensor) else torch.as_tensor(bias)
    if not (t.is_floating_point() or (t.dtype != torch.bool and not t.is_complex())):
        raise SparseLinearTypeError(f"'bias' must hold real numbers; got {describe(t)}.")
    t = t.detach().to(torch.get_default_dtype() if not t.is_floating_point() else t.dtype)
    if t.dim() == 0:
        t = t.expand(n).clone()
    if t.shape != (n,):
        raise ShapeError(f"'bias' must be a number or have shape ({n},), one per neuron; got "
                         f"{describe(t)}.")
    if not bool(torch.isfinite(t).all()):
        raise DataError("'bias' must be finite.")
    return t


def _default_strength(pattern: Connectivity, scale: torch.Tensor) -> float:
    rows = pattern.row_indices().to(torch.int64)
    total = torch.zeros(pattern.out_features, dtype=scale.dtype, device=scale.device)
    total.index_add_(0, rows, scale.abs())
    wired = total[total > 0]
    return 0.5 / float(wired.mean()) if wired.numel() else 1.0


def _check_tensor(t: Any, name: str, shape: tuple, dtype: torch.dtype, device: torch.device,
                  expected: str, hint: str = "") -> None:
    if not isinstance(t, torch.Tensor) or not t.is_floating_point():
        raise SparseLinearTypeError(
            f"'{name}' must be a floating-point tensor of shape {expected}; got {describe(t)}."
        )
    if t.dim() != len(shape) or any(s is not None and s != g for s, g in zip(shape, t.shape)):
        raise ShapeError(f"'{name}' must have shape {expected}; got {describe(t)}.{hint}")
    if t.dtype != dtype:
        raise SparseLinearTypeError(
            f"'{name}' has dtype {t.dtype} but the model's parameters are {dtype}. Convert one, "
            f"e.g. `{name.split('(')[0]}.to({dtype})` or `model.to({t.dtype})`."
        )
    if t.device != device:
        raise DeviceMismatchError(
            f"'{name}' is on {t.device} but the model is on {device}. Move it with `.to(device)`."
        )
