"""Smooth maps and input checks shared by the weight constraints.

The constraints in [`sparselinear.constraints`][sparselinear.constraints] keep an unconstrained free
parameter ``u`` and map it onto the allowed set with a smooth, differentiable function. This module
holds those functions, their inverses, and the validation and error-message helpers they share.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.nn import functional

from ..errors import (
    MAX_LISTED,
    DataError,
    ShapeError,
    SparseLinearTypeError,
    check_choice,
    describe,
    listing,
)
from ..pattern.connectivity import Connectivity

MAPS = ("softplus", "exp")


def check_map(map: str) -> str:
    return check_choice(map, MAPS, "map", "'softplus' grows linearly for large values, 'exp' "
                        "works in log-magnitude (multiplicative steps).")


def tiny(dtype: torch.dtype) -> float:
    """The smallest positive normal number of ``dtype``: added to every strictly signed magnitude
    so that it can never underflow to zero."""
    return torch.finfo(dtype).tiny


def positive(u: torch.Tensor, map: str) -> torch.Tensor:
    """``softplus(u)`` or ``exp(u)``, plus ``tiny``: strictly positive for every finite ``u``."""
    if map == "softplus":  # softplus's backward reads its input, so its output may be reused
        return functional.softplus(u).add_(tiny(u.dtype))
    return torch.exp(u) + tiny(u.dtype)  # exp's backward reads its output: no in-place


def positive_inverse(y: torch.Tensor, map: str) -> torch.Tensor:
    """Inverse of ``positive`` for ``y > tiny``."""
    z = y - tiny(y.dtype)
    if map == "softplus":
        return z + torch.log(-torch.expm1(-z))
    return torch.log(z)


# ---------------------------------------------------------------------------- input checks
def as_pattern(source: Any, name: str) -> Connectivity:
    """The [`Connectivity`][sparselinear.Connectivity] of ``source``: a Connectivity or a layer that
    has one."""
    if isinstance(source, Connectivity):
        return source
    pattern = getattr(source, "connectivity", None)
    if isinstance(pattern, Connectivity):
        return pattern
    raise SparseLinearTypeError(
        f"'{name}' must be a Connectivity or a SparseLinear layer; got {describe(source)}. Pass "
        "`layer.connectivity` or build one with `Connectivity(...)`."
    )


def as_float_tensor(value: Any, name: str) -> torch.Tensor:
    """``value`` (a number, list, numpy array or tensor) as a floating-point tensor."""
    if isinstance(value, torch.Tensor):
        t = value
    else:
        try:
            t = torch.as_tensor(np.asarray(value))
        except (TypeError, ValueError, RuntimeError):
            raise SparseLinearTypeError(
                f"'{name}' must be a number or a tensor of numbers; got {describe(value)}."
            ) from None
    if t.dtype == torch.bool or t.is_complex() or not (t.is_floating_point() or _is_int(t)):
        raise SparseLinearTypeError(
            f"'{name}' must hold real numbers; got {describe(t)}."
        )
    t = t if t.is_floating_point() else t.to(torch.get_default_dtype())
    if bool(torch.isnan(t).any()):
        raise DataError(f"'{name}' must not contain NaN; got {describe(t)}.")
    return t.detach()


def _is_int(t: torch.Tensor) -> bool:
    return not t.is_floating_point() and not t.is_complex() and t.dtype != torch.bool


def as_signs(value: Any, name: str, length: int | None, allow_zero: bool = True) -> torch.Tensor:
    """``value`` as an int8 tensor of -1 / 0 / +1 of length ``length``.

    Booleans mean "must be >= 0" (``True`` -> +1) and "must be <= 0" (``False`` -> -1).
    """
    t = value if isinstance(value, torch.Tensor) else None
    if t is None:
        try:
            t = torch.as_tensor(np.asarray(value))
        except (TypeError, ValueError, RuntimeError):
            raise SparseLinearTypeError(
                f"'{name}' must be a 1-D tensor of +1/-1 (or booleans); got {describe(value)}."
            ) from None
    if t.dtype == torch.bool:
        t = t.to(torch.int8) * 2 - 1
    elif t.is_complex() or not (t.is_floating_point() or _is_int(t)):
        raise SparseLinearTypeError(
            f"'{name}' must be a 1-D tensor of +1/-1 (or booleans); got {describe(t)}."
        )
    t = t.detach()
    if t.dim() != 1 or (length is not None and t.numel() != length):
        want = f"({length},)" if length is not None else "1-D"
        per = "input neuron" if name == "input_signs" else "edge"
        raise ShapeError(
            f"'{name}' must have shape {want}, one sign per {per}; "
            f"got {describe(t)}. Check that it was made for this layer's pattern."
        )
    allowed = (-1, 0, 1) if allow_zero else (-1, 1)
    ok = torch.zeros(t.shape, dtype=torch.bool, device=t.device)
    for a in allowed:
        ok |= t == a
    if not bool(ok.all()):
        bad = torch.nonzero(~ok).flatten()
        listed = listing((f"[{i}] = {t[i].item()}" for i in bad[:MAX_LISTED].tolist()),
                         bad.numel())
        zero = " or 0 (free)" if allow_zero else ""
        raise DataError(
            f"'{name}' must hold only +1 or -1{zero}; got {bad.numel()} other value(s): "
            f"{listed}. Map your labels first, e.g. `torch.where(is_inhibitory, -1, 1)`."
        )
    return t.to(torch.int8)


def check_values(value: Any, nnz: int, what: str) -> torch.Tensor:
    """Check a weight handed to ``right_inverse``: a real floating tensor of shape ``(nnz,)``."""
    if not isinstance(value, torch.Tensor) or not value.is_floating_point():
        raise SparseLinearTypeError(
            f"'weight' must be a floating-point tensor of shape ({nnz},); got {describe(value)}."
        )
    if value.shape != (nnz,):
        raise ShapeError(
            f"'weight' must have shape ({nnz},), one value per edge, to match {what}; got "
            f"{describe(value)}. Check that the constraint was made for this layer's pattern."
        )
    if bool(torch.isnan(value).any()):
        raise DataError(f"'weight' must not contain NaN; got {int(torch.isnan(value).sum())}.")
    return value


# ---------------------------------------------------------------------------- error messages
def describe_edges(
    pattern: Connectivity | None, values: torch.Tensor, where: torch.Tensor, need: list[str]
) -> str:
    """``"edge 5 (output 2, input 7) = -0.31 must be > 0, ..."`` for the first few edges."""
    idx = where[:MAX_LISTED].tolist()
    parts = []
    for j, k in enumerate(idx):
        pos = ""
        if pattern is not None and pattern.nnz == values.numel():
            crow = pattern.crow_indices().to(torch.int64).cpu()
            row = int(torch.searchsorted(crow, torch.tensor(k), right=True)) - 1
            pos = f" (output {row}, input {int(pattern.col_indices()[k])})"
        parts.append(f"edge {k}{pos} = {values[k].item():.6g} must be {need[j]}")
    return listing(parts, where.numel(), sep="; ")


def follow_device(constraint: torch.nn.Module, weight: Any) -> None:
    """Move the constraint's buffers to the weight's device (registration on a CUDA layer)."""
    device = getattr(weight, "device", None)
    buffer = next(constraint.buffers(), None)
    if device is not None and buffer is not None and buffer.device != device:
        constraint.to(device)
