"""Dense-band execution of a sparse linear layer, and the choice between it and sparse kernels.

A pattern that is dense enough runs faster as dense matrix products. The rows are cut into
blocks; each block keeps only the column span its edges touch (a *band*), so a triangular,
banded or block-diagonal pattern skips its all-zero region. Inside the autograd function the 1-D
weight is scattered into each band's dense tile, products run on torch's dense kernels, and the
weight gradient is gathered back at the edges only: the parameters, the optimizer state and the
results (to rounding) are the same as in sparse mode.

``mode="auto"`` picks dense bands when the edges fill at least ``DENSE_MIN_FILL`` of the band
area (for the device type) and the tiles fit ``DENSE_BUDGET_BYTES``; ``"sparse"`` and
``"dense"`` force one or the other. The choice and the band sizes are
[`policy`][sparselinear.kernels]'s ([`use_dense_bands`][sparselinear.kernels.use_dense_bands],
[`band_rows`][sparselinear.kernels.band_rows]).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..pattern.caches import PatternCaches
from . import policy

__all__ = ["BandPlan", "band_backward", "band_forward", "plan_for", "tiles_of"]


@dataclass
class BandPlan:
    """Row blocks ``[r0, r1)`` with the column span ``[c0, c1)`` and edge range ``[k0, k1)`` of
    each. The tiles of all bands lie one after another in one flat buffer of ``area`` values,
    and ``positions`` gives each edge's place in it (per device)."""

    bands: list[tuple[int, int, int, int, int, int]]
    area: int
    n_out: int
    _where: dict = field(default_factory=dict, repr=False)

    def offsets(self) -> list[int]:
        """Start of each band's tile in the flat buffer."""
        starts, total = [], 0
        for r0, r1, c0, c1, _, _ in self.bands:
            starts.append(total)
            total += (r1 - r0) * (c1 - c0)
        return starts

    def positions(self, crow: torch.Tensor, col: torch.Tensor) -> torch.Tensor:
        """Each edge's index in the flat tile buffer, for the pattern ``(crow, col)`` the plan
        was made from, on their device (cached per device)."""
        device = col.device
        if device not in self._where:
            crow, col = crow.to(torch.int64), col.to(torch.int64)
            rows = torch.repeat_interleave(
                torch.arange(crow.numel() - 1, device=device), crow.diff()
            )
            where = torch.empty_like(col)
            for (r0, _, c0, c1, k0, k1), start in zip(self.bands, self.offsets(), strict=True):
                where[k0:k1] = start + (rows[k0:k1] - r0) * (c1 - c0) + col[k0:k1] - c0
            self._where[device] = where
        return self._where[device]

    def tiles(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """Views of ``flat`` as the bands' ``(r1-r0, c1-c0)`` tiles."""
        return [
            flat[start : start + (r1 - r0) * (c1 - c0)].view(r1 - r0, c1 - c0)
            for (r0, r1, c0, c1, _, _), start in zip(self.bands, self.offsets(), strict=True)
        ]


def _plan(crow: torch.Tensor, col: torch.Tensor) -> BandPlan:
    crow64, col64 = crow.detach().cpu().to(torch.int64), col.detach().cpu().to(torch.int64)
    n_out = crow64.numel() - 1
    block = policy.band_rows(n_out)
    nonempty = crow64.diff() > 0
    big = torch.iinfo(torch.int64).max
    first = torch.where(nonempty, col64[crow64[:-1].clamp(max=max(col64.numel() - 1, 0))]
                        if col64.numel() else crow64[:-1], big)
    last = torch.where(nonempty, col64[(crow64[1:] - 1).clamp(min=0)]
                       if col64.numel() else crow64[1:], -1)
    bands, area = [], 0
    for r0 in range(0, n_out, block):
        r1 = min(n_out, r0 + block)
        k0, k1 = int(crow64[r0]), int(crow64[r1])
        if k1 == k0:
            continue
        c0, c1 = int(first[r0:r1].min()), int(last[r0:r1].max()) + 1
        bands.append((r0, r1, c0, c1, k0, k1))
        area += (r1 - r0) * (c1 - c0)
    return BandPlan(bands, area, n_out)


_plans: PatternCaches[BandPlan] = PatternCaches()  # per crow tensor, freed with it


def plan_for(
    crow: torch.Tensor, col: torch.Tensor, mode: str, dtype: torch.dtype, device: torch.device
) -> BandPlan | None:
    """The dense-band plan to run with, or ``None`` for sparse kernels. Cached per pattern."""
    policy.check_mode(mode)
    if mode == "sparse":
        return None
    plan = _plans.for_tensor(crow).get(crow, col, lambda: _plan(crow, col))
    return plan if policy.use_dense_bands(mode, col.numel(), plan.area, dtype, device) else None


def band_forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                 plan: BandPlan, where: torch.Tensor, keep: bool = False) -> torch.Tensor:
    """``y = x Wᵀ + b`` for a 2-D ``x`` through the dense tiles of ``plan``; ``where`` is
    ``BandPlan.positions`` of the pattern.

    Activations stay batch-major, ``(batch, features)``: every tile product reads and writes a
    column range of them in place (BLAS takes the row stride), so no transposed copies are made.
    The tiles' zeros would multiply a non-finite input into outputs not wired to it
    (``0 x inf`` is NaN): the caller sends such inputs to the sparse kernels. ``keep``: hold the
    tiles for the backward pass that follows (``band_backward`` takes them).
    """
    dtype = policy.compute_dtype(x.dtype, x.device)
    x_c = x.to(dtype).contiguous()
    flat = tiles_of(weight.to(dtype), plan, where)
    if keep:  # for the backward pass, unless the weight changes before it
        _kept.for_tensor(weight).put(weight, where, flat)
    y = x_c.new_zeros(x.shape[0], plan.n_out)
    for (r0, r1, c0, c1, _, _), tile in zip(plan.bands, plan.tiles(flat), strict=True):
        y[:, r0:r1].addmm_(x_c[:, c0:c1], tile.t(), beta=0)
    y = y.to(x.dtype)
    if bias is not None:
        y += bias
    return y


