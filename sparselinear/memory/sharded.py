"""Per-rank memory and per-step communication of a row-sharded layer, before anything runs.

[`estimate_sharded`][sparselinear.memory.estimate_sharded] splits a layer over ``world_size`` ranks
as [`ShardedSparseLinear`][sparselinear.distributed.ShardedSparseLinear] does (rows balanced by
edges), and gives each rank the parameters, gradients and optimizer state of its rows (what
[`estimate`][sparselinear.memory.estimate] says of a ``(rows, in)`` layer) plus what surrounds them
in a step for the input's layout (``sharded_side``: the input, its gradient, the kernels'
temporaries and the collectives' buffers), and the bytes each rank sends
([`sparselinear.distributed.step_volume`][sparselinear.distributed.step_volume]).
[`ranks_needed`][sparselinear.memory.ranks_needed] answers the planning question: how many devices
of a given memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from ..distributed import RowPartition, ShardedSparseLinear, step_volume
from ..distributed.blocks import ShardBlocks
from ..errors import ShapeError, SparseLinearTypeError, check_choice, describe
from ..pattern.connectivity import Connectivity, index_dtype_for
from ..pattern.generators import resolve_nnz
from ..pattern.sources import check_shape
from .estimate import (
    MODULE_ESTIMATORS,
    LayerEstimate,
    MemoryEstimate,
    _check_dtype,
    estimate,
    format_bytes,
)
from .optimizers import OptimizerSpec, resolve_optimizer
from .sharded_side import RankSide, replicated_side, ring_side
from .transients import optimizer_transient

__all__ = ["ShardedEstimate", "estimate_sharded", "ranks_needed"]


@dataclass
class ShardedEstimate:
    """What each rank of a sharded layer needs for one training step.

    Attributes:
        world_size, batch_size: as passed.
        input: ``"replicated"`` or ``"sharded"``.
        ranks: one [`MemoryEstimate`][sparselinear.memory.MemoryEstimate] per rank: its rows'
            values, gradients, optimizer state and pattern, its activations (the input on that rank,
            its rows of the output, what is saved for backward) and the working memory of the step's
            peak.
        sides: one ``RankSide`` per rank: the input
            side in detail.
        buffers: bytes of the collectives' buffers at the largest rank's peak (pieces in
            flight and partial sums, or the all-reduce copy; included in ``ranks``).
        communication: bytes the rank that sends most sends per step: ``forward``,
            ``backward``, ``total``.
        single: the estimate of the whole layer in one process (its input counted).
    """

    world_size: int
    batch_size: int
    input: str
    ranks: list[MemoryEstimate]
    sides: list[RankSide]
    buffers: int
    communication: dict[str, int]
    single: MemoryEstimate

    @property
    def per_rank(self) -> list[int]:
        """Estimated peak bytes of each rank."""
        return [r.total for r in self.ranks]

    @property
    def peak(self) -> int:
        """The largest rank's estimated peak, in bytes."""
        return max(self.per_rank)

    def to_dict(self) -> dict[str, Any]:
        return {
            "world_size": self.world_size, "batch_size": self.batch_size, "input": self.input,
            "per_rank": self.per_rank, "peak": self.peak, "buffers": self.buffers,
            "pieces": self.sides[0].pieces, "communication": dict(self.communication),
            "single": self.single.total,
        }

    def __str__(self) -> str:
        lay = self.single.layers[0]
        return "\n".join([
            f"Sharded over {self.world_size} ranks: {lay.shape[0]:,} x {lay.shape[1]:,}, "
            f"nnz {lay.nnz:,}, batch {self.batch_size}, {self.single.optimizer}, "
            f"{self.input} input",
            f"  per rank (largest):  {format_bytes(self.peak)}  "
            f"(one process: {format_bytes(self.single.total)})",
            f"  sent per rank/step:  {format_bytes(self.communication['total'])}  "
            f"(forward {format_bytes(self.communication['forward'])}, backward "
            f"{format_bytes(self.communication['backward'])})",
        ])


def _split(model: Any, nnz: int | None, density: float | None,
           world: int) -> tuple[tuple[int, int], int, RowPartition | None]:
    if isinstance(model, ShardedSparseLinear):
        if model.world_size != world:
            raise ShapeError(
                f"The layer is sharded over {model.world_size} ranks; got world_size={world}."
            )
        return (model.out_features, model.in_features), model.nnz, model.output_partition
    if isinstance(model, Connectivity):
        crow = model.crow_indices().cpu().to(torch.int64).numpy()
        rows = np.arange(model.out_features + 1)
        return model.shape, model.nnz, RowPartition.balanced(rows, crow, world)
    if not isinstance(model, (tuple, list, torch.Size)):
        raise SparseLinearTypeError(
            f"'model' must be a ShardedSparseLinear, a Connectivity or a shape (out, in) with "
            f"nnz= or density=; got {describe(model)}."
        )
    shape = check_shape(model, "model")
    if shape[0] < world:
        raise ShapeError(f"Cannot split {shape[0]} rows over {world} ranks.")
    return shape, resolve_nnz(shape[0] * shape[1], nnz, density), None


