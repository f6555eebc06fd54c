"""What training a sparse model costs in memory, computed before anything is allocated.

[`estimate`][sparselinear.memory.estimate] takes a model (or just a layer's shape and nnz) and
returns a [`MemoryEstimate`][sparselinear.memory.MemoryEstimate]: for each
[`SparseLinear`][sparselinear.SparseLinear] the bytes of weight values, gradients, optimizer state,
pattern buffers, activations kept for backward and the working memory of one step, each beside what
a dense ``nn.Linear`` of the same shape would need.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..errors import ShapeError, SparseLinearTypeError, describe
from ..nn.connectome import ConnectomeRNN
from ..nn.linear import SparseLinear
from ..ops import dense as dense_bands
from ..ops import policy
from ..pattern.connectivity import Connectivity, index_dtype_for
from ..pattern.generators import resolve_nnz
from ..pattern.sources import check_shape
from .dynamics import DynamicsEstimate, estimate_dynamics
from .optimizers import OptimizerSpec, resolve_optimizer
from .transients import optimizer_transient
from .units import format_bytes

__all__ = [
    "BUILD_BYTES_PER_EDGE",
    "CATEGORIES", "MODULE_ESTIMATORS", "LayerEstimate", "MemoryEstimate", "estimate",
    "format_bytes",
]

#: Peak of building a random pattern of a given shape and nnz, per edge (index arrays, sort,
#: validation), beyond the pattern it becomes; see BENCHMARKS.md for the measurement.
BUILD_BYTES_PER_EDGE = 72

#: Estimators of modules that hold sparse layers in their own way, by module class:
#: ``fn(name, module, batch, spec, dtype, device, input_requires_grad)`` returns ``(LayerEstimate,
#: activation bytes, dense activation bytes)`` and the module's submodules are not counted
#: again. ``sparselinear.memory.sharded`` registers the sharded layer's (this rank's part).
MODULE_ESTIMATORS: dict[type, Callable[..., tuple[Any, int, int]]] = {}

#: The rows of every estimate, in table order.
CATEGORIES = ("values", "gradients", "optimizer_state", "pattern", "activations", "working")
_LABELS = {
    "values": "weight values",
    "gradients": "gradients",
    "optimizer_state": "optimizer state",
    "pattern": "pattern buffers",
    "activations": "activations",
    "working": "working memory",
}
_MAX_COLUMNS = 4


@dataclass
class LayerEstimate:
    """Bytes one sparse layer needs, per category, and what the dense layer would need."""

    name: str
    shape: tuple[int, int]
    nnz: int
    bias: bool
    dtype: str
    index_dtype: str
    sparse: dict[str, int]
    dense: dict[str, int]

    @property
    def density(self) -> float:
        size = self.shape[0] * self.shape[1]
        return self.nnz / size if size else 0.0

    @property
    def total(self) -> int:
        return sum(self.sparse.values())

    @property
    def dense_total(self) -> int:
        return sum(self.dense.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "shape": list(self.shape),
            "nnz": self.nnz,
            "density": self.density,
            "bias": self.bias,
            "dtype": self.dtype,
            "index_dtype": self.index_dtype,
            "sparse": {**self.sparse, "total": self.total},
            "dense": {**self.dense, "total": self.dense_total},
        }


@dataclass
class MemoryEstimate:
    """The estimate of one training step. ``str()`` gives a table;
    [`to_dict`][sparselinear.memory.MemoryEstimate.to_dict] a plain dict.

    Attributes:
        layers: one [`LayerEstimate`][sparselinear.memory.LayerEstimate] per sparse layer.
        other: bytes of the model's other parameters (values, gradients, optimizer state).
        working: the working memory of a step for the whole model (a peak, not a sum of layers).
        total: the estimated peak in bytes; ``dense_total`` the same for dense layers.
    """

    batch_size: int
    optimizer: str
    optimizer_slots: int
    device: str
    layers: list[LayerEstimate]
    other: dict[str, int] = field(default_factory=dict)
    working: int = 0
    dense_working: int = 0

    def category(self, name: str, dense: bool = False) -> int:
        """Total bytes of one category over all layers (``working`` is a peak, not a sum)."""
        if name == "working":
            return self.dense_working if dense else self.working
        per_layer = sum((lay.dense if dense else lay.sparse)[name] for lay in self.layers)
        return per_layer + self.other.get(name, 0)

    @property
    def total(self) -> int:
        return sum(self.category(c) for c in CATEGORIES)

    @property
    def dense_total(self) -> int:
        return sum(self.category(c, dense=True) for c in CATEGORIES)

    def to_dict(self) -> dict[str, Any]:
        """Everything as plain numbers (bytes), ready for a logger or ``json.dumps``."""
        return {
            "batch_size": self.batch_size,
            "optimizer": self.optimizer,
            "optimizer_slots": self.optimizer_slots,
            "device": self.device,
            "layers": [lay.to_dict() for lay in self.layers],
            "other": dict(self.other),
            "sparse": {**{c: self.category(c) for c in CATEGORIES}, "total": self.total},
            "dense": {
                **{c: self.category(c, dense=True) for c in CATEGORIES},
                "total": self.dense_total,
            },
        }

    def __str__(self) -> str:
        lines = [
            f"Memory estimate for one training step: batch {self.batch_size}, "
            f"{self.optimizer} ({self.optimizer_slots} state slot(s) per parameter), "
            f"{self.device}"
        ]
        for lay in self.layers:
            lines.append(
                f"  {lay.name}: {lay.shape[0]:,} x {lay.shape[1]:,}, nnz {lay.nnz:,} "
                f"(density {lay.density:.3g}), {lay.dtype}, {lay.index_dtype} indices"
            )
        per_layer = 1 < len(self.layers) <= _MAX_COLUMNS
        heads = [lay.name for lay in self.layers] if per_layer else []
        heads += ["sparse", "dense equivalent"]
        rows = []
        for c in CATEGORIES:
            cells = [format_bytes(lay.sparse[c]) for lay in self.layers] if per_layer else []
            dense = self.category(c, dense=True)
            cells += [format_bytes(self.category(c)), format_bytes(dense) if dense else "-"]
            rows.append((_LABELS[c], cells))
        cells = [format_bytes(lay.total) for lay in self.layers] if per_layer else []
        totals = [format_bytes(self.total), format_bytes(self.dense_total)]
        rows.append(("total (peak)", [*cells, *totals]))
        widths = [max(len(h), *(len(r[1][i]) for r in rows)) for i, h in enumerate(heads)]
        first = max(len(r[0]) for r in rows)
        header = "".join(f"  {h:>{w}}" for h, w in zip(heads, widths, strict=True))
        lines.append(" " * first + header)
        for label, cells in rows:
            body = "".join(f"  {c:>{w}}" for c, w in zip(cells, widths, strict=True))
            lines.append(f"{label:<{first}}{body}")
        if self.other.get("values"):
            lines.append("(other parameters are included in the totals; their activations are not)")
        return "\n".join(lines)


# ---------------------------------------------------------------------------- the arithmetic
def _bands(crow: torch.Tensor, col: torch.Tensor, mode: str) -> tuple[int | None, int | None]:
    """``(area, edges of the largest band)`` of the pattern's dense-band plan, or ``(None,
    None)`` in sparse mode (no plan is made)."""
    if policy.check_mode(mode) == "sparse":
        return None, None
    plan = dense_bands.plan_for(crow, col, "dense", torch.float32, crow.device)
    return plan.area, max((k1 - k0 for *_, k0, k1 in plan.bands), default=0)


def _layer(
    name: str,
    shape: tuple[int, int],
    nnz: int,
    bias: bool,
    *,
    batch: int,
    dtype: torch.dtype,
    index_dtype: torch.dtype,
    spec: OptimizerSpec,
    device: torch.device,
    needs_input_grad: bool,
    mode: str = "sparse",
    bands: tuple[int | None, int | None] = (None, None),
) -> tuple[LayerEstimate, int, int]:
    """One layer's estimate, plus its sparse and dense activation bytes (for the working peak)."""
    n_out, n_in = shape
    d = dtype.itemsize
    idx = index_dtype.itemsize
    n_bias = n_out if bias else 0
    params = nnz + n_bias
    dense_params = n_out * n_in + n_bias
    plan = policy.plan_step(
        n_out, n_in, nnz, batch, dtype, device, mode=mode, band_area=bands[0],
        band_edges=bands[1], needs_input_grad=needs_input_grad, index_dtype=index_dtype,
    )
    # what the backward pass reads besides the input (the input gathered again, or the tiles)
    # and the output
    activations = plan.saved_bytes + batch * n_out * d
    dense_activations = batch * (n_in + n_out) * d
    opt = optimizer_transient(spec.kind, [nnz, n_bias], d, device.type, spec.implementation)
    dense_opt = optimizer_transient(spec.kind, [n_out * n_in, n_bias], d, device.type,
                                    spec.implementation)
    state = spec.slots * params * d
    # building the dense-band positions: in the first forward pass, before any gradient or
    # optimizer state exists
    first = plan.build_bytes - params * d - state - activations
    sparse = {
        "values": params * d,
        "gradients": params * d,
        "optimizer_state": state,
        "pattern": idx * ((n_out + 1) + nnz) + plan.derived_bytes,
        "activations": activations,
        "working": max(plan.forward_bytes, plan.backward_bytes, opt - activations, first, 0),
    }
    dense = {
        "values": dense_params * d,
        "gradients": dense_params * d,
        "optimizer_state": spec.slots * dense_params * d,
        "pattern": 0,
        "activations": dense_activations,
        "working": max(batch * n_out * d, dense_opt - dense_activations, 0),
    }
    layer = LayerEstimate(
        name, shape, nnz, bias, str(dtype).replace("torch.", ""),
        str(index_dtype).replace("torch.", ""), sparse, dense,
    )
    return layer, activations, dense_activations


