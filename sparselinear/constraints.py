"""Constraints on the values of a sparse layer's weight, as parametrizations.

Each constraint is a small module with ``forward(u) -> weight`` and ``right_inverse(weight) -> u``,
as :mod:`torch.nn.utils.parametrize` expects. It maps an unconstrained free parameter ``u`` (one
value per edge, what the optimizer updates) onto the allowed set with a smooth map: softplus or
exp for signs, a sigmoid for bounds. Nothing is clamped, so the constraint holds exactly after
every optimizer step, whatever the learning rate, and gradients never vanish at a boundary.

Attach one with :func:`constrain` (or ``parametrize.register_parametrization(layer, "weight",
constraint)``); ``layer.weight`` then returns the constrained values and the free parameter is
``layer.parametrizations.weight.original``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from . import _maps
from ._maps import positive, positive_inverse, tiny
from ._sources import describe
from .connectivity import Connectivity
from .errors import DataError, PatternError, ShapeError, SparseLinearTypeError, WiringMismatchError

__all__ = ["Bounded", "Dale", "Diagonal", "Sign", "constrain"]

_FIXED = 2  # code of an edge whose value is fixed (see Diagonal)


def _follow(constraint: nn.Module, weight: Any) -> None:
    """Move the constraint's buffers to the weight's device (registration on a CUDA layer)."""
    device = getattr(weight, "device", None)
    buffer = next(constraint.buffers(), None)
    if device is not None and buffer is not None and buffer.device != device:
        constraint.to(device)


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
        self.map = _maps.check_map(map)
        self.register_buffer("signs", codes.to(torch.int8))
        if fixed_index is None:
            fixed_index = torch.zeros(0, dtype=torch.int64, device=codes.device)
            fixed_value = torch.zeros(0, device=codes.device)
        self.register_buffer("fixed_index", fixed_index)
        self.register_buffer("fixed_value", fixed_value)
        self._pattern = pattern
        self._has_free = bool((codes == 0).any())

    @property
    def nnz(self) -> int:
        """The number of edges this constraint was made for."""
        return self.signs.numel()

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
        _maps.check_values(weight, self.nnz, self._what())
        mag = weight.abs()
        mag = torch.where(mag > tiny(weight.dtype), mag, positive(torch.zeros_like(mag), self.map))
        w = torch.where(self.signs == 0, weight, self.signs.to(weight.dtype) * mag)
        if self.fixed_index.numel():
            w[self.fixed_index] = self.fixed_value.to(weight.dtype)
        return w

    def right_inverse(self, weight: torch.Tensor) -> torch.Tensor:
        """The free parameter whose image is ``weight``; raises :class:`DataError` for values that
        violate the constraint. When the parametrization is registered, PyTorch passes the
        layer's own weight :class:`~torch.nn.Parameter`: that initial weight is first moved into
        the allowed set with :meth:`project`."""
        _follow(self, weight)
        if isinstance(weight, nn.Parameter):
            weight = self.project(weight)
        _maps.check_values(weight, self.nnz, self._what())
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
        for k in where[: _maps._MAX_LISTED].tolist():
            code = int(self.signs[k])
            if code == _FIXED:
                pos = int(torch.nonzero(self.fixed_index == k)[0, 0])
                need.append(f"{self.fixed_value[pos].item():.6g} (fixed)")
            else:
                need.append("> 0" if code == 1 else "< 0")
        listed = _maps.describe_edges(self._pattern, weight, where, need)
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

    Examples::

        >>> import torch
        >>> from sparselinear import Connectivity, SparseLinear
        >>> from sparselinear.constraints import Sign, constrain
        >>> layer = SparseLinear(4, 3, Connectivity(torch.tensor([[0, 1, 2], [0, 3, 1]])))
        >>> layer = constrain(layer, Sign(torch.tensor([1, -1, 0])))
        >>> bool(layer.weight[0] > 0) and bool(layer.weight[1] < 0)
        True
    """

    def __init__(self, signs: Any, *, map: str = "softplus") -> None:
        super().__init__(_maps.as_signs(signs, "signs", None), map)