def _even(n: int, world: int) -> list[int]:
    return [(r + 1) * n // world - r * n // world for r in range(world)]


def _input_sizes(layer: ShardedSparseLinear | None, shape: tuple[int, int], rows: list[int],
                 world: int) -> list[int]:
    """Input features per rank for a row-sharded input: the layer's input partition, else a
    square layer's own row split (a recurrent step), else an even split."""
    if layer is not None and layer.input_partition is not None:
        return layer.input_partition.sizes()
    return list(rows) if shape[0] == shape[1] else _even(shape[1], world)


def _block_nnz(layer: ShardedSparseLinear | None, rank: int, edges: int, world: int) -> int:
    """The most edges one input shard's block of ``rank``'s rows holds: the layer's own, else
    an even share."""
    if layer is not None and layer.rank == rank and isinstance(layer.local, ShardBlocks):
        offsets = layer.local.offsets
        return max(b - a for a, b in zip(offsets, offsets[1:]))
    return math.ceil(edges / world)


def estimate_sharded(
    model: Any,
    *,
    world_size: int,
    batch_size: int,
    nnz: int | None = None,
    density: float | None = None,
    optimizer: Any = "adam",
    dtype: torch.dtype | str | None = None,
    device: torch.device | str | None = None,
    bias: bool = True,
    input: str | None = None,
    input_requires_grad: bool = True,
    gather_output: bool = False,
) -> ShardedEstimate:
    """Estimate one training step of a layer sharded over ``world_size`` ranks.

    Args:
        model: a [`ShardedSparseLinear`][sparselinear.distributed.ShardedSparseLinear] (its own
            partitions, dtype and device), a [`Connectivity`][sparselinear.Connectivity] (split as
            the layer would), or a shape ``(out, in)`` with ``nnz``/``density`` (rows and edges
            split evenly).
        world_size: ranks.
        batch_size: rows of the flattened input.
        optimizer: as for [`estimate`][sparselinear.memory.estimate].
        dtype: as for [`estimate`][sparselinear.memory.estimate].
        device: as for [`estimate`][sparselinear.memory.estimate].
        bias: as for [`estimate`][sparselinear.memory.estimate].
        input: ``"replicated"`` (every rank holds the whole input; its gradient is all-reduced)
            or ``"sharded"`` (each rank holds its rows of it, the output of a previous sharded
            layer or a recurrent step's own, multiplied around the ring); default: the layer's
            own layout, ``"replicated"`` for a Connectivity or a shape. A sharded input is
            split as the layer's input partition, else as the rows of a square layer, else
            evenly.
        input_requires_grad: whether the input gradient is computed and reduced.
        gather_output: whether the full output is all-gathered.

    Every rank's estimate counts its rows' parameters, gradients, optimizer state and pattern,
    the input as that rank holds it, its rows of the output, and the peak of the step's
    temporaries: the kernels', the input gradient, and the collectives' buffers
    (``sparselinear.memory.sharded_side``). ``single`` is the whole layer in one process,
    its input counted the same way.

    Examples:
        >>> from sparselinear import memory
        >>> shape = (1_000_000, 1_000_000)
        >>> rep = memory.estimate_sharded(shape, nnz=40_000_000, world_size=4, batch_size=32)
        >>> rep.communication["total"]          # the input gradient's all-reduce
        192000000
        >>> ring = memory.estimate_sharded(shape, nnz=40_000_000, world_size=4, batch_size=32,
        ...                                input="sharded")
        >>> ring.peak < 0.2 * ring.single.total < rep.peak
        True
        >>> ring.communication["total"]         # 3/4 of the input, three times
        288000000
    """
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise SparseLinearTypeError(f"'world_size' must be a positive int; got {world_size!r}.")
    layer = model if isinstance(model, ShardedSparseLinear) else None
    if input is None:
        input = "sharded" if layer is not None and layer.input_partition else "replicated"
    check_choice(input, ("replicated", "sharded"), "input")
    shape, k, partition = _split(model, nnz, density, world_size)
    if layer is not None:
        dtype = dtype or layer.weight.dtype
        device = device or layer.weight.device
    dtype = _check_dtype(dtype) or torch.get_default_dtype()
    dev = torch.device(device) if device is not None else torch.device("cpu")
    spec = resolve_optimizer(optimizer)
    options = {"batch_size": batch_size, "optimizer": optimizer, "dtype": dtype, "device": dev,
               "bias": bias, "input_requires_grad": input_requires_grad, "mode": "sparse"}
    w, batch, d = world_size, batch_size, dtype.itemsize
    single = estimate(shape, nnz=k, **options)
    single.layers[0].sparse["activations"] += batch * shape[1] * d  # its input, as below
    if partition is None:
        rows, edges = _even(shape[0], w), _even(k, w)
    else:
        rows = partition.sizes()
        edges = [b - a for a, b in zip(partition.edge_bounds, partition.edge_bounds[1:])]
    sizes = _input_sizes(layer, shape, rows, w)
    ranks, sides = [], []
    for rank, (r, e) in enumerate(zip(rows, edges)):
        own = estimate((r, shape[1]), nnz=e, **options)
        index = (layer.local.col.dtype if isinstance(layer.local, ShardBlocks) else
                 layer.local.col_indices.dtype) if layer is not None and layer.rank == rank \
            else index_dtype_for((r, shape[1]), e)
        if input == "sharded" and w > 1:
            side = ring_side(r, e, _block_nnz(layer, rank, e, w), sizes, rank, batch, dtype,
                             dev, index, input_requires_grad=input_requires_grad)
        else:
            side = replicated_side(r, e, shape[1], batch, dtype, dev, index, w,
                                   input_requires_grad=input_requires_grad)
        if gather_output and w > 1:  # padded shards, the gathered copy, the full output
            gathered = (w + 1) * batch * max(rows) * d + batch * shape[0] * d
            side = replace(side, forward=side.forward + gathered)
        optimizer_step = optimizer_transient(spec.kind, [e, r if bias else 0], d, dev.type,
                                             spec.implementation)
        working = max(side.working, optimizer_step - side.activations, 0)
        own.layers[0].sparse.update(pattern=side.pattern, activations=side.activations,
                                    working=working)
        own.working = working
        ranks.append(own)
        sides.append(side)
    largest = max(range(w), key=lambda i: ranks[i].total)
    communication = step_volume(
        batch, shape[1], shape[0], w, itemsize=d, input=input,
        input_requires_grad=input_requires_grad, gather_output=gather_output,
        input_sizes=sizes if input == "sharded" else None, output_sizes=rows,
    )
    return ShardedEstimate(w, batch, input, ranks, sides, sides[largest].buffers,
                           communication, single)


def _rank_part(name: str, module: ShardedSparseLinear, batch: int, spec: OptimizerSpec,
               dtype: torch.dtype | None, device: Any,
               input_requires_grad: bool) -> tuple[LayerEstimate, int, int]:
    """A sharded layer in [`estimate`][sparselinear.memory.estimate]'s model: this rank's part of
    it, input side included."""
    est = estimate_sharded(module, world_size=module.world_size, batch_size=batch,
                           optimizer=spec, dtype=dtype, device=device,
                           bias=module.bias is not None,
                           input_requires_grad=input_requires_grad,
                           gather_output=module.gather_output)
    layer = est.ranks[module.rank].layers[0]
    layer.name = name
    return layer, layer.sparse["activations"], layer.dense["activations"]


MODULE_ESTIMATORS[ShardedSparseLinear] = _rank_part


def ranks_needed(model: Any, memory_per_rank: int, *, max_ranks: int = 1 << 20,
                 **options: Any) -> ShardedEstimate:
    """The smallest sharding whose largest rank fits ``memory_per_rank`` bytes.

    ``options`` are those of [`estimate_sharded`][sparselinear.memory.estimate_sharded]
    (``batch_size`` is required).

    Examples:
        >>> from sparselinear import memory
        >>> plan = memory.ranks_needed((70_000_000, 70_000_000), 141 * 10**9,
        ...                            nnz=10**11, batch_size=8)
        >>> plan.world_size, memory.format_bytes(plan.peak), memory.format_bytes(plan.single.total)
        (42, '138.5 GB', '5.6 TB')
    """
    lo, hi = 1, 1
    while estimate_sharded(model, world_size=hi, **options).peak > memory_per_rank:
        if hi >= max_ranks:
            raise ShapeError(f"More than {max_ranks} ranks would be needed.")
        lo, hi = hi, min(hi * 2, max_ranks)
    while lo < hi:  # the smallest world size that fits
        mid = (lo + hi) // 2
        if estimate_sharded(model, world_size=mid, **options).peak <= memory_per_rank:
            hi = mid
        else:
            lo = mid + 1
    return estimate_sharded(model, world_size=hi, **options)
