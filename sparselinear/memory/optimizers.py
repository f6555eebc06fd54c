"""How many parameter-sized state tensors ("slots") an optimizer keeps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..errors import SparseLinearTypeError, describe

__all__ = ["OPTIMIZERS", "OptimizerSpec", "resolve_optimizer"]

#: Named optimizers: name -> (slots per parameter, label).
OPTIMIZERS = {
    "sgd": (0, "SGD"),
    "momentum": (1, "SGD with momentum"),
    "adam": (2, "Adam"),
    "adamw": (2, "AdamW"),
}


@dataclass(frozen=True)
class OptimizerSpec:
    """``kind`` is a key of [`OPTIMIZERS`][sparselinear.memory.OPTIMIZERS] or ``"other"``; ``slots``
    state tensors per parameter, each the parameter's size; ``implementation`` the one an optimizer
    instance asked for (``"fused"``, ``"foreach"`` or ``"for-loop"``), or ``None`` for torch's
    default on the device (a name such as ``"adam"`` always means the default)."""

    kind: str
    slots: int
    label: str
    implementation: str | None = None


def _from_instance(opt: torch.optim.Optimizer) -> OptimizerSpec:
    group = opt.param_groups[0] if opt.param_groups else {}
    name = type(opt).__name__
    if isinstance(opt, torch.optim.SGD):
        return resolve_optimizer("momentum" if group.get("momentum", 0) else "sgd")
    if isinstance(opt, (torch.optim.Adam, torch.optim.AdamW)):
        kind = "adamw" if isinstance(opt, torch.optim.AdamW) else "adam"
        slots = 3 if group.get("amsgrad") else 2
        implementation = next((k for k in ("fused", "foreach") if group.get(k)), None)
        if implementation is None and group.get("foreach") is False:
            implementation = "for-loop"
        notes = [n for n in ("amsgrad" if slots == 3 else None, implementation) if n]
        label = name + (f" ({', '.join(notes)})" if notes else "")
        return OptimizerSpec(kind, slots, label, implementation)
    simple = {torch.optim.Adagrad: 1, torch.optim.Adamax: 2, torch.optim.NAdam: 2,
              torch.optim.RAdam: 2, torch.optim.Adadelta: 2}
    for cls, slots in simple.items():
        if isinstance(opt, cls):
            return OptimizerSpec("other", slots, name)
    if isinstance(opt, torch.optim.RMSprop):
        slots = 1 + bool(group.get("momentum", 0)) + bool(group.get("centered"))
        return OptimizerSpec("other", slots, name)
    raise SparseLinearTypeError(
        f"Cannot tell how much state {name} keeps. Pass 'optimizer' as the number of "
        "parameter-sized state tensors it holds per parameter, e.g. optimizer=2."
    )


def resolve_optimizer(optimizer: Any) -> OptimizerSpec:
    """An ``OptimizerSpec`` from a name, a slot count or an optimizer instance.

    Examples:
        >>> resolve_optimizer("adam")
        OptimizerSpec(kind='adam', slots=2, label='Adam', implementation=None)
        >>> resolve_optimizer(3).slots
        3
    """
    if isinstance(optimizer, OptimizerSpec):
        return optimizer
    if isinstance(optimizer, torch.optim.Optimizer):
        return _from_instance(optimizer)
    if isinstance(optimizer, str):
        key = optimizer.strip().lower()
        if key in OPTIMIZERS:
            slots, label = OPTIMIZERS[key]
            return OptimizerSpec(key, slots, label)
        raise SparseLinearTypeError(
            f"'optimizer' must be one of {', '.join(OPTIMIZERS)} or a number of state slots "
            f"per parameter; got {optimizer!r}."
        )
    if isinstance(optimizer, int) and not isinstance(optimizer, bool) and optimizer >= 0:
        return OptimizerSpec("other", optimizer, f"optimizer with {optimizer} slot(s)")
    raise SparseLinearTypeError(
        f"'optimizer' must be a name ({', '.join(OPTIMIZERS)}), a non-negative int of state "
        f"slots per parameter, or a torch.optim.Optimizer; got {describe(optimizer)}."
    )