def _check_batch(batch_size: Any) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ShapeError(
            f"'batch_size' must be a positive int (rows of the flattened input); got "
            f"{batch_size!r}."
        )
    return batch_size


def _check_dtype(dtype: Any) -> torch.dtype | None:
    if dtype is None:
        return None
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype.replace("torch.", ""), None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise SparseLinearTypeError(
            f"'dtype' must be a floating torch.dtype or its name (e.g. 'float32'); got "
            f"{dtype!r}."
        )
    return dtype


def estimate(
    model: Any,
    *,
    batch_size: int,
    optimizer: Any = "adam",
    dtype: torch.dtype | str | None = None,
    nnz: int | None = None,
    density: float | None = None,
    bias: bool = True,
    device: torch.device | str | None = None,
    input_requires_grad: bool = False,
    mode: str | None = None,
    steps: int | None = None,
) -> MemoryEstimate | DynamicsEstimate:
    r"""Estimate the peak memory of one training step (forward, backward, optimizer step).

    Args:
        model: an ``nn.Module`` containing [`SparseLinear`][sparselinear.SparseLinear] layers, a
            [`Connectivity`][sparselinear.Connectivity], or a shape ``(out_features, in_features)``
            together with ``nnz`` or ``density`` (to ask before building anything). A
            [`ShardedSparseLinear`][sparselinear.distributed.ShardedSparseLinear] in the model
            counts as this rank's part of it, its input and collective buffers included
            ([`estimate_sharded`][sparselinear.memory.estimate_sharded]); the estimate is then per
            rank.
        batch_size: rows of the flattened input, ``x.reshape(-1, in_features).shape[0]``.
        optimizer: ``"sgd"``, ``"momentum"``, ``"adam"``, ``"adamw"``, an ``int`` number of
            state slots per parameter (any other optimizer), or a ``torch.optim.Optimizer``.
            A name means torch's default implementation; pass the instance to account for
            ``Adam(fused=True)`` (no temporaries) or ``foreach``.
        dtype: parameter dtype; default: the model's, or ``torch.get_default_dtype()``.
        nnz: the number of edges, when ``model`` is a shape (or pass ``density``).
        density: the fraction of edges, when ``model`` is a shape.
        bias: whether a layer described by shape or Connectivity has a bias.
        device: where training runs (decides kernel dtypes and the optimizer's implementation);
            default: the model's device, else CPU.
        input_requires_grad: whether the model's input needs a gradient. The first sparse layer
            then also computes ``grad_input``; later layers always do.
        mode: ``"auto"``, ``"sparse"`` or ``"dense"``, as for
            [`SparseLinear`][sparselinear.SparseLinear]; default: each layer's own ``mode``, and
            ``"auto"`` for a Connectivity or a shape. With a pattern at hand (a model or a
            Connectivity), ``"auto"`` and ``"dense"`` count the dense-band tiles of the
            pattern's band plan where
            [`sparselinear.kernels.use_dense_bands`][sparselinear.kernels.use_dense_bands] picks
            them; for a bare shape the bands are unknown: ``"auto"`` assumes sparse kernels and
            ``"dense"`` bands covering the whole ``out x in`` matrix.
        steps: for a [`ConnectomeRNN`][sparselinear.ConnectomeRNN], the simulated steps: the
            estimate is then [`estimate_dynamics`][sparselinear.memory.estimate_dynamics]'s.

    Returns:
        A [`MemoryEstimate`][sparselinear.memory.MemoryEstimate]. Per layer: values and gradients
        ``itemsize · (nnz + out)``, optimizer state ``slots · itemsize · (nnz + out)``, pattern
        ``index_itemsize · (out + 1 + nnz)`` (the CSR) plus what a step builds from it and keeps
        (the transposed pattern, the column-block layout, the dense-band positions), activations
        (the output and what the
        backward pass reads besides the input: the input's ``(in, batch)`` copy, which it
        gathers again from the input the product keeps, or the dense-band tiles) and the
        step's working memory: what
        [`sparselinear.ops.policy.plan_step`][sparselinear.kernels.plan_step] says the kernels that
        run allocate, or the optimizer step's temporaries (``sparselinear.memory.transients``),
        whichever is larger. The input batch itself and PyTorch's own baseline are not counted.

    Examples:
        >>> from sparselinear import memory
        >>> est = memory.estimate((138_639, 138_639), nnz=15_091_983, batch_size=16)
        >>> memory.format_bytes(est.category("values", dense=True))
        '76.9 GB'
        >>> est.layers[0].sparse["values"] == 4 * (15_091_983 + 138_639)
        True
    """
    if steps is not None or isinstance(model, ConnectomeRNN):
        return estimate_dynamics(model, batch_size=batch_size, steps=steps, optimizer=optimizer,
                                 dtype=_check_dtype(dtype), device=device)
    batch = _check_batch(batch_size)
    dtype = _check_dtype(dtype)
    spec = resolve_optimizer(optimizer)
    if mode is not None:
        policy.check_mode(mode)
    if isinstance(model, nn.Module):
        return _estimate_module(model, batch, spec, dtype, device, input_requires_grad, mode)
    if nnz is not None or density is not None or not isinstance(model, Connectivity):
        if isinstance(model, Connectivity):
            raise ShapeError("Pass 'nnz'/'density' with a shape, not with a Connectivity.")
        if not isinstance(model, (tuple, list, torch.Size)):
            raise SparseLinearTypeError(
                f"'model' must be an nn.Module, a Connectivity or a shape (out_features, "
                f"in_features) with nnz= or density=; got {describe(model)}."
            )
        shape = check_shape(model, "model")
        k = resolve_nnz(shape[0] * shape[1], nnz, density)
        index_dtype = index_dtype_for(shape, k)
        bands = (None, None)
    else:
        shape, k, index_dtype = model.shape, model.nnz, model.index_dtype
        bands = _bands(model.crow_indices(), model.col_indices(), mode or "auto")
    dev = torch.device(device) if device is not None else torch.device("cpu")
    dtype = dtype or torch.get_default_dtype()
    layer, _, _ = _layer(
        "layer", shape, k, bias, batch=batch, dtype=dtype, index_dtype=index_dtype, spec=spec,
        device=dev, needs_input_grad=input_requires_grad, mode=mode or "auto", bands=bands,
    )
    return MemoryEstimate(
        batch, spec.label, spec.slots, str(dev), [layer],
        working=layer.sparse["working"], dense_working=layer.dense["working"],
    )


