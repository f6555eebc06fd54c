"""Sign constraints on the edges of a sparse layer: per-edge signs, Dale's law, the diagonal.

Part of [`sparselinear.constraints`][sparselinear.constraints], which re-exports
[`Sign`][sparselinear.constraints.Sign], [`Dale`][sparselinear.constraints.Dale] and
[`Diagonal`][sparselinear.constraints.Diagonal]: each edge is free, strictly positive, strictly
negative or fixed, and the signed ones are a smooth positive map of the free parameter times the
sign.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import MAX_LISTED, DataError, PatternError, ShapeError, check_choice, describe
from ..io.neurons import neurotransmitter_signs
from ..pattern.connectivity import Connectivity
from . import base
from .base import follow_device, positive, positive_inverse, tiny

__all__ = ["Dale", "Diagonal", "Sign"]

_FIXED = 2  # code of an edge whose value is fixed (see Diagonal)


class _SignedEdges(nn.Module):
    """Base of the sign constraints: each edge is free (code 0), ``> 0`` (+1), ``< 0`` (-1) or
    fixed to a value (code 2).

    ``weight = u`` on free edges and ``sign * (map(u) + tiny)`` on signed ones, where ``tiny`` is
    the smallest normal number of the dtype, so a signed value can never underflow to zero.
    """

    signs: torch.Tensor
    fixed_index: torch.Tensor
    fixed_value: torch.Tensor

    def __init__(
        self,
        codes: torch.Tensor,
        map: str,
        pattern: Connectivity | None = None,
        fixed_index: torch.Tensor | None = None,
        fixed_value: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.map = base.check_map(map)
        self.register_buffer("signs", codes.to(torch.int8))
        if fixed_index is None:
            fixed_index = torch.zeros(0, dtype=torch.int64, device=codes.device)
            fixed_value = torch.zeros(0, device=codes.device)
        self.register_buffer("fixed_index", fixed_index)
        self.register_buffer("fixed_value", fixed_value)
        self.pattern = pattern
        self._has_free = bool((codes == 0).any())

    @property
    def nnz(self) -> int:
        """The number of edges this constraint was made for."""
        return self.signs.numel()

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._has_free = bool((self.signs == 0).any())  # the loaded signs may differ

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        if self._has_free:
            free = self.signs == 0
            signed = positive(u.masked_fill(free, 0), self.map).mul_(self.signs.to(u.dtype))
            w = torch.where(free, u, signed)
        else:  # the fresh magnitude is scaled in place: one nnz-sized temporary fewer
            w = positive(u, self.map).mul_(self.signs.to(u.dtype))
        if self.fixed_index.numel():
            w = w.index_put((self.fixed_index,), self.fixed_value.to(u.dtype))
        return w

    @torch.no_grad()
    def project(self, weight: torch.Tensor) -> torch.Tensor:
        """Feasible values close to ``weight``: each signed edge keeps its magnitude and takes its
        sign (a zero becomes ``map(0)``), fixed edges take their value, free edges are unchanged."""
        base.check_values(weight, self.nnz, self._what())
        mag = weight.abs()
        mag = torch.where(mag > tiny(weight.dtype), mag, positive(torch.zeros_like(mag), self.map))
        w = torch.where(self.signs == 0, weight, self.signs.to(weight.dtype) * mag)
        if self.fixed_index.numel():
            w[self.fixed_index] = self.fixed_value.to(weight.dtype)
        return w

    def right_inverse(self, weight: torch.Tensor) -> torch.Tensor:
        """The free parameter whose image is ``weight``; raises
        [`DataError`][sparselinear.errors.DataError] for values that violate the constraint. When
        the parametrization is registered, PyTorch passes the layer's own weight
        ``torch.nn.Parameter``: that initial weight is first moved into the allowed set with
        ``project``."""
        follow_device(self, weight)
        if isinstance(weight, nn.Parameter):
            weight = self.project(weight)
        base.check_values(weight, self.nnz, self._what())
        self._check_feasible(weight)
        free = self.signs == 0
        mag = torch.where(free, torch.ones_like(weight), weight.abs())
        u = torch.where(free, weight, positive_inverse(mag, self.map))
        if self.fixed_index.numel():
            u = u.index_fill(0, self.fixed_index, 0.0)
        return u

    def _check_feasible(self, weight: torch.Tensor) -> None:
        t = tiny(weight.dtype)
        bad = ((self.signs == 1) & ~(weight > t)) | ((self.signs == -1) & ~(weight < -t))
        if self.fixed_index.numel():
            expected = self.fixed_value.to(weight.dtype)
            off = ~torch.isclose(weight[self.fixed_index], expected, rtol=1e-5, atol=1e-7)
            bad = bad.index_fill(0, self.fixed_index[off], True)
        if not bool(bad.any()):
            return
        where = torch.nonzero(bad).flatten()
        need = []
        for k in where[: MAX_LISTED].tolist():
            code = int(self.signs[k])
            if code == _FIXED:
                pos = int(torch.nonzero(self.fixed_index == k)[0, 0])
                need.append(f"{self.fixed_value[pos].item():.6g} (fixed)")
            else:
                need.append("> 0" if code == 1 else "< 0")
        listed = base.describe_edges(self.pattern, weight, where, need)
        raise DataError(
            f"'weight' violates the {type(self).__name__} constraint on {where.numel()} edge(s): "
            f"{listed}. A smooth map cannot reach these values (a signed edge cannot be zero). "
            "Fix the data (e.g. flip or drop those edges), or change the constraint (sign 0 "
            "leaves an edge free)."
        )

    def _what(self) -> str:
        return f"the {self.nnz} edges of this {type(self).__name__} constraint"

    def extra_repr(self) -> str:
        counts = {name: int((self.signs == code).sum()) for name, code in
                  (("positive", 1), ("negative", -1), ("free", 0), ("fixed", _FIXED))}
        parts = [f"nnz={self.nnz}"] + [f"{k}={v}" for k, v in counts.items() if v]
        return ", ".join([*parts, f"map={self.map!r}"])


class Sign(_SignedEdges):
    r"""Give each edge a fixed sign: ``weight = sign * (softplus(u) + tiny)``.

    Args:
        signs: one entry per edge, in the order of the weight (``connectivity.indices()``):
            ``+1`` (the weight stays ``> 0``), ``-1`` (stays ``< 0``) or ``0`` (free). A boolean
            vector means "must be positive" (``True``) / "must be negative" (``False``).
        map: ``"softplus"`` (default) or ``"exp"``, the positive map applied to the free
            parameter. ``tiny`` is the smallest normal number of the dtype, so a signed weight
            never underflows to zero.

    Shape:
        - Free parameter and weight: ``(nnz,)``.

    Examples:
        >>> import torch
        >>> from sparselinear import Connectivity, SparseLinear
        >>> from sparselinear.constraints import Sign, constrain
        >>> layer = SparseLinear(4, 3, Connectivity(torch.tensor([[0, 1, 2], [0, 3, 1]])))
        >>> layer = constrain(layer, Sign(torch.tensor([1, -1, 0])))
        >>> bool(layer.weight[0] > 0) and bool(layer.weight[1] < 0)
        True
    """

    def __init__(self, signs: Any, *, map: str = "softplus") -> None:
        super().__init__(base.as_signs(signs, "signs", None), map)


class Dale(_SignedEdges):
    r"""Dale's law: every outgoing edge of an input neuron has that neuron's sign.

    Args:
        connectivity: the layer's pattern (a [`Connectivity`][sparselinear.Connectivity] or the
            layer itself).
        input_signs: one entry per input neuron (column): ``+1`` excitatory, ``-1`` inhibitory,
            ``0`` mixed (its edges take ``edge_signs``, or stay free); booleans mean
            ``True`` = excitatory.
        edge_signs: optional, one entry per edge (``+1``, ``-1`` or ``0`` = free) for the edges
            of mixed neurons, for the cell types whose synapses have mixed signs. Where an input
            has a sign of its own, a non-zero edge sign must agree with it.
        map: ``"softplus"`` (default) or ``"exp"``.

    Examples:
        >>> import torch
        >>> from sparselinear import Connectivity, SparseLinear
        >>> from sparselinear.constraints import Dale, constrain
        >>> c = Connectivity.random(5, 4, density=0.5, seed=0)
        >>> layer = constrain(SparseLinear(4, 5, c), Dale(c, torch.tensor([1, -1, 1, 0])))
        >>> w, col = layer.weight, c.col_indices()
        >>> bool((w[col == 1] < 0).all() and (w[col == 0] > 0).all())
        True
    """

    def __init__(
        self,
        connectivity: Any,
        input_signs: Any,
        edge_signs: Any = None,
        *,
        map: str = "softplus",
    ) -> None:
        pattern = base.as_pattern(connectivity, "connectivity")
        per_input = base.as_signs(input_signs, "input_signs", pattern.in_features)
        col = pattern.col_indices().to(torch.int64)
        codes = per_input.to(col.device)[col]
        if edge_signs is not None:
            per_edge = base.as_signs(edge_signs, "edge_signs", pattern.nnz).to(col.device)
            mixed = codes == 0
            conflict = ~mixed & (per_edge != 0) & (per_edge != codes)
            if bool(conflict.any()):
                where = torch.nonzero(conflict).flatten()
                need = [f"{int(codes[k]):+d} (input {int(col[k])})" for k in where[:5].tolist()]
                listed = base.describe_edges(pattern, per_edge.to(torch.float32), where, need)
                raise DataError(
                    f"'edge_signs' contradicts 'input_signs' on {where.numel()} edge(s): "
                    f"{listed}. Give those inputs sign 0 (mixed) in 'input_signs', or fix "
                    "'edge_signs'."
                )
            codes = torch.where(mixed, per_edge, codes)
        super().__init__(codes, map, pattern)

    @classmethod
    def from_attribute(
        cls,
        connectivity: Any,
        column: str = "nt_type",
        signs: Mapping[str, int] | None = None,
        *,
        unknown: int | None = None,
        edge_signs: Any = None,
        map: str = "softplus",
    ) -> Dale:
        """Dale's law with each input neuron's sign read from a per-node attribute of the
        pattern ([`Connectivity.in_attributes`][sparselinear.Connectivity.in_attributes]), such
        as the neurotransmitter column of the neuron table passed as ``nodes=``.

        Args:
            connectivity: the layer's pattern (or the layer), with input attributes.
            column: the attribute holding each input's neurotransmitter (or its sign).
            signs: entries that override or extend the table
                [`NT_SIGNS`][sparselinear.io.NT_SIGNS] (acetylcholine ``+1``, GABA and glutamate
                ``-1``, modulatory transmitters ``0``), e.g. ``{"da": 1}``.
            unknown: the sign of a name in neither table (``None``: such a name raises).
            edge_signs: as for [`Dale`][sparselinear.constraints.Dale].
            map: as for [`Dale`][sparselinear.constraints.Dale].

        A numeric column is read as the signs themselves (``+1``, ``-1``, ``0``).

        Examples:
            >>> import torch
            >>> from sparselinear import Connectivity, SparseLinear
            >>> from sparselinear.constraints import Dale, constrain
            >>> c = Connectivity.random(4, 3, density=0.6, seed=0).with_attributes(
            ...     in_attributes={"nt_type": ["ACH", "GABA", "DA"]})
            >>> dale = Dale.from_attribute(c, "nt_type", {"da": 1})  # dopamine excites here
            >>> w, col = constrain(SparseLinear(3, 4, c), dale).weight, c.col_indices()
            >>> bool((w[col == 1] < 0).all() and (w[col != 1] > 0).all())
            True
        """
        pattern = base.as_pattern(connectivity, "connectivity")
        attributes = pattern.in_attributes
        if attributes is None or column not in attributes:
            have = "no per-node attributes" if attributes is None else (
                f"the attributes {sorted(attributes)}")
            raise DataError(
                f"Dale.from_attribute reads the inputs' attribute {column!r}, but the pattern "
                f"has {have}. Read the edges with a neuron table as nodes= (e.g. "
                "`nodes=read_neurons('neurons.csv', id='root_id')`), or attach one with "
                "`connectivity.with_attributes(in_attributes={...})`."
            )
        values = attributes[column]
        if values.dtype.kind in "iufb":
            input_signs = torch.as_tensor(values.astype(np.int64))
        else:
            input_signs = neurotransmitter_signs(values, signs, unknown=unknown)
        return cls(pattern, input_signs, edge_signs, map=map)


class Diagonal(_SignedEdges):
    r"""Constrain the diagonal edges (output index == input index); other edges stay free.

    Args:
        connectivity: the layer's pattern (a [`Connectivity`][sparselinear.Connectivity] or the
            layer itself); it must contain at least one diagonal edge.
        mode: ``"negative"`` (default; ``-(map(u) + tiny)``, strictly negative, e.g. the classic
            negative self-connection), ``"positive"``, or ``"fixed"`` (the diagonal is held at
            ``value`` and does not train).
        value: for ``mode="fixed"`` only: a number, or one value per diagonal edge in order of
            the index. Default: ``0.0``.
        map: ``"softplus"`` (default) or ``"exp"`` (``-exp(u)``, the log-magnitude form).

    Examples:
        >>> import torch
        >>> from sparselinear import Connectivity, SparseLinear
        >>> from sparselinear.constraints import Diagonal, constrain
        >>> layer = SparseLinear(3, 3, Connectivity(torch.ones(3, 3, dtype=torch.bool)))
        >>> layer = constrain(layer, Diagonal(layer, "negative", map="exp"))
        >>> bool((layer.to_dense().diagonal() < 0).all())
        True
    """

    MODES = ("negative", "positive", "fixed")

    def __init__(
        self,
        connectivity: Any,
        mode: str = "negative",
        *,
        value: Any = None,
        map: str = "softplus",
    ) -> None:
        pattern = base.as_pattern(connectivity, "connectivity")
        check_choice(mode, self.MODES, "mode")
        if value is not None and mode != "fixed":
            raise DataError(f"'value' applies to mode='fixed' only; got mode={mode!r}.")
        diag = pattern.row_indices() == pattern.col_indices()
        index = torch.nonzero(diag).flatten()
        if index.numel() == 0:
            raise PatternError(
                f"The pattern {pattern} has no diagonal edge (output i, input i), so a Diagonal "
                "constraint has nothing to act on. Add the diagonal to the pattern (e.g. "
                "`mask | torch.eye(n, dtype=torch.bool)`) or use another constraint."
            )
        codes = torch.zeros(pattern.nnz, dtype=torch.int8, device=index.device)
        fixed_index = fixed_value = None
        if mode == "fixed":
            codes[index] = _FIXED
            fixed_value = base.as_float_tensor(0.0 if value is None else value, "value")
            if fixed_value.dim() == 0:
                fixed_value = fixed_value.expand(index.numel()).clone()
            if fixed_value.shape != (index.numel(),):
                raise ShapeError(
                    f"'value' must be a number or have shape ({index.numel()},), one per diagonal "
                    f"edge of the pattern; got {describe(fixed_value)}."
                )
            fixed_index, fixed_value = index, fixed_value.to(index.device)
        else:
            codes[index] = 1 if mode == "positive" else -1
        super().__init__(codes, map, pattern, fixed_index, fixed_value)
        self.mode = mode

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, " + super().extra_repr()
