"""Per-rank memory and per-step communication of a row-sharded layer, before anything runs.

[`estimate_sharded`][sparselinear.memory.estimate_sharded] splits a layer over ``world_size`` ranks
as [`ShardedSparseLinear`][sparselinear.distributed.ShardedSparseLinear] does (rows balanced by
edges), asks [`estimate`][sparselinear.memory.estimate] what each rank's local layer costs, and adds
the collectives' padded buffers and volumes
([`sparselinear.distributed.step_volume`][sparselinear.distributed.step_volume]).
[`ranks_needed`][sparselinear.memory.ranks_needed] answers the planning question: how many devices
of a given memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..distributed import RowPartition, ShardedSparseLinear, step_volume
from ..errors import ShapeError, SparseLinearTypeError, describe
from ..pattern.connectivity import Connectivity
from ..pattern.generators import resolve_nnz
from ..pattern.sources import check_shape
from .estimate import MemoryEstimate, estimate, format_bytes

__all__ = ["ShardedEstimate", "estimate_sharded", "ranks_needed"]


@dataclass
class ShardedEstimate:
    """What each rank of a sharded layer needs for one training step.

    Attributes:
        world_size: the number of ranks, as passed.
        batch_size: as passed.
        ranks: one [`MemoryEstimate`][sparselinear.memory.MemoryEstimate] per rank (its local
            layer).
        buffers: bytes per rank of the collectives' padded send/receive buffers.
        communication: bytes one rank sends per step: ``forward``, ``backward``, ``total``.
        single: the estimate of the whole layer in one process.
    """

    world_size: int
    batch_size: int
    ranks: list[MemoryEstimate]
    buffers: int
    communication: dict[str, int]
    single: MemoryEstimate

    @property
    def per_rank(self) -> list[int]:
        """Estimated peak bytes of each rank."""
        return [r.total + self.buffers for r in self.ranks]

    @property
    def peak(self) -> int:
        """The largest rank's estimated peak, in bytes."""
        return max(self.per_rank)

    def to_dict(self) -> dict[str, Any]:
        return {
            "world_size": self.world_size, "batch_size": self.batch_size,
            "per_rank": self.per_rank, "peak": self.peak, "buffers": self.buffers,
            "communication": dict(self.communication), "single": self.single.total,
        }

    def __str__(self) -> str:
        lay = self.single.layers[0]
        return "\n".join([
            f"Sharded over {self.world_size} ranks: {lay.shape[0]:,} x {lay.shape[1]:,}, "
            f"nnz {lay.nnz:,}, batch {self.batch_size}, {self.single.optimizer}",
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
    input: str = "replicated",
    input_requires_grad: bool = True,
    gather_output: bool = False,
) -> ShardedEstimate:
    """Estimate one training step of a layer sharded over ``world_size`` ranks.

    Args:
        model: a [`ShardedSparseLinear`][sparselinear.distributed.ShardedSparseLinear] (its own
            partition), a [`Connectivity`][sparselinear.Connectivity] (split as the layer would), or
            a shape ``(out, in)`` with ``nnz``/``density`` (rows and edges split evenly).
        world_size: the number of ranks.
        batch_size: rows of the flattened input.
        optimizer: as for [`estimate`][sparselinear.memory.estimate].
        dtype: as for [`estimate`][sparselinear.memory.estimate].
        device: as for [`estimate`][sparselinear.memory.estimate].
        bias: as for [`estimate`][sparselinear.memory.estimate].
        input: ``"replicated"`` or ``"sharded"`` (the output of a previous sharded layer).
        input_requires_grad: whether the input gradient is computed and reduced.
        gather_output: whether the full output is all-gathered.

    Examples:
        >>> from sparselinear import memory
        >>> est = memory.estimate_sharded((1_000_000, 1_000_000), nnz=40_000_000,
        ...                               world_size=4, batch_size=32)
        >>> est.peak < 0.3 * est.single.total
        True
        >>> est.communication["total"]          # the input gradient's all-reduce
        192000000
    """
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise SparseLinearTypeError(f"'world_size' must be a positive int; got {world_size!r}.")
    shape, k, partition = _split(model, nnz, density, world_size)
    options = {"batch_size": batch_size, "optimizer": optimizer, "dtype": dtype,
               "device": device, "bias": bias, "input_requires_grad": input_requires_grad,
               "mode": "sparse"}
    single = estimate(shape, nnz=k, **options)
    if partition is None:
        rows = [math.ceil(shape[0] / world_size)] * world_size
        edges = [math.ceil(k / world_size)] * world_size
    else:
        rows = partition.sizes()
        edges = [b - a for a, b in zip(partition.edge_bounds, partition.edge_bounds[1:])]
    ranks = [estimate((r, shape[1]), nnz=e, **options) for r, e in zip(rows, edges)]
    item = single.layers[0].sparse["values"] // max(k + (shape[0] if bias else 0), 1)
    w = world_size
    widest_in = math.ceil(shape[1] / w)
    buffers = 0
    if w > 1:
        if input == "sharded":  # padded shards gathered, then the full activation
            buffers = (w + 1) * batch_size * widest_in * item
        if gather_output:
            buffers = max(buffers, (w + 1) * batch_size * max(rows) * item)
    communication = step_volume(
        batch_size, shape[1], shape[0], w, itemsize=item, input=input,
        input_requires_grad=input_requires_grad, gather_output=gather_output,
        output_sizes=rows,
    )
    return ShardedEstimate(w, batch_size, ranks, buffers, communication, single)


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
        (41, '139.5 GB', '5.6 TB')
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
