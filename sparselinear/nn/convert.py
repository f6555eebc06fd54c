"""Patterns and values taken from dense ``nn.Linear`` layers, ``torch.nn.utils.prune`` masks and
scipy sparse matrices; [`SparseLinear`][sparselinear.SparseLinear] builds its layers from them
(``from_linear``, ``from_scipy``).

Dense conversions allocate ``out x in`` values: they are meant for layers that exist densely
anyway (a trained ``nn.Linear``) or small ones (inspection, tests).
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import DataError, ShapeError, SparseLinearTypeError, check_choice, describe
from ..pattern.connectivity import Connectivity
from ..pattern.sources import scipy_coordinates

__all__ = ["linear_to_pattern", "scipy_to_pattern"]

ORIENTATIONS = {
    "target_source": False,  # rows are targets (outputs), columns sources (inputs): W itself
    "out_in": False,
    "source_target": True,  # rows are sources (inputs), columns targets (outputs): W transposed
    "in_out": True,
}
EXPLICIT_ZEROS = ("edge", "drop")


def _transposed(orientation: Any) -> bool:
    check_choice(orientation, ORIENTATIONS, "orientation",
                 "Use 'source_target' when adj[i, j] is an edge from i to j (networkx, most "
                 "connectome files), 'target_source' when rows are outputs as in "
                 "nn.Linear.weight.")
    return ORIENTATIONS[orientation]


def scipy_to_pattern(
    adj: Any, *, orientation: str, explicit_zeros: str = "edge"
) -> tuple[Connectivity, np.ndarray]:
    """The pattern of a scipy sparse matrix and its stored values in weight order.

    Args:
        adj: a ``scipy.sparse`` matrix or array of any format.
        orientation: ``"source_target"`` (alias ``"in_out"``): ``adj[i, j]`` is an edge from
            input ``i`` to output ``j``, the usual adjacency convention; ``"target_source"``
            (alias ``"out_in"``): rows are outputs and columns inputs, like ``nn.Linear.weight``.
        explicit_zeros: stored zeros are ``"edge"`` (default: edges with value 0; scipy stores
            them only when asked to) or ``"drop"`` (not edges).

    Returns:
        ``(connectivity, values)`` with ``values`` a float64 array of shape ``(nnz,)``.

    Examples:
        >>> import scipy.sparse
        >>> adj = scipy.sparse.coo_array(([5.0, 0.0], ([0, 1], [2, 0])), shape=(3, 3))
        >>> c, v = scipy_to_pattern(adj, orientation="source_target")
        >>> c.indices().tolist(), v.tolist()
        ([[0, 2], [1, 0]], [0.0, 5.0])
        >>> scipy_to_pattern(adj, orientation="source_target", explicit_zeros="drop")[0].nnz
        1
    """
    check_choice(explicit_zeros, EXPLICIT_ZEROS, "explicit_zeros")
    rows, cols, shape, values = scipy_coordinates(
        adj, transpose=_transposed(orientation), drop_zeros=explicit_zeros == "drop", name="adj"
    )
    return Connectivity.from_indices(torch.stack([rows, cols]), shape), values


def _candidates(linear: nn.Linear, mask: Any) -> torch.Tensor | None:
    """The boolean ``(out, in)`` mask of allowed entries: ``mask``, else the prune mask."""
    shape = tuple(linear.weight.shape)
    pruned = getattr(linear, "weight_mask", None)
    if mask is not None and pruned is not None:
        raise DataError(
            "The nn.Linear carries a torch.nn.utils.prune mask ('weight_mask') and 'mask' was "
            "given too; pass one of them (e.g. `prune.remove(linear, 'weight')` first)."
        )
    if mask is None:
        return None if pruned is None else pruned.detach() != 0
    if isinstance(mask, Connectivity):
        if mask.shape != shape:
            raise ShapeError(f"'mask' has shape {mask.shape}; the layer's weight is {shape}.")
        return mask.to(linear.weight.device).to_dense()
    if isinstance(mask, np.ndarray):
        mask = torch.from_numpy(mask)
    if not isinstance(mask, torch.Tensor):
        raise SparseLinearTypeError(
            f"'mask' must be a tensor or array of shape {shape} or a Connectivity; got "
            f"{describe(mask)}."
        )
    if tuple(mask.shape) != shape:
        raise ShapeError(
            f"'mask' must have the weight's shape {shape} (out_features, in_features); got "
            f"{describe(mask)}. For an (in, out) mask pass `mask.T`."
        )
    return mask.to(linear.weight.device) != 0


def linear_to_pattern(
    linear: nn.Linear,
    mask: Any = None,
    *,
    threshold: float | None = None,
    topk: int | None = None,
) -> tuple[Connectivity, torch.Tensor]:
    """The sparse pattern of ``linear`` and its weight values there (in weight order, on the
    weight's device and dtype): what
    [`SparseLinear.from_linear`][sparselinear.SparseLinear.from_linear] builds its layer from.

    The pattern is the first that applies: the explicit ``mask``; else the
    ``torch.nn.utils.prune`` mask ``linear.weight_mask``; else the nonzero entries of
    ``linear.weight``. ``threshold`` or ``topk`` then keep, among those, the entries with
    ``|w| > threshold`` or the ``topk`` largest ``|w|`` (ties broken by position). The values,
    bias, dtype and device are copied by the layer; on its pattern it gives the same output.

    Args:
        linear: the dense layer (pruned or not).
        mask: ``(out_features, in_features)`` boolean or 0/1 tensor or array, or a
            [`Connectivity`][sparselinear.Connectivity].
        threshold: magnitude threshold, ``>= 0``.
        topk: number of entries kept, ``0 <= topk <=`` number of candidate entries.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> linear = nn.Linear(3, 2)
        >>> with torch.no_grad():
        ...     _ = linear.weight.copy_(torch.tensor([[0.0, 2.0, 0.5], [1.0, 0.0, 0.0]]))
        >>> pattern, values = linear_to_pattern(linear, threshold=0.6)
        >>> pattern.indices().tolist(), values.tolist()
        ([[0, 1], [1, 0]], [2.0, 1.0])
    """
    if not isinstance(linear, nn.Linear):
        raise SparseLinearTypeError(f"'linear' must be an nn.Linear; got {describe(linear)}.")
    if threshold is not None and topk is not None:
        raise DataError("Pass at most one of 'threshold' and 'topk'.")
    weight = linear.weight.detach()
    allowed = _candidates(linear, mask)
    if allowed is None:
        allowed = weight != 0 if threshold is None and topk is None else torch.ones_like(
            weight, dtype=torch.bool
        )
    if threshold is not None:
        if not isinstance(threshold, numbers.Real) or not threshold >= 0:
            raise DataError(f"'threshold' must be a number >= 0; got {threshold!r}.")
        allowed = allowed & (weight.abs() > threshold)
    if topk is not None:
        available = int(allowed.sum())
        if isinstance(topk, bool) or not isinstance(topk, numbers.Integral):
            raise SparseLinearTypeError(f"'topk' must be an int; got {describe(topk)}.")
        if not 0 <= topk <= available:
            raise DataError(f"'topk' must lie in [0, {available}] (candidate entries); got {topk}.")
        score = torch.where(allowed, weight.abs(), torch.full_like(weight, -1.0)).flatten()
        keep = torch.sort(score, descending=True, stable=True).indices[: int(topk)]
        allowed = torch.zeros_like(allowed).flatten().index_fill_(0, keep, True).view_as(weight)
    indices = allowed.nonzero().t()
    pattern = Connectivity.from_indices(indices.cpu(), tuple(weight.shape))
    return pattern, weight[indices[0], indices[1]]
