"""Checkpoints of sharded layers: ``torch.distributed.checkpoint`` (DCP) with re-sharding, and
consolidation into the single-process [`SparseLinear`][sparselinear.SparseLinear] state dict and
back.

In a DCP checkpoint each sharded layer is four global tensors, every rank writing and reading
only its slice: ``weight`` and ``col_indices`` (``nnz``, in the canonical edge order), ``bias``
and ``fan_in`` (``out_features``). A checkpoint saved from N ranks loads onto M ranks: DCP reads
the slices each new rank owns. The pattern read back is compared with the layer's own on every
rank before any value is copied ([`WiringMismatchError`][sparselinear.errors.WiringMismatchError]
otherwise). Other parameters and buffers of the model are saved as replicated tensors. An
optimizer's state can go with them (``optimizer=``), re-sharded the same way (``optimizer_state``).
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ..errors import DataError, SparseLinearTypeError, WiringMismatchError, describe
from ..io.names import decode_names, encode_names, same_names
from ..nn import SparseLinear
from ..pattern import Connectivity
from .collectives import agree
from .layer import ShardedSparseLinear
from .optimizer_state import apply_optimizer_state, empty_entries, optimizer_entries

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
    """This rank's slices in the canonical order: the values and pattern (views where the layer
    stores them so)."""
    crow, col = layer.canonical_pattern()
    tensors = {
        "weight": layer.to_canonical(layer.weight.detach()),
        "col_indices": col.to(_INDEX),
        "fan_in": crow.diff().to(_INDEX),
    }
    if layer.bias is not None:
        tensors["bias"] = layer.bias.detach()
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


def save_checkpoint(module: nn.Module, path: str | os.PathLike,
                    optimizer: torch.optim.Optimizer | None = None) -> None:
    """Save ``module`` (a [`ShardedSparseLinear`][sparselinear.distributed.ShardedSparseLinear] or a
    model holding some) with DCP to the directory ``path``, and ``optimizer``'s state if given
    (sharded like the weights: ``optimizer_state``); call it on every rank of the layers' process
    group."""
    import torch.distributed.checkpoint as dcp  # a second to import: only when used

    state = _state(module, fresh=False)
    if optimizer is not None:
        state.update(optimizer_entries(module, optimizer, _sharded))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        dcp.save(state, checkpoint_id=path, process_group=_group(module))


def load_checkpoint(module: nn.Module, path: str | os.PathLike,
                    optimizer: torch.optim.Optimizer | None = None) -> None:
    """Load a checkpoint written by [`save_checkpoint`][sparselinear.distributed.save_checkpoint]
    from any number of ranks into ``module`` (and its optimizer state into ``optimizer``, if given),
    on every rank, after checking each sharded layer's wiring.

    Raises:
        WiringMismatchError: on every rank, if the checkpoint's shapes or pattern differ from
            the module's.
        DataError: on every rank, if an optimizer is given and the checkpoint holds no
            optimizer state.
    """
    import torch.distributed.checkpoint as dcp

    state = _state(module, fresh=True)
    group = _group(module)

    def check_sizes() -> dict:
        stored = dcp.FileSystemReader(path).read_metadata().state_dict_metadata
        for key, value in state.items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                mine = tuple(value.size())
            theirs = getattr(stored.get(key), "size", None)
            if theirs is None or tuple(theirs) != mine:
                raise WiringMismatchError(
                    f"The checkpoint at {path} was made for other wiring: '{key}' has shape "
                    f"{None if theirs is None else tuple(theirs)} there and {mine} here. Load it "
                    "into a model built from the checkpoint's pattern."
                )
        if optimizer is not None and not any(k.startswith("optim.") for k in stored):
            raise DataError(
                f"The checkpoint at {path} holds no optimizer state: it was saved without "
                "`optimizer=`. Load it without one (the optimizer starts afresh)."
            )
        return stored

    stored = agree(group, "Reading the checkpoint", check_sizes)
    entries = {}
    if optimizer is not None:
        entries = empty_entries(module, optimizer, stored, _sharded)
        state.update(entries)
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
            if key in entries:
                continue
            target = key.rsplit(".", 1)
            if target[-1] in ("weight", "bias") and hasattr(value, "local_tensor"):
                layer = module.get_submodule(target[0]) if len(target) > 1 else module
                loaded = value.local_tensor()
                if target[-1] == "weight":
                    loaded = layer.from_canonical(loaded.to(layer.weight.device))
                getattr(layer.local, target[-1]).copy_(loaded)
            elif not hasattr(value, "local_tensor"):
                plain[key] = value
        if plain:
            module.load_state_dict(plain, strict=False)
    if optimizer is not None:
        apply_optimizer_state(module, optimizer, {k: state[k] for k in entries})


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
    mine: dict[str, Any] = {k: v.cpu() for k, v in _layer_tensors(layer).items()}
    mine["out_names"] = layer.out_names
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
        "_extra_state": _names_state(layer, [p["out_names"] for p in pieces]),
    }
    if layer.bias is not None:
        state["bias"] = torch.cat([p["bias"] for p in pieces])
    return state


def _names_state(layer: ShardedSparseLinear, out_names: list[Any]) -> torch.Tensor | None:
    """The single-process layer's ``_extra_state``: the names of all rows (the ranks' slices
    joined) and of the inputs, or ``None`` when the layer has none."""
    if layer.in_names is None and all(n is None for n in out_names):
        return None
    joined = None
    if all(n is not None for n in out_names):
        joined = (np.concatenate(out_names) if isinstance(out_names[0], np.ndarray)
                  else tuple(name for part in out_names for name in part))
    return encode_names({"in_names": layer.in_names, "out_names": joined})


def _check_names(layer: ShardedSparseLinear, state: Any) -> None:
    """Raise unless the state dict's node names (if any) are the layer's (if any)."""
    names = decode_names(state)
    if not names:
        return
    start, stop = layer.rows
    theirs_out = names.get("out_names")
    for axis, mine, theirs in (
        ("out_names", layer.out_names, None if theirs_out is None else theirs_out[start:stop]),
        ("in_names", layer.in_names, names.get("in_names")),
    ):
        if mine is None or theirs is None:
            continue
        if not same_names(mine, theirs):
            raise WiringMismatchError(
                f"The state dict was made for other nodes: its {axis} differ from this "
                "layer's. Build the layer from the state dict's named pattern."
            )


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
        _check_names(layer, state_dict.get("_extra_state"))
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
        if isinstance(layer.local, SparseLinear):
            layer.local.load_state_dict(local)
        else:
            _load_blocks(layer, local)

    agree(layer.comm.group, "Loading the consolidated state dict", load)


def _load_blocks(layer: ShardedSparseLinear, local: dict[str, Any]) -> None:
    """Load this rank's canonical slices into a layer stored in blocks, after checking that
    they were made for its rows' pattern."""
    crow, col = layer.canonical_pattern()
    for key, mine in (("crow_indices", crow), ("col_indices", col)):
        theirs = local[key]
        if theirs.shape != mine.shape or not torch.equal(theirs.to(_INDEX).cpu(),
                                                         mine.to(_INDEX).cpu()):
            raise WiringMismatchError(
                f"The state dict was made for different wiring: its {key} differs from this "
                f"layer's in rows {layer.rows[0]}..{layer.rows[1] - 1}. Build the layer from "
                "the state dict's pattern."
            )
    if (local.get("bias") is None) != (layer.bias is None):
        raise WiringMismatchError("The state dict and the layer differ in having a bias.")
    with torch.no_grad():
        weight = local["weight"].to(layer.weight)
        layer.local.weight.copy_(layer.from_canonical(weight))
        if layer.bias is not None:
            layer.local.bias.copy_(local["bias"])


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
