"""Checkpoints of sharded layers: ``torch.distributed.checkpoint`` (DCP) with re-sharding, and
consolidation into the single-process [`SparseLinear`][sparselinear.SparseLinear] state dict and
back.

In a DCP checkpoint each sharded layer is four global tensors, every rank writing and reading
only its slice: ``weight`` and ``col_indices`` (``nnz``, in the canonical edge order), ``bias``
and ``fan_in`` (``out_features``). A checkpoint saved from N ranks loads onto M ranks: DCP reads
the slices each new rank owns. The pattern read back is compared with the layer's own on every
rank before any value is copied ([`WiringMismatchError`][sparselinear.errors.WiringMismatchError]
otherwise). Other parameters and buffers of the model are saved as replicated tensors.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ..errors import SparseLinearTypeError, WiringMismatchError, describe
from ..nn import SparseLinear
from ..pattern import Connectivity
from .collectives import agree
from .layer import ShardedSparseLinear

__all__ = [
    "consolidated_state_dict",
    "load_checkpoint",
    "load_consolidated_state_dict",
    "save_checkpoint",
    "to_sparse_linear",
]

_INDEX = torch.int64


def _sharded(full: int, offset: int, local: torch.Tensor, layer: ShardedSparseLinear) -> Any:
    from torch.distributed._shard.sharded_tensor import Shard, ShardMetadata, init_from_local_shards

    group = layer.comm.group
    rank = layer.rank if group is None else dist.get_global_rank(group, layer.rank)
    placement = f"rank:{rank}/{local.device}"
    shard = Shard(local, ShardMetadata([offset], [local.numel()], placement))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return init_from_local_shards([shard], full, process_group=group)


def _layer_tensors(layer: ShardedSparseLinear) -> dict[str, torch.Tensor]:
    """This rank's slices: the values and pattern as they are in the layer (views)."""
    local = layer.local
    tensors = {
        "weight": local.weight.detach(),
        "col_indices": local.col_indices.to(_INDEX),
        "fan_in": local.crow_indices.diff().to(_INDEX),
    }
    if local.bias is not None:
        tensors["bias"] = local.bias.detach()
    return tensors


def _state(module: nn.Module, fresh: bool) -> dict[str, Any]:
    """The DCP state dict of ``module``: sharded tensors for the sharded layers (``fresh``:
    empty buffers to load into), plain tensors for everything else."""
    sharded = {name: m for name, m in module.named_modules() if isinstance(m, ShardedSparseLinear)}
    inside = tuple(f"{name}." if name else "" for name in sharded)
    state: dict[str, Any] = {
        k: v for k, v in module.state_dict().items()
        if not any(k.startswith(p) for p in inside) and isinstance(v, torch.Tensor)
    }
    for name, layer in sharded.items():
        prefix = f"{name}." if name else ""
        e0, _ = layer.output_partition.edges(layer.rank)
        r0, _ = layer.rows
        for key, t in _layer_tensors(layer).items():
            per_edge = key in ("weight", "col_indices")
            full, offset = (layer.nnz, e0) if per_edge else (layer.out_features, r0)
            local = torch.empty_like(t) if fresh else t
            state[prefix + key] = _sharded(full, offset, local, layer)
    return state


def _group(module: nn.Module) -> Any:
    return next((m.comm.group for m in module.modules() if isinstance(m, ShardedSparseLinear)),
                None)


def save_checkpoint(module: nn.Module, path: str | os.PathLike) -> None:
    """Save ``module`` (a [`ShardedSparseLinear`][sparselinear.distributed.ShardedSparseLinear] or a
    model holding some) with DCP to the directory ``path``; call it on every rank of the layers'
    process group."""
    import torch.distributed.checkpoint as dcp  # a second to import: only when used

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        dcp.save(_state(module, fresh=False), checkpoint_id=path, process_group=_group(module))


