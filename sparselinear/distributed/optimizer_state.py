"""An optimizer's state in a DCP checkpoint of sharded layers, re-sharded like their weights.

Per-element state of a sharded layer's parameters (Adam's ``exp_avg``, ``exp_avg_sq``, a
momentum buffer) is saved as global tensors in the canonical edge order (weights) or row order
(bias), each rank writing its slice — exactly as the weights themselves
(``checkpoint``), so a checkpoint from N ranks loads onto M. Other state (Adam's ``step``)
and the state of parameters outside sharded layers is saved as replicated tensors, and the
parameter groups' hyperparameters (``lr``, ``betas``, ...) as one replicated entry.

Entries are named ``optim.<parameter>.<state key>``, the parameter named as in the model's
checkpoint (``<layer>.weight`` for a sharded layer, whatever its storage).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import SparseLinearTypeError
from .layer import ShardedSparseLinear

__all__ = ["apply_optimizer_state", "empty_entries", "optimizer_entries"]

PREFIX = "optim."
GROUPS = PREFIX + "param_groups"


def _parameters(module: nn.Module) -> dict[int, tuple[str, ShardedSparseLinear | None, str]]:
    """``id(parameter) -> (name, its sharded layer or None, "weight"/"bias"/"")``."""
    found: dict[int, tuple[str, ShardedSparseLinear | None, str]] = {}
    for name, layer in module.named_modules():
        if isinstance(layer, ShardedSparseLinear):
            prefix = f"{name}." if name else ""
            found[id(layer.weight)] = (prefix + "weight", layer, "weight")
            if layer.bias is not None:
                found[id(layer.bias)] = (prefix + "bias", layer, "bias")
    for name, p in module.named_parameters():
        found.setdefault(id(p), (name, None, ""))
    return found


def _named(module: nn.Module, optimizer: torch.optim.Optimizer):
    """``(parameter, name, layer, kind)`` for every parameter the optimizer steps."""
    names = _parameters(module)
    for group in optimizer.param_groups:
        for p in group["params"]:
            if id(p) not in names:
                raise SparseLinearTypeError(
                    "The optimizer steps a parameter that is not in the module being "
                    "checkpointed; pass the module that holds all of its parameters."
                )
            yield (p, *names[id(p)])


def _global(layer: ShardedSparseLinear, kind: str, local: torch.Tensor, sharded) -> Any:
    """The sharded global tensor of a per-element state of ``layer``'s weight or bias."""
    if kind == "weight":
        return sharded(layer.nnz, layer.output_partition.edges(layer.rank)[0], local, layer)
    return sharded(layer.out_features, layer.rows[0], local, layer)


def optimizer_entries(module: nn.Module, optimizer: torch.optim.Optimizer, sharded) -> dict:
    """The DCP entries of ``optimizer``'s state as it is (to save). ``sharded(full, offset,
    local, layer)`` makes a sharded global tensor (``checkpoint._sharded``)."""
    entries: dict[str, Any] = {}
    for p, name, layer, kind in _named(module, optimizer):
        for key, value in optimizer.state.get(p, {}).items():
            if not isinstance(value, torch.Tensor):
                continue
            value = value.detach()
            if layer is not None and value.shape == p.shape:
                local = layer.to_canonical(value) if kind == "weight" else value
                entries[f"{PREFIX}{name}.{key}"] = _global(layer, kind, local, sharded)
            else:
                entries[f"{PREFIX}{name}.{key}"] = value
    entries[GROUPS] = [{k: v for k, v in g.items() if k != "params"}
                       for g in optimizer.param_groups]
    return entries


def _local_size(layer: ShardedSparseLinear, kind: str) -> int:
    return layer.weight.numel() if kind == "weight" else layer.rows[1] - layer.rows[0]


def empty_entries(module: nn.Module, optimizer: torch.optim.Optimizer, stored: dict,
                  sharded) -> dict:
    """Empty DCP entries to load the checkpoint's optimizer state into, shaped from the
    checkpoint's metadata ``stored`` (its ``state_dict_metadata``) and this rank's slices."""
    entries: dict[str, Any] = {}
    for p, name, layer, kind in _named(module, optimizer):
        prefix = f"{PREFIX}{name}."
        for key, meta in stored.items():
            if not key.startswith(prefix) or not hasattr(meta, "size"):
                continue
            dtype = meta.properties.dtype
            full = tuple(meta.size)
            if layer is not None and full == ((layer.nnz,) if kind == "weight" else
                                              (layer.out_features,)):
                local = torch.empty(_local_size(layer, kind), dtype=dtype, device=p.device)
                entries[key] = _global(layer, kind, local, sharded)
            else:
                entries[key] = torch.empty(full, dtype=dtype, device=p.device)
    if any(key.startswith(GROUPS) for key in stored):
        entries[GROUPS] = [{k: v for k, v in g.items() if k != "params"}
                           for g in optimizer.param_groups]
    return entries


def apply_optimizer_state(module: nn.Module, optimizer: torch.optim.Optimizer,
                          entries: dict) -> None:
    """Put loaded entries into ``optimizer``: per-element state in each parameter's storage
    order, the rest as loaded, and the groups' hyperparameters."""
    for p, name, layer, kind in _named(module, optimizer):
        prefix = f"{PREFIX}{name}."
        state = {}
        for key, value in entries.items():
            if not key.startswith(prefix) or key == GROUPS:
                continue
            value = value.local_tensor() if hasattr(value, "local_tensor") else value
            if layer is not None and kind == "weight" and value.shape == p.shape:
                value = layer.from_canonical(value)
            state[key[len(prefix):]] = value.to(p.device)
        if state:
            optimizer.state[p] = state
    groups = entries.get(GROUPS)
    if isinstance(groups, list) and len(groups) == len(optimizer.param_groups):
        for group, saved in zip(optimizer.param_groups, groups):
            group.update(saved)
