"""Conversions between :class:`~sparselinear.SparseLinear` and dense ``nn.Linear`` layers,
``torch.nn.utils.prune`` masks and scipy sparse matrices.

Dense conversions allocate ``out x in`` values: they are meant for layers that exist densely
anyway (a trained ``nn.Linear``) or small ones (inspection, tests).
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import scipy.sparse
import torch
from torch import nn

from ._sources import describe
from .connectivity import Connectivity
from .errors import DataError, ShapeError, SparseLinearTypeError
from .linear import SparseLinear

__all__ = ["from_linear", "from_scipy", "scipy_to_pattern", "to_linear"]

ORIENTATIONS = {
    "target_source": False,  # rows are targets (outputs), columns sources (inputs): W itself
    "out_in": False,
    "source_target": True,  # rows are sources (inputs), columns targets (outputs): W transposed
    "in_out": True,
}
EXPLICIT_ZEROS = ("edge", "drop")


def _transposed(orientation: Any) -> bool:
    if orientation not in ORIENTATIONS:
        raise DataError(
            f"'orientation' must be one of {tuple(ORIENTATIONS)}; got {orientation!r}. Use "
            "'source_target' when adj[i, j] is an edge from i to j (networkx, most connectome "
            "files), 'target_source' when rows are outputs as in nn.Linear.weight."
        )
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

    Examples::

        >>> import scipy.sparse
        >>> from sparselinear.convert import scipy_to_pattern
        >>> adj = scipy.sparse.coo_array(([5.0, 0.0], ([0, 1], [2, 0])), shape=(3, 3))
        >>> c, v = scipy_to_pattern(adj, orientation="source_target")
        >>> c.indices().tolist(), v.tolist()
        ([[0, 2], [1, 0]], [0.0, 5.0])
        >>> scipy_to_pattern(adj, orientation="source_target", explicit_zeros="drop")[0].nnz
        1
    """
    if not scipy.sparse.issparse(adj):
        raise SparseLinearTypeError(
            f"'adj' must be a scipy.sparse matrix or array; got {describe(adj)}. For a dense "
            "matrix pass `scipy.sparse.coo_array(matrix)`."
        )
    if explicit_zeros not in EXPLICIT_ZEROS:
        raise DataError(
            f"'explicit_zeros' must be one of {EXPLICIT_ZEROS}; got {explicit_zeros!r}."
        )
    coo = scipy.sparse.coo_array(adj)
    if not (np.issubdtype(coo.dtype, np.number) or coo.dtype == np.bool_) or np.iscomplexobj(
        coo.data
    ):
        raise SparseLinearTypeError(f"'adj' must hold real numbers; got {describe(adj)}.")
    values = np.asarray(coo.data, dtype=np.float64)
    rows, cols = np.asarray(coo.row, np.int64), np.asarray(coo.col, np.int64)
    shape = coo.shape
    if _transposed(orientation):
        rows, cols, shape = cols, rows, (shape[1], shape[0])
    if explicit_zeros == "drop":
        keep = values != 0
        rows, cols, values = rows[keep], cols[keep], values[keep]
    order = np.argsort(rows * shape[1] + cols, kind="stable")
    indices = torch.from_numpy(np.stack([rows[order], cols[order]]))
    return Connectivity.from_indices(indices, shape), values[order]


def from_scipy(
    adj: Any,
    *,
    orientation: str,
    use_values: bool = False,
    explicit_zeros: str = "edge",
    bias: bool = True,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> SparseLinear:
    """A :class:`SparseLinear` on the pattern of ``adj``; see :meth:`SparseLinear.from_scipy`."""
    conn, values = scipy_to_pattern(adj, orientation=orientation, explicit_zeros=explicit_zeros)
    n_out, n_in = conn.shape
    layer = SparseLinear(n_in, n_out, conn, bias, device=device, dtype=dtype)
    if use_values:
        if not np.isfinite(values).all():
            raise DataError("'adj' holds NaN or infinite values; they cannot be initial weights.")
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(values))
    return layer


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


def from_linear(
    linear: nn.Linear,
    mask: Any = None,
    *,
    threshold: float | None = None,
    topk: int | None = None,
) -> SparseLinear:
    """A :class:`SparseLinear` computing what ``linear`` computes, on a sparse pattern.

    The pattern is the first that applies: the explicit ``mask``; else the
    ``torch.nn.utils.prune`` mask ``linear.weight_mask``; else the nonzero entries of
    ``linear.weight``. ``threshold`` or ``topk`` then keep, among those, the entries with
    ``|w| > threshold`` or the ``topk`` largest ``|w|`` (ties broken by position). The values,
    bias, dtype and device are copied; on its pattern the new layer gives the same output.

    Args:
        linear: the dense layer (pruned or not).
        mask: ``(out_features, in_features)`` boolean or 0/1 tensor or array, or a
            :class:`Connectivity`.
        threshold: magnitude threshold, ``>= 0``.
        topk: number of entries kept, ``0 <= topk <=`` number of candidate entries.

    Examples::

        >>> import torch
        >>> from torch import nn
        >>> from torch.nn.utils import prune
        >>> from sparselinear import SparseLinear
        >>> linear = nn.Linear(64, 32)
        >>> _ = prune.l1_unstructured(linear, "weight", amount=0.9)
        >>> sparse = SparseLinear.from_linear(linear)
        >>> sparse.nnz
        205
        >>> x = torch.randn(8, 64)
        >>> torch.allclose(sparse(x), linear(x), atol=1e-6)
        True
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
    n_out, n_in = weight.shape
    layer = SparseLinear(
        n_in, n_out, Connectivity.from_indices(indices.cpu(), (n_out, n_in)),
        bias=linear.bias is not None, device=weight.device, dtype=weight.dtype,
    )
    with torch.no_grad():
        layer.weight.copy_(weight[indices[0], indices[1]])
        if linear.bias is not None:
            layer.bias.copy_(linear.bias.detach())
    return layer


def to_linear(layer: SparseLinear, *, keep_mask: bool = False) -> nn.Linear:
    """A dense ``nn.Linear`` with the same weights (zeros off the pattern), bias, dtype, device.

    With ``keep_mask=True`` the pattern is attached as a ``torch.nn.utils.prune`` mask, so
    training the dense layer keeps zeros off the pattern and :func:`from_linear` recovers the
    exact pattern (zero-valued edges included). Allocates ``out x in`` values.

    Examples::

        >>> import torch
        >>> from sparselinear import Connectivity, SparseLinear
        >>> layer = SparseLinear(4, 3, Connectivity.tril(3, 4))
        >>> dense = layer.to_linear()
        >>> x = torch.randn(2, 4)
        >>> torch.allclose(dense(x), layer(x))
        True
    """
    if not isinstance(layer, SparseLinear):
        raise SparseLinearTypeError(f"'layer' must be a SparseLinear; got {describe(layer)}.")
    weight = layer.weight
    linear = nn.Linear(
        layer.in_features, layer.out_features, bias=layer.bias is not None,
        device=weight.device, dtype=weight.dtype,
    )
    with torch.no_grad():
        linear.weight.copy_(layer.to_dense())
        if layer.bias is not None:
            linear.bias.copy_(layer.bias)
    if keep_mask:
        from torch.nn.utils import prune

        prune.custom_from_mask(linear, "weight", layer.connectivity.to_dense())
    return linear
