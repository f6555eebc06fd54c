"""The per-edge data of a connectome model and the maps that keep its parameters positive.

Helpers of [`ConnectomeRNN`][sparselinear.ConnectomeRNN]:

* ``EdgeWeights`` — the parametrization ``w_e = s_e · c_e · θ_{g(e)}`` that turns a few
  shared synaptic strengths into one weight per edge (nnz-sized; its backward is a segment sum);
* ``Positive`` — ``softplus(u) + tiny``, the map that keeps strengths and time constants
  positive through training;
* the checks that turn user-given signs, synapse counts, groups and neuron selections into
  tensors aligned with the pattern, with messages that say what was expected.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ..constraints import Dale, Sign
from ..constraints.base import as_float_tensor, as_signs, positive, positive_inverse, tiny
from ..errors import (
    MAX_LISTED,
    DataError,
    ShapeError,
    SparseLinearTypeError,
    WiringMismatchError,
    describe,
    listing,
)
from ..pattern.connectivity import Connectivity

__all__ = [
    "EdgeWeights",
    "Positive",
    "as_positive",
    "edge_groups",
    "edge_scale",
    "neuron_index",
]


class Positive(nn.Module):
    """Parametrization ``value = softplus(u) + tiny``: strictly positive for every finite ``u``.

    Examples:
        >>> import torch
        >>> p = Positive()
        >>> u = p.right_inverse(torch.tensor([0.5, 2.0]))
        >>> torch.allclose(p(u), torch.tensor([0.5, 2.0]))
        True
    """

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return positive(u, "softplus")

    def right_inverse(self, value: torch.Tensor) -> torch.Tensor:
        if bool((value <= tiny(value.dtype)).any()) or not bool(torch.isfinite(value).all()):
            raise DataError(
                f"A positive parameter must be set to finite values > 0; got {describe(value)} "
                f"with minimum {value.min().item():.6g}."
            )
        return positive_inverse(value.detach(), "softplus")


class EdgeWeights(nn.Module):
    r"""Parametrization of a layer's edge weights by shared positive strengths:
    ``w_e = scale_e · θ_{group_e}``, ``θ = softplus(u) + tiny``.

    The free parameter ``u`` has one entry per group (or per edge when ``groups`` is ``None``).
    ``scale_e`` is the fixed product of the edge's sign and synapse count. The gather
    ``θ[group]`` is nnz-sized and its backward is an ``index_add`` into the groups: the
    gradient of a shared strength is the segment sum of its edges' weight gradients.

    Args:
        scale: fixed factor per edge, shape ``(nnz,)``.
        groups: group of each edge, int64 ``(nnz,)``, or ``None`` (one strength per edge).
        n_strengths: the number of strengths.

    Assigning to the parametrized tensor (``layer.weight = theta``) sets the *strengths* θ,
    shape ``(n_strengths,)``.
    """

    edge_scale: torch.Tensor
    edge_group: torch.Tensor | None

    def __init__(self, scale: torch.Tensor, groups: torch.Tensor | None, n_strengths: int) -> None:
        super().__init__()
        self.register_buffer("edge_scale", scale)
        self.register_buffer("edge_group", groups)
        self.n_strengths = int(n_strengths)

    def strengths(self, u: torch.Tensor) -> torch.Tensor:
        """The strengths θ of the free parameter ``u``."""
        return positive(u, "softplus")

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        theta = self.strengths(u)
        if self.edge_group is not None:
            theta = theta.index_select(0, self.edge_group)
        return theta * self.edge_scale.to(theta.dtype)

    def right_inverse(self, theta: torch.Tensor) -> torch.Tensor:
        if theta.dim() != 1 or theta.numel() != self.n_strengths:
            raise ShapeError(
                f"The synaptic strengths have shape ({self.n_strengths},), one per "
                f"{'group' if self.edge_group is not None else 'edge'}; got {describe(theta)}. "
                "Assigning to the edge weights sets the strengths, not the per-edge weights."
            )
        return Positive().right_inverse(theta)

    def extra_repr(self) -> str:
        grouped = self.edge_group is not None
        return f"nnz={self.edge_scale.numel()}, strengths={self.n_strengths}, grouped={grouped}"


# ---------------------------------------------------------------------------- checks
def as_positive(value: Any, name: str, length: int, per: str) -> torch.Tensor:
    """``value`` (a number or ``length`` numbers) as a float tensor of shape ``(length,)``,
    every entry finite and ``> 0``."""
    t = as_float_tensor(value, name)
    if t.dim() == 0:
        t = t.expand(length).clone()
    if t.shape != (length,):
        raise ShapeError(f"'{name}' must be a number or have shape ({length},), one per {per}; "
                         f"got {describe(t)}.")
    if not bool((torch.isfinite(t) & (t > 0)).all()):
        raise DataError(f"'{name}' must be finite and > 0; got minimum {t.min().item():.6g}.")
    return t


def edge_scale(pattern: Connectivity, syn_count: Any, signs: Any) -> torch.Tensor:
    """The fixed factor ``s_e · c_e`` of each edge, float ``(nnz,)`` on the pattern's device.

    ``signs`` is ``None`` (all excitatory), one ``+1``/``-1`` per presynaptic neuron (length
    ``n``) or per edge (length ``nnz``; for ``n == nnz`` pass a
    [`Sign`][sparselinear.constraints.Sign]), or a [`Dale`][sparselinear.constraints.Dale] /
    [`Sign`][sparselinear.constraints.Sign] made for the pattern.
    """
    nnz, device = pattern.nnz, pattern.device
    if syn_count is None:
        count = torch.ones(nnz, device=device)
    else:
        count = as_float_tensor(syn_count, "syn_count")
        if count.shape != (nnz,):
            raise ShapeError(
                f"'syn_count' must have shape ({nnz},), one synapse count per edge in the order "
                f"of `connectivity.indices()`; got {describe(count)}."
            )
        bad = ~torch.isfinite(count) | (count < 0)
        if bool(bad.any()):
            where = torch.nonzero(bad).flatten()
            listed = listing((f"[{i}] = {count[i].item():.6g}"
                              for i in where[:MAX_LISTED].tolist()), where.numel())
            raise DataError(f"'syn_count' must be finite and >= 0; got {listed}.")
        count = count.to(device)
    return count * _edge_signs(pattern, signs).to(count.dtype)


def _edge_signs(pattern: Connectivity, signs: Any) -> torch.Tensor:
    nnz, n = pattern.nnz, pattern.in_features
    col = pattern.col_indices().to(torch.int64)
    if signs is None:
        return torch.ones(nnz, dtype=torch.int8, device=col.device)
    if isinstance(signs, (Sign, Dale)):
        theirs = getattr(signs, "pattern", None)
        if isinstance(theirs, Connectivity) and theirs != pattern:
            raise WiringMismatchError(
                f"The {type(signs).__name__} constraint was built for {theirs}, not for this "
                f"model's pattern {pattern}. Build it from the model's connectivity."
            )
        codes = signs.signs
        if codes.numel() != nnz or not bool(((codes == 1) | (codes == -1)).all()):
            raise DataError(
                f"'signs' from a {type(signs).__name__} constraint must give every one of the "
                f"{nnz} edges a sign +1 or -1; it has {codes.numel()} edges, "
                f"{int(((codes != 1) & (codes != -1)).sum())} of them free or fixed. A connectome "
                "model needs a sign on every edge."
            )
        return codes.to(col.device)
    t = as_signs(signs, "signs", None, allow_zero=False)
    if t.numel() == n:
        return t.to(col.device)[col]
    if t.numel() == nnz:
        return t.to(col.device)
    raise ShapeError(
        f"'signs' must have shape ({n},), one sign per presynaptic neuron, or ({nnz},), one per "
        f"edge; got {describe(t)}."
    )


def edge_groups(pattern: Connectivity, groups: Any,
                n_groups: int | None) -> tuple[torch.Tensor | None, int]:
    """``(group of each edge as int64 (nnz,), number of groups)``; ``(None, nnz)`` without
    groups (every edge its own strength)."""
    nnz = pattern.nnz
    if groups is None:
        if n_groups is not None:
            raise DataError("'n_groups' needs 'groups', the group index of each edge.")
        return None, nnz
    t = groups if isinstance(groups, torch.Tensor) else torch.as_tensor(np.asarray(groups))
    if t.dtype == torch.bool or t.is_floating_point() or t.is_complex():
        raise SparseLinearTypeError(
            f"'groups' must be an integer tensor (the group index of each edge); got "
            f"{describe(t)}. Convert labels first, e.g. with `torch.unique(..., "
            "return_inverse=True)`."
        )
    if t.shape != (nnz,):
        raise ShapeError(
            f"'groups' must have shape ({nnz},), one group index per edge in the order of "
            f"`connectivity.indices()`; got {describe(t)}."
        )
    t = t.to(torch.int64)
    top = int(t.max()) + 1 if nnz else 0
    if n_groups is None:
        n_groups = top
    if isinstance(n_groups, bool) or not isinstance(n_groups, int) or n_groups < 0:
        raise DataError(f"'n_groups' must be a non-negative int; got {n_groups!r}.")
    bad = (t < 0) | (t >= n_groups)
    if bool(bad.any()):
        where = torch.nonzero(bad).flatten()
        listed = listing((f"[{i}] = {int(t[i])}" for i in where[:MAX_LISTED].tolist()),
                         where.numel())
        raise DataError(
            f"'groups' must lie in [0, {n_groups}) (n_groups = {n_groups}); got {listed}."
        )
    return t.to(pattern.device), n_groups


def neuron_index(pattern: Connectivity, neurons: Any, name: str) -> torch.Tensor | None:
    """Indices of ``neurons`` (names or integer indices) as int64 ``(k,)``; ``None`` for all."""
    if neurons is None:
        return None
    n = pattern.out_features
    if isinstance(neurons, str):
        neurons = [neurons]
    if not isinstance(neurons, torch.Tensor):
        items = list(neurons)
        if items and all(isinstance(v, str) for v in items):
            if pattern.out_names is None:
                raise DataError(
                    f"'{name}' names neurons, but the connectivity has no names. Build it with "
                    "`Connectivity.from_edgelist(...)` or `.with_names(...)`, or pass indices."
                )
            try:
                return pattern.out_index(items).to(pattern.device)
            except DataError as exc:
                raise DataError(f"'{name}': {exc}") from None
        neurons = torch.as_tensor(np.asarray(items, dtype=np.int64 if not items else None))
    t = neurons
    if t.dtype == torch.bool or t.is_floating_point() or t.is_complex() or t.dim() != 1:
        raise SparseLinearTypeError(
            f"'{name}' must be neuron names or a 1-D sequence of integer indices; got "
            f"{describe(t)}."
        )
    t = t.to(torch.int64)
    bad = (t < 0) | (t >= n)
    if bool(bad.any()):
        shown = listing(t[bad][:MAX_LISTED].tolist(), int(bad.sum()))
        raise DataError(f"'{name}' must hold indices in [0, {n}); got {shown}.")
    return t.to(pattern.device)