class Dale(_SignedEdges):
    r"""Dale's law: every outgoing edge of an input neuron has that neuron's sign.

    Args:
        connectivity: the layer's pattern (a :class:`Connectivity` or the layer itself).
        input_signs: one entry per input neuron (column): ``+1`` excitatory, ``-1`` inhibitory,
            ``0`` mixed (its edges take ``edge_signs``, or stay free); booleans mean
            ``True`` = excitatory.
        edge_signs: optional, one entry per edge (``+1``, ``-1`` or ``0`` = free) for the edges
            of mixed neurons, for the cell types whose synapses have mixed signs. Where an input
            has a sign of its own, a non-zero edge sign must agree with it.
        map: ``"softplus"`` (default) or ``"exp"``.

    Examples::

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
        pattern = _maps.as_pattern(connectivity, "connectivity")
        per_input = _maps.as_signs(input_signs, "input_signs", pattern.in_features)
        col = pattern.col_indices().to(torch.int64)
        codes = per_input.to(col.device)[col]
        if edge_signs is not None:
            per_edge = _maps.as_signs(edge_signs, "edge_signs", pattern.nnz).to(col.device)
            mixed = codes == 0
            conflict = ~mixed & (per_edge != 0) & (per_edge != codes)
            if bool(conflict.any()):
                where = torch.nonzero(conflict).flatten()
                need = [f"{int(codes[k]):+d} (input {int(col[k])})" for k in where[:5].tolist()]
                listed = _maps.describe_edges(pattern, per_edge.to(torch.float32), where, need)
                raise DataError(
                    f"'edge_signs' contradicts 'input_signs' on {where.numel()} edge(s): "
                    f"{listed}. Give those inputs sign 0 (mixed) in 'input_signs', or fix "
                    "'edge_signs'."
                )
            codes = torch.where(mixed, per_edge, codes)
        super().__init__(codes, map, pattern)


class Diagonal(_SignedEdges):
    r"""Constrain the diagonal edges (output index == input index); other edges stay free.

    Args:
        connectivity: the layer's pattern (a :class:`Connectivity` or the layer itself); it must
            contain at least one diagonal edge.
        mode: ``"negative"`` (default; ``-(map(u) + tiny)``, strictly negative, e.g. the classic
            negative self-connection), ``"positive"``, or ``"fixed"`` (the diagonal is held at
            ``value`` and does not train).
        value: for ``mode="fixed"`` only: a number, or one value per diagonal edge in order of
            the index. Default: ``0.0``.
        map: ``"softplus"`` (default) or ``"exp"`` (``-exp(u)``, the log-magnitude form).

    Examples::

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
        pattern = _maps.as_pattern(connectivity, "connectivity")
        if mode not in self.MODES:
            raise DataError(f"'mode' must be one of {self.MODES}; got {mode!r}.")
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
            fixed_value = _maps.as_float_tensor(0.0 if value is None else value, "value")
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