def _weight_parameter(layer: SparseLinear) -> torch.Tensor:
    """The parameter the optimizer updates for the layer's weight: the weight, or the free
    parameter of a constraint on it."""
    if parametrize.is_parametrized(layer, "weight"):
        return layer.parametrizations.weight.original
    return layer.weight


def _estimate_module(
    model: nn.Module,
    batch: int,
    spec: OptimizerSpec,
    dtype: torch.dtype | None,
    device: Any,
    input_requires_grad: bool,
    mode: str | None,
) -> MemoryEstimate:
    params = list(model.parameters())
    first_param = params[0] if params else None
    dev = torch.device(device) if device is not None else (
        first_param.device if first_param is not None else torch.device("cpu")
    )
    first_leaf = next(
        (m for m in model.modules() if not list(m.children()) and list(m.parameters(False))),
        None,
    )
    layers, seen = [], set()
    act_sum = dense_act_sum = 0
    working = dense_working = 0
    dense_numel = {}  # id of a sparse layer's weight parameter -> its dense equivalent's size
    special = tuple(MODULE_ESTIMATORS)
    inside = {id(sub) for m in model.modules() if special and isinstance(m, special)
              for sub in m.modules() if sub is not m}
    for name, module in model.named_modules():
        if id(module) in inside:
            continue
        estimator = next((f for cls, f in MODULE_ESTIMATORS.items() if isinstance(module, cls)),
                         None)
        if estimator is not None:
            needs_grad = input_requires_grad or first_leaf not in set(module.modules())
            layer, act, dense_act = estimator(name or type(module).__name__, module, batch, spec,
                                              dtype, device, needs_grad)
        elif isinstance(module, SparseLinear):
            layer_dtype = dtype or module.weight.dtype
            needs_grad = input_requires_grad or module is not first_leaf
            layer_mode = mode or module.mode
            layer, act, dense_act = _layer(
                name or type(module).__name__, (module.out_features, module.in_features),
                module.nnz, module.bias is not None, batch=batch, dtype=layer_dtype,
                index_dtype=module.col_indices.dtype, spec=spec, device=dev,
                needs_input_grad=needs_grad, mode=layer_mode,
                bands=_bands(module.crow_indices, module.col_indices, layer_mode),
            )
        else:
            continue
        seen.update(id(p) for p in module.parameters())
        layers.append(layer)
        act_sum, dense_act_sum = act_sum + act, dense_act_sum + dense_act
        working = max(working, layer.sparse["working"])
        dense_working = max(dense_working, layer.dense["working"])
        weight = module.weight if estimator is not None else _weight_parameter(module)
        dense_numel[id(weight)] = layer.shape[0] * layer.shape[1]
    other_params = [p for p in params if id(p) not in seen]
    other_bytes = sum(p.numel() * (dtype or p.dtype).itemsize for p in other_params)
    other = {
        "values": other_bytes,
        "gradients": sum(
            p.numel() * (dtype or p.dtype).itemsize for p in other_params if p.requires_grad
        ),
        "optimizer_state": spec.slots * other_bytes,
    }
    item = (dtype or (first_param.dtype if first_param is not None else torch.float32)).itemsize
    # the parameters the optimizer updates, in its order (that of model.parameters())
    trained = [p for p in params if p.requires_grad]
    sizes = [p.numel() for p in trained]
    dense_sizes = [dense_numel.get(id(p), p.numel()) for p in trained]
    opt = optimizer_transient(spec.kind, sizes, item, dev.type, spec.implementation)
    dense_opt = optimizer_transient(spec.kind, dense_sizes, item, dev.type, spec.implementation)
    return MemoryEstimate(
        batch, spec.label, spec.slots, str(dev), layers, other,
        working=max(working, opt - act_sum, 0),
        dense_working=max(dense_working, dense_opt - dense_act_sum, 0),
    )