def load_checkpoint(module: nn.Module, path: str | os.PathLike) -> None:
    """Load a checkpoint written by [`save_checkpoint`][sparselinear.distributed.save_checkpoint]
    from any number of ranks into ``module``, on every rank, after checking each sharded layer's
    wiring.

    Raises:
        WiringMismatchError: on every rank, if the checkpoint's shapes or pattern differ from
            the module's.
    """
    import torch.distributed.checkpoint as dcp

    state = _state(module, fresh=True)
    group = _group(module)

    def check_sizes() -> None:
        stored = dcp.FileSystemReader(path).read_metadata().state_dict_metadata
        for key, value in state.items():
            mine = tuple(value.size())
            theirs = getattr(stored.get(key), "size", None)
            if theirs is None or tuple(theirs) != mine:
                raise WiringMismatchError(
                    f"The checkpoint at {path} was made for other wiring: '{key}' has shape "
                    f"{None if theirs is None else tuple(theirs)} there and {mine} here. Load it "
                    "into a model built from the checkpoint's pattern."
                )

    agree(group, "Reading the checkpoint", check_sizes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        dcp.load(state, checkpoint_id=path, process_group=group)

    def local(key: str) -> torch.Tensor:
        value = state[key]
        return value.local_tensor() if hasattr(value, "local_tensor") else value

    def check_wiring() -> None:
        for name, layer in module.named_modules():
            if not isinstance(layer, ShardedSparseLinear):
                continue
            prefix = f"{name}." if name else ""
            mine = _layer_tensors(layer)
            for key in ("fan_in", "col_indices"):
                if not torch.equal(local(prefix + key).cpu(), mine[key].cpu()):
                    raise WiringMismatchError(
                        f"The checkpoint for '{prefix or 'layer'}' was made for different "
                        f"wiring: its {key} differs from this layer's in rows "
                        f"{layer.rows[0]}..{layer.rows[1] - 1}. Build the layer from the "
                        "checkpoint's pattern."
                    )

    agree(group, "Checking the checkpoint's wiring", check_wiring)
    with torch.no_grad():
        plain = {}
        for key, value in state.items():
            target = key.rsplit(".", 1)
            if target[-1] in ("weight", "bias") and hasattr(value, "local_tensor"):
                layer = module.get_submodule(target[0]) if len(target) > 1 else module
                getattr(layer.local, target[-1]).copy_(value.local_tensor())
            elif not hasattr(value, "local_tensor"):
                plain[key] = value
        if plain:
            module.load_state_dict(plain, strict=False)


def consolidated_state_dict(layer: ShardedSparseLinear, dst: int = 0) -> dict[str, Any] | None:
    """The whole layer as a single-process [`SparseLinear`][sparselinear.SparseLinear] state dict,
    on rank ``dst`` (``None`` elsewhere). Every rank sends its slices: for small layers (it all
    lands on one rank).

    Examples:
        >>> sd = consolidated_state_dict(layer)               # doctest: +SKIP
        >>> SparseLinear(in_f, out_f, conn).load_state_dict(sd)  # doctest: +SKIP
    """
    if not isinstance(layer, ShardedSparseLinear):
        raise SparseLinearTypeError(
            f"'layer' must be a ShardedSparseLinear; got {describe(layer)}."
        )
    mine = {k: v.cpu() for k, v in _layer_tensors(layer).items()}
    pieces: list[Any] = [None] * layer.world_size if layer.rank == dst else None
    dist.gather_object(mine, pieces, dst=dist.get_global_rank(layer.comm.group, dst)
                       if layer.comm.group is not None else dst, group=layer.comm.group)
    if layer.rank != dst:
        return None
    fan_in = torch.cat([p["fan_in"] for p in pieces])
    crow = torch.zeros(layer.out_features + 1, dtype=_INDEX)
    torch.cumsum(fan_in, 0, out=crow[1:])
    state = {
        "weight": torch.cat([p["weight"] for p in pieces]),
        "crow_indices": crow,
        "col_indices": torch.cat([p["col_indices"] for p in pieces]),
        "_extra_state": None,
    }
    if layer.bias is not None:
        state["bias"] = torch.cat([p["bias"] for p in pieces])
    return state


def load_consolidated_state_dict(layer: ShardedSparseLinear, state_dict: dict[str, Any]) -> None:
    """Load a single-process [`SparseLinear`][sparselinear.SparseLinear] state dict (every rank
    holds it) into the sharded layer: each rank takes its rows, checked by
    [`SparseLinear`][sparselinear.SparseLinear]'s own wiring check.

    Raises:
        WiringMismatchError: on every rank, if the state dict was made for other wiring.
    """

    def load() -> None:
        crow = state_dict.get("crow_indices")
        col = state_dict.get("col_indices")
        if not isinstance(crow, torch.Tensor) or not isinstance(col, torch.Tensor) or \
                crow.shape != (layer.out_features + 1,) or col.numel() != layer.nnz:
            raise WiringMismatchError(
                f"The state dict was made for different wiring: it holds crow_indices "
                f"{describe(crow)} and col_indices {describe(col)}; this layer has "
                f"{layer.out_features} rows and nnz={layer.nnz}. Build the layer from the "
                "state dict's pattern."
            )
        start, stop = layer.rows
        crow = crow.to(_INDEX)
        e0, e1 = int(crow[start]), int(crow[stop])
        local = {
            "crow_indices": crow[start:stop + 1] - e0,
            "col_indices": col[e0:e1],
            "weight": state_dict["weight"][e0:e1],
            "_extra_state": None,
        }
        if "bias" in state_dict and state_dict["bias"] is not None:
            local["bias"] = state_dict["bias"][start:stop]
        layer.local.load_state_dict(local)

    agree(layer.comm.group, "Loading the consolidated state dict", load)


def to_sparse_linear(layer: ShardedSparseLinear, dst: int = 0) -> SparseLinear | None:
    """The whole layer as one [`SparseLinear`][sparselinear.SparseLinear] on rank ``dst`` (``None``
    elsewhere)."""
    state = consolidated_state_dict(layer, dst)
    if state is None:
        return None
    conn = Connectivity.from_csr(state["crow_indices"], state["col_indices"],
                                 (layer.out_features, layer.in_features))
    single = SparseLinear(layer.in_features, layer.out_features, conn,
                          bias=layer.bias is not None, dtype=layer.weight.dtype)
    single.load_state_dict(state)
    return single