class Bounded(nn.Module):
    r"""Keep every weight strictly inside ``(low, high)``: ``weight = lerp(low, high, sigmoid(u))``.

    The ends are moved in by one unit in the last place of the dtype, so that even a saturated
    sigmoid never reaches a bound.

    Args:
        low, high: numbers, or one value per edge (shape ``(nnz,)``); ``low < high``, finite.
        signs: optional, one ``+1``/``-1`` per edge: then the *magnitude* lies in
            ``(low, high)`` (``0 <= low``) and the edge has that sign.

    Examples::

        >>> import torch
        >>> from sparselinear import Connectivity, SparseLinear
        >>> from sparselinear.constraints import Bounded, constrain
        >>> layer = constrain(SparseLinear(8, 8, Connectivity.random(8, 8, nnz=20, seed=0)),
        ...                   Bounded(-0.1, 0.1))
        >>> bool(layer.weight.abs().max() < 0.1)
        True
    """

    low: torch.Tensor
    high: torch.Tensor
    signs: torch.Tensor | None

    def __init__(self, low: Any, high: Any, *, signs: Any = None) -> None:
        super().__init__()
        low, high = _maps.as_float_tensor(low, "low"), _maps.as_float_tensor(high, "high")
        lengths = {t.numel() for t in (low, high) if t.dim() == 1}
        if any(t.dim() > 1 for t in (low, high)) or len(lengths) > 1:
            raise ShapeError(
                "'low' and 'high' must be numbers or 1-D with one value per edge, of equal "
                f"length; got {describe(low)} and {describe(high)}."
            )
        if not bool(torch.isfinite(low).all() & torch.isfinite(high).all()):
            raise DataError("'low' and 'high' must be finite; for a one-sided bound use Sign.")
        bad = ~(low < high)
        if bool(bad.any()):
            k = int(torch.nonzero(bad.reshape(-1))[0, 0])
            lo, hi = low.reshape(-1)[k % low.numel()], high.reshape(-1)[k % high.numel()]
            raise DataError(
                f"'low' must be < 'high'; got low={lo.item():.6g}, high={hi.item():.6g}"
                f"{f' at edge {k}' if bad.dim() else ''}."
            )
        self._nnz = lengths.pop() if lengths else None
        if signs is not None:
            signs = _maps.as_signs(signs, "signs", self._nnz, allow_zero=False)
            self._nnz = signs.numel()
            if bool((low < 0).any()):
                raise DataError(
                    "With 'signs', 'low' and 'high' bound the magnitude, so 'low' must be >= 0; "
                    f"got min(low) = {low.min().item():.6g}."
                )
        self.register_buffer("low", low)
        self.register_buffer("high", high)
        self.register_buffer("signs", signs)

    @property
    def nnz(self) -> int | None:
        """The number of edges, where per-edge bounds or signs fix it; ``None`` otherwise."""
        return self._nnz

    def _ends(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        lo, hi = self.low.to(dtype), self.high.to(dtype)
        return torch.nextafter(lo, hi), torch.nextafter(hi, lo)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        lo, hi = self._ends(u.dtype)
        w = torch.lerp(lo.expand_as(u), hi.expand_as(u), torch.sigmoid(u))
        return w if self.signs is None else w * self.signs.to(u.dtype)

    @torch.no_grad()
    def project(self, weight: torch.Tensor) -> torch.Tensor:
        """Feasible values close to ``weight``: values (magnitudes, with ``signs``) are kept where
        they lie well inside the bounds, the rest move to 1.8 % of the range from the nearer end."""
        self._check_size(weight)
        mag = weight if self.signs is None else weight.abs()
        lo, hi = self.low.to(weight.dtype), self.high.to(weight.dtype)
        edge = torch.sigmoid(torch.tensor(4.0, dtype=weight.dtype)).item()
        t = ((mag - lo) / (hi - lo)).clamp(1.0 - edge, edge)
        w = torch.lerp(lo.expand_as(t), hi.expand_as(t), t)
        return w if self.signs is None else w * self.signs.to(weight.dtype)

    def right_inverse(self, weight: torch.Tensor) -> torch.Tensor:
        """The free parameter whose image is ``weight``; raises :class:`DataError` for values
        outside the bounds or with the wrong sign. At registration the layer's own initial
        weight (a :class:`~torch.nn.Parameter`) is first moved inside with :meth:`project`."""
        _follow(self, weight)
        if isinstance(weight, nn.Parameter):
            weight = self.project(weight)
        self._check_size(weight)
        mag = weight if self.signs is None else weight * self.signs.to(weight.dtype)
        lo, hi = self.low.to(weight.dtype), self.high.to(weight.dtype)
        bad = ~((mag > lo) & (mag < hi))
        if bool(bad.any()):
            where = torch.nonzero(bad).flatten()
            lo_e, hi_e = lo.expand_as(mag), hi.expand_as(mag)
            sign = "" if self.signs is None else "in magnitude, with its sign, "
            need = [f"{sign}in ({lo_e[k].item():.6g}, {hi_e[k].item():.6g})"
                    for k in where[: _maps._MAX_LISTED].tolist()]
            raise DataError(
                f"'weight' violates the Bounded constraint on {where.numel()} edge(s): "
                f"{_maps.describe_edges(None, weight, where, need)}. The sigmoid map cannot "
                "reach the bounds themselves. Fix the data or widen the bounds."
            )
        lo, hi = self._ends(weight.dtype)
        eps = torch.finfo(weight.dtype).eps
        t = ((mag - lo) / (hi - lo)).clamp(eps, 1.0 - eps)
        return torch.log(t) - torch.log1p(-t)

    def _check_size(self, weight: torch.Tensor) -> None:
        n = self._nnz if self._nnz is not None else getattr(weight, "numel", lambda: -1)()
        what = (
            f"this Bounded constraint's {self._nnz} per-edge bounds/signs"
            if self._nnz is not None else "the layer"
        )
        _maps.check_values(weight, n, what)

    def extra_repr(self) -> str:
        def show(t: torch.Tensor) -> str:
            return f"{t.item():.6g}" if t.dim() == 0 else f"per-edge ({t.numel()},)"

        signed = ", signed" if self.signs is not None else ""
        return f"low={show(self.low)}, high={show(self.high)}{signed}"


def constrain(layer: nn.Module, constraint: nn.Module, name: str = "weight") -> nn.Module:
    r"""Attach ``constraint`` to ``layer.<name>`` as a parametrization and return ``layer``.

    Equivalent to ``parametrize.register_parametrization(layer, name, constraint)`` after checks
    that name what is wrong: the constraint's size against the layer's number of edges, its
    pattern against the layer's (for :class:`Dale` and :class:`Diagonal`), and a layer that is
    already constrained. The constraint's buffers are moved to the weight's device. The layer's
    current weight is moved into the allowed set (magnitudes kept, see ``project``), so a freshly
    initialised layer keeps its fan-in scaling.

    Args:
        layer: a :class:`~sparselinear.SparseLinear` (or any module with a 1-D ``name``
            parameter).
        constraint: a :class:`Sign`, :class:`Dale`, :class:`Diagonal` or :class:`Bounded`, or any
            parametrization module.
        name: the parameter to constrain. Default: ``"weight"``.

    Examples::

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
    mine, theirs = getattr(layer, "connectivity", None), getattr(constraint, "_pattern", None)
    if isinstance(mine, Connectivity) and isinstance(theirs, Connectivity) and mine != theirs:
        raise WiringMismatchError(
            f"The {type(constraint).__name__} constraint was built for the pattern {theirs} "
            f"(digest {theirs.digest[:12]}), but the layer has {mine} (digest "
            f"{mine.digest[:12]}). Build it from `layer.connectivity`."
        )
    constraint.to(weight.device)
    parametrize.register_parametrization(layer, name, constraint)
    return layer
