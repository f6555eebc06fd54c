"""Bounds on the values (or magnitudes) of a sparse layer's weight.

Part of [`sparselinear.constraints`][sparselinear.constraints], which re-exports
[`Bounded`][sparselinear.constraints.Bounded].
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import MAX_LISTED, DataError, ShapeError, describe
from . import base
from .base import follow_device

__all__ = ["Bounded"]


class Bounded(nn.Module):
    r"""Keep every weight strictly inside ``(low, high)``: ``weight = lerp(low, high, sigmoid(u))``.

    The ends are moved in by one unit in the last place of the dtype, so that even a saturated
    sigmoid never reaches a bound.

    Args:
        low: the lower bound: a number, or one value per edge (shape ``(nnz,)``); finite.
        high: the upper bound, likewise; ``low < high``.
        signs: optional, one ``+1``/``-1`` per edge: then the *magnitude* lies in
            ``(low, high)`` (``0 <= low``) and the edge has that sign.

    Examples:
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
        low, high = base.as_float_tensor(low, "low"), base.as_float_tensor(high, "high")
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
            signs = base.as_signs(signs, "signs", self._nnz, allow_zero=False)
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
        """The free parameter whose image is ``weight``; raises
        [`DataError`][sparselinear.errors.DataError] for values outside the bounds or with the wrong
        sign. At registration the layer's own initial weight (a ``torch.nn.Parameter``) is first
        moved inside with [`project`][sparselinear.constraints.Bounded.project]."""
        follow_device(self, weight)
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
                    for k in where[: MAX_LISTED].tolist()]
            raise DataError(
                f"'weight' violates the Bounded constraint on {where.numel()} edge(s): "
                f"{base.describe_edges(None, weight, where, need)}. The sigmoid map cannot "
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
        base.check_values(weight, n, what)

    def extra_repr(self) -> str:
        def show(t: torch.Tensor) -> str:
            return f"{t.item():.6g}" if t.dim() == 0 else f"per-edge ({t.numel()},)"

        signed = ", signed" if self.signs is not None else ""
        return f"low={show(self.low)}, high={show(self.high)}{signed}"