#: The tiles of a forward pass, per weight tensor, until its backward pass takes them (kept while
#: the weight and the edge positions are unchanged: same storage and version counter).
_kept: PatternCaches[torch.Tensor] = PatternCaches()


def tiles_of(w: torch.Tensor, plan: BandPlan, where: torch.Tensor) -> torch.Tensor:
    """The flat buffer of ``plan``'s tiles holding the values ``w`` at the edges, zeros
    elsewhere."""
    flat = w.new_zeros(plan.area)
    flat.index_copy_(0, where, w)
    return flat


def band_backward(grad_y: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, plan: BandPlan,
                  where: torch.Tensor, want_gx: bool, want_gw: bool):
    """``(grad_x or None, grad_w or None)`` of ``band_forward`` for a finite ``grad_y``
    (a non-finite one goes to the sparse kernels, for the same reason as in the forward pass)."""
    dtype = policy.compute_dtype(x.dtype, x.device)
    x_c = x.to(dtype).contiguous()
    kept = _kept.existing(weight)
    flat = kept.peek(weight, where) if kept is not None else None
    if kept is not None:
        kept.clear()  # held from the forward pass to here only
    if flat is None:
        flat = tiles_of(weight.to(dtype), plan, where)
    g = grad_y.to(dtype).contiguous()
    grad_x = grad_w = None
    if want_gx:
        grad_x = g.new_zeros(x_c.shape)
        for (r0, r1, c0, c1, _, _), tile in zip(plan.bands, plan.tiles(flat), strict=True):
            grad_x[:, c0:c1].addmm_(g[:, r0:r1], tile)
        grad_x = grad_x.to(grad_y.dtype)
    if want_gw:
        grad_flat = torch.empty_like(flat)  # only the edges' entries are read back
        for (r0, r1, c0, c1, _, _), tile in zip(plan.bands, plan.tiles(grad_flat), strict=True):
            torch.mm(g[:, r0:r1].t(), x_c[:, c0:c1], out=tile)
        grad_w = grad_flat.index_select(0, where).to(weight.dtype)
    return grad_x, grad_w
