"""Attaching a constraint to a layer: [`constrain`][sparselinear.constraints.constrain]."""

from __future__ import annotations

from torch import nn
from torch.nn.utils import parametrize

from ..errors import (
    DataError,
    ShapeError,
    SparseLinearTypeError,
    WiringMismatchError,
    describe,
)
from ..pattern.connectivity import Connectivity

__all__ = ["constrain"]


def constrain(layer: nn.Module, constraint: nn.Module, name: str = "weight") -> nn.Module:
    r"""Attach ``constraint`` to ``layer.<name>`` as a parametrization and return ``layer``.

    Equivalent to ``parametrize.register_parametrization(layer, name, constraint)`` after checks
    that name what is wrong: the constraint's size against the layer's number of edges, its
    pattern against the layer's (for [`Dale`][sparselinear.constraints.Dale] and
    [`Diagonal`][sparselinear.constraints.Diagonal]), and a layer that is already constrained. The
    constraint's buffers are moved to the weight's device. The layer's current weight is moved into
    the allowed set (magnitudes kept, see ``project``), so a freshly initialised layer keeps its
    fan-in scaling.

    Args:
        layer: a [`SparseLinear`][sparselinear.SparseLinear] (or any module with a 1-D ``name``
            parameter).
        constraint: a [`Sign`][sparselinear.constraints.Sign],
            [`Dale`][sparselinear.constraints.Dale], [`Diagonal`][sparselinear.constraints.Diagonal]
            or [`Bounded`][sparselinear.constraints.Bounded], or any parametrization module.
        name: the parameter to constrain. Default: ``"weight"``.

    Examples:
        >>> import torch
        >>> from sparselinear import Connectivity, SparseLinear
        >>> from sparselinear.constraints import Sign, constrain
        >>> layer = constrain(SparseLinear(6, 4, Connectivity.random(4, 6, nnz=10, seed=1)),
        ...                   Sign(torch.ones(10, dtype=torch.bool)))
        >>> bool((layer.weight > 0).all())
        True
        >>> layer.parametrizations.weight.original.shape  # the free parameter the optimizer sees
        torch.Size([10])
    """
    if not isinstance(layer, nn.Module):
        raise SparseLinearTypeError(f"'layer' must be an nn.Module; got {describe(layer)}.")
    if not isinstance(constraint, nn.Module):
        raise SparseLinearTypeError(
            f"'constraint' must be an nn.Module with forward / right_inverse (e.g. Sign(...)); "
            f"got {describe(constraint)}."
        )
    if parametrize.is_parametrized(layer, name):
        raise DataError(
            f"'{name}' of {type(layer).__name__} already has a constraint: "
            f"{list(layer.parametrizations[name])}. The maps do not compose; remove it first "
            f"with `parametrize.remove_parametrizations(layer, {name!r})`, or build one "
            "constraint that says everything (e.g. Sign with a per-edge vector)."
        )
    weight = getattr(layer, name, None)
    if not isinstance(weight, nn.Parameter) or weight.dim() != 1:
        raise SparseLinearTypeError(
            f"'layer.{name}' must be a 1-D nn.Parameter with one value per edge; got "
            f"{describe(weight)}."
        )
    nnz = getattr(constraint, "nnz", None)
    if nnz is not None and nnz != weight.numel():
        raise ShapeError(
            f"The constraint was made for {nnz} edges but 'layer.{name}' has {weight.numel()} "
            "(one value per edge). Build the sign / bound vector in the order of "
            "`layer.connectivity.indices()`."
        )
    mine, theirs = getattr(layer, "connectivity", None), getattr(constraint, "pattern", None)
    if isinstance(mine, Connectivity) and isinstance(theirs, Connectivity) and mine != theirs:
        raise WiringMismatchError(
            f"The {type(constraint).__name__} constraint was built for the pattern {theirs} "
            f"(digest {theirs.digest[:12]}), but the layer has {mine} (digest "
            f"{mine.digest[:12]}). Build it from `layer.connectivity`."
        )
    constraint.to(weight.device)
    parametrize.register_parametrization(layer, name, constraint)
    return layer
