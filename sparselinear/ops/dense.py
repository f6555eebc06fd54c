"""Dense-band execution of a sparse linear layer, and the choice between it and sparse kernels.

A pattern that is dense enough runs faster as dense matrix products. The rows are cut into
blocks; each block keeps only the column span its edges touch (a *band*), so a triangular,
banded or block-diagonal pattern skips its all-zero region. Inside the autograd function the 1-D
weight is scattered into each band's dense tile, products run on torch's dense kernels, and the
weight gradient is gathered back at the edges only: the parameters, the optimizer state and the
results (to rounding) are the same as in sparse mode.

``mode="auto"`` picks dense bands when the edges fill at least :data:`DENSE_MIN_FILL` of the
band area (for the device type) and the tiles fit :data:`DENSE_BUDGET_BYTES`; ``"sparse"`` and
``"dense"`` force one or the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch.autograd.function import once_differentiable

from ..errors import SparseLinearError
from ..pattern.caches import PatternCaches
from . import torch_kernels

__all__ = ["DENSE_BUDGET_BYTES", "DENSE_MIN_FILL", "MODES", "BandPlan", "check_mode", "plan_for"]

MODES = ("auto", "sparse", "dense")
#: ``"auto"`` uses dense bands when ``nnz / band area`` reaches this fill (per device type;
#: measured crossover of a full training step on a 2-core CPU: 0.3-0.4) ...
DENSE_MIN_FILL = {"cpu": 0.3, "cuda": 0.05}
#: ... and the tiles, their gradients and masks (``area x (2 x itemsize + 1)`` bytes) fit this.
DENSE_BUDGET_BYTES = 1 << 28
_MIN_BLOCK, _MAX_BLOCK, _BLOCKS = 128, 1024, 8


def check_mode(mode: object) -> str:
    """Validate a ``mode`` argument and return it."""
    if not isinstance(mode, str) or mode not in MODES:
        raise SparseLinearError(
            f"'mode' must be one of {', '.join(map(repr, MODES))}; got {mode!r}. Use 'auto' to "
            "let the layer choose dense or sparse kernels from the pattern's fill."
        )
    return mode


@dataclass
class BandPlan:
    """Row blocks ``[r0, r1)`` with the column span ``[c0, c1)`` and edge range ``[k0, k1)`` of
    each. The tiles of all bands lie one after another in one flat buffer of ``area`` values,
    and :meth:`positions` gives each edge's place in it (per device)."""

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
    block = min(_MAX_BLOCK, max(_MIN_BLOCK, -(-n_out // _BLOCKS)))
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
    check_mode(mode)
    if mode == "sparse":
        return None
    plan = _plans.for_tensor(crow).get(crow, col, lambda: _plan(crow, col))
    if mode == "dense":
        return plan
    itemsize = torch.empty((), dtype=torch_kernels.compute_dtype(dtype, device)).element_size()
    nnz = col.numel()
    fits = plan.area * (2 * itemsize + 1) <= DENSE_BUDGET_BYTES
    min_fill = DENSE_MIN_FILL.get(device.type, DENSE_MIN_FILL["cuda"])
    return plan if nnz and fits and nnz >= min_fill * plan.area else None


class DenseBandFunction(torch.autograd.Function):
    """``y = x Wᵀ + b`` through the dense tiles of a :class:`BandPlan`; ``x`` is 2-D and
    ``where`` is :meth:`BandPlan.positions` of the pattern.

    Activations stay batch-major, ``(batch, features)``: every tile product reads and writes a
    column range of them in place (BLAS takes the row stride), so no transposed copies are made.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, plan, where):
        dtype = torch_kernels.compute_dtype(x.dtype, x.device)
        x_c, w = x.to(dtype).contiguous(), weight.to(dtype)
        flat = w.new_zeros(plan.area)
        flat.index_copy_(0, where, w)
        y = x_c.new_zeros(x.shape[0], plan.n_out)
        for (r0, r1, c0, c1, _, _), tile in zip(plan.bands, plan.tiles(flat), strict=True):
            y[:, r0:r1].addmm_(x_c[:, c0:c1], tile.t(), beta=0)
        y = y.to(x.dtype)
        if bias is not None:
            y += bias
        ctx.save_for_backward(x_c, weight, flat, where)
        ctx.plan, ctx.has_bias = plan, bias is not None
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y):
        x_c, weight, flat, where = ctx.saved_tensors
        plan = ctx.plan
        g = grad_y.to(x_c.dtype).contiguous()
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = g.new_zeros(x_c.shape)
            for (r0, r1, c0, c1, _, _), tile in zip(plan.bands, plan.tiles(flat), strict=True):
                grad_x[:, c0:c1].addmm_(g[:, r0:r1], tile)
            grad_x = grad_x.to(grad_y.dtype)
        if ctx.needs_input_grad[1]:
            grad_flat = torch.empty_like(flat)  # only the edges' entries are read back
            for (r0, r1, c0, c1, _, _), tile in zip(plan.bands, plan.tiles(grad_flat),
                                                     strict=True):
                torch.mm(g[:, r0:r1].t(), x_c[:, c0:c1], out=tile)
            grad_w = grad_flat.index_select(0, where).to(weight.dtype)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad_y.sum(0)
        return grad_x, grad_w, grad_b, None, None
