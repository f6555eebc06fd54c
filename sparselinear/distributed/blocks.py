"""A rank's rows stored by input shard, for a layer whose input is row-sharded.

Rank ``p`` multiplies the input shard of every rank ``b`` in turn (``ring``), so it keeps
its rows as ``world`` column blocks: block ``b`` holds the edges whose input lies in shard ``b``,
as a CSR of shape ``(rows, n_b)`` with block-local column indices. The blocks are stored one
after the other — values, column indices, and ``world`` row-pointer arrays — so each block is a
view, multiplied by the sparse kernels of [`sparselinear.ops`][sparselinear.ops] without any
per-step index work, and the rank holds no more indices than its canonical CSR would
(``world · rows`` row pointers instead of ``rows``).

Where the kernels read a block's transposed pattern (torch's kernels, e.g. on CUDA; the compiled
ones for wide batches), it is built on first use and kept per block, as
[`SparseLinear`][sparselinear.SparseLinear] keeps its own: ``in_features + world + 2 · nnz`` indices
in all.

The order of the edges (and so of ``ShardBlocks.weight``, its gradient and the optimizer's
state) is block by block, row by row within a block. ``ShardBlocks.to_canonical`` and
``ShardBlocks.from_canonical`` convert per-edge tensors to and from the canonical order of
the rank's rows (row by row, columns sorted), in which checkpoints store them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..ops import policy
from ..ops.autograd import sparse_backward_into, sparse_product, writes_in_place
from ..pattern.caches import transposed_pattern

__all__ = ["ShardBlocks", "add_gradients", "first_at_least", "multiply", "window_pattern"]


def first_at_least(col: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor,
                   value: int) -> torch.Tensor:
    """For each row ``i``, the first position in ``[lo[i], hi[i])`` whose column is at least
    ``value`` (``hi[i]`` if none): a binary search per row, all rows at once.

    Args:
        col: column indices, sorted within each row's range.
        lo, hi: int64 bounds per row.
        value: the column to search for.

    Examples:
        >>> col = torch.tensor([0, 3, 5, 1, 2])
        >>> first_at_least(col, torch.tensor([0, 3]), torch.tensor([3, 5]), 2).tolist()
        [1, 4]
    """
    lo, hi = lo.clone(), hi.clone()
    if lo.numel() == 0 or col.numel() == 0:
        return lo
    last = col.numel() - 1
    for _ in range(int((hi - lo).max()).bit_length()):
        open_ = lo < hi
        mid = (lo + hi) // 2
        below = (col[mid.clamp(max=last)] < value) & open_
        lo = torch.where(below, mid + 1, lo)
        hi = torch.where(below | ~open_, hi, mid)
    return lo


def _block_order(crows: torch.Tensor) -> torch.Tensor:
    """``perm`` (int64, one per stored edge): the canonical position of each edge stored block
    by block, from the blocks' row pointers ``(world, rows + 1)``."""
    counts = crows.diff(dim=1).to(torch.int64)  # (world, rows)
    row_start = torch.zeros(counts.shape[1] + 1, dtype=torch.int64, device=crows.device)
    torch.cumsum(counts.sum(0), 0, out=row_start[1:])
    # where block b's run of row i starts in the canonical order: after the earlier blocks'
    before = torch.cumsum(counts, 0) - counts + row_start[:-1]
    parts = []
    for b in range(counts.shape[0]):
        size = int(counts[b].sum())
        first = crows[b, :-1].to(torch.int64)
        part = torch.repeat_interleave(before[b] - first, counts[b], output_size=size)
        parts.append(part.add_(torch.arange(size, device=part.device)))
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.int64)


class ShardBlocks(nn.Module):
    """One rank's rows of a sharded layer, stored in column blocks by input shard.

    Args:
        crow, col: the rank's rows as a canonical CSR over all ``in_features`` columns.
        bounds: ``world + 1`` input boundaries of the shards (the input partition's
            ``row_bounds``).
        bias: whether the rows have a bias.
        values: initial weights in the canonical order; default: drawn as
            [`SparseLinear`][sparselinear.SparseLinear] draws them (the same values for the same
            seed).
        device, dtype: of the parameters.

    Attributes:
        weight: the edge values, shape ``(nnz,)``, block by block.
        bias: shape ``(rows,)``.
        crow: ``(world, rows + 1)`` row pointers of each block, from 0.
        col: ``(nnz,)`` block-local input indices, block by block.
        offsets: ``world + 1`` positions where each block's edges start in ``weight``/``col``.

    Examples:
        >>> from sparselinear import Connectivity
        >>> c = Connectivity(torch.tensor([[1, 1, 0, 1], [0, 1, 1, 1]]).bool())
        >>> blocks = ShardBlocks(c.crow_indices(), c.col_indices(), (0, 2, 4), bias=False,
        ...                      values=torch.arange(6.0))
        >>> blocks.weight.tolist(), blocks.col.tolist(), blocks.offsets
        ([0.0, 1.0, 3.0, 2.0, 4.0, 5.0], [0, 1, 1, 1, 0, 1], (0, 3, 6))
        >>> blocks.to_canonical(blocks.weight.detach()).tolist()
        [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    """

    def __init__(self, crow: torch.Tensor, col: torch.Tensor, bounds: Sequence[int],
                 bias: bool = True, *, values: torch.Tensor | None = None,
                 device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.bounds = tuple(int(b) for b in bounds)
        self.in_features, self.out_features = self.bounds[-1], crow.numel() - 1
        lo, hi = crow[:-1].to(torch.int64), crow[1:].to(torch.int64)
        starts = [lo, *(first_at_least(col, lo, hi, b) for b in self.bounds[1:-1]), hi]
        counts = torch.stack(starts).diff(dim=0)  # (world, rows)
        crows = torch.zeros(counts.shape[0], counts.shape[1] + 1, dtype=torch.int64)
        torch.cumsum(counts, 1, out=crows[:, 1:])
        sizes = crows[:, -1].tolist()
        self.offsets = tuple(int(v) for v in torch.tensor([0, *sizes]).cumsum(0).tolist())
        perm = _block_order(crows)
        base = torch.repeat_interleave(torch.tensor(self.bounds[:-1]), torch.tensor(sizes),
                                       output_size=perm.numel())
        stored_col = (col[perm] - base).to(col.dtype)
        del base
        factory = {"device": device, "dtype": dtype}
        self.register_buffer("crow", crows.to(col.dtype).to(device))
        self.register_buffer("col", stored_col.to(device))
        self.weight = nn.Parameter(torch.empty(perm.numel(), **factory))
        self.bias = nn.Parameter(torch.empty(self.out_features, **factory)) if bias else None
        with torch.no_grad():
            canonical = self._drawn(crow, **factory) if values is None else values
            self.weight.copy_(canonical.to(self.weight)[perm.to(self.weight.device)])

    def _drawn(self, crow: torch.Tensor, **factory) -> torch.Tensor:
        """Weights and bias drawn as
        [`SparseLinear.reset_parameters`][sparselinear.SparseLinear.reset_parameters] draws them
        (``U(-1/sqrt(k), 1/sqrt(k))``, ``k`` the row's fan-in); returns the canonical weights."""
        fan_in = crow.diff()
        bound = torch.where(fan_in > 0, fan_in.clamp(min=1).double().rsqrt(), 0.0)
        edge_bound = torch.repeat_interleave(bound, fan_in.long(), output_size=self.nnz)
        values = torch.empty(self.nnz, **factory).uniform_(-1.0, 1.0)
        values.mul_(edge_bound.to(values))
        if self.bias is not None:
            self.bias.uniform_(-1.0, 1.0).mul_(bound.to(self.bias))
        return values

    @property
    def world_size(self) -> int:
        return len(self.bounds) - 1

    @property
    def nnz(self) -> int:
        return self.col.numel()

    def block(self, b: int) -> tuple[torch.Tensor, torch.Tensor, slice]:
        """``(crow, col, edges)`` of block ``b``: its row pointers, its block-local column
        indices (views of the buffers, the same tensors from call to call while the buffers are
        unchanged, so that what the kernels derive from a block — its transposed pattern — is
        built once and kept), and the slice of ``weight`` that holds its values."""
        key = (id(self.crow), id(self.col), self.crow.data_ptr(), self.col.data_ptr())
        if getattr(self, "_views_key", None) != key:
            self._views = [(self.crow[i], self.col[self.offsets[i]:self.offsets[i + 1]])
                           for i in range(self.world_size)]
            self._views_key = key
        crow, col = self._views[b]
        return crow, col, slice(self.offsets[b], self.offsets[b + 1])

    def _apply(self, fn, recurse: bool = True):
        self._views, self._views_key = [], None  # views of the buffers being replaced
        return super()._apply(fn, recurse)

    # ------------------------------------------------------------------ the canonical order
    def order(self) -> torch.Tensor:
        """The canonical position of every stored edge (int64, ``(nnz,)``); built on call."""
        return _block_order(self.crow)

    def to_canonical(self, t: torch.Tensor) -> torch.Tensor:
        """A per-edge tensor (``weight``, its gradient, optimizer state) in the canonical order
        of the rank's rows."""
        out = torch.empty_like(t)
        out[self.order().to(t.device)] = t
        return out

    def from_canonical(self, t: torch.Tensor) -> torch.Tensor:
        """A per-edge tensor in the canonical order, stored block by block."""
        return t[self.order().to(t.device)]

    def canonical_pattern(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(crow, col)``: the rank's rows as a canonical CSR over all input columns."""
        counts = self.crow.diff(dim=1).to(torch.int64).sum(0)
        crow = torch.zeros(counts.numel() + 1, dtype=self.col.dtype, device=self.col.device)
        torch.cumsum(counts, 0, out=crow[1:])
        sizes = torch.tensor(self.offsets).diff()
        base = torch.repeat_interleave(torch.tensor(self.bounds[:-1]), sizes,
                                       output_size=self.nnz).to(self.col.device)
        col = torch.empty_like(self.col)
        col[self.order().to(self.col.device)] = self.col + base.to(self.col.dtype)
        return crow, col

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"nnz={self.nnz}, blocks={self.world_size}, bias={self.bias is not None}")


# ---------------------------------------------------------------------- the products of a block
def _plan(crow: torch.Tensor, col: torch.Tensor, width: int, batch: int, weight: torch.Tensor,
          dtype: torch.dtype, want_gx: bool, want_gw: bool) -> policy.StepPlan:
    compute = policy.compute_dtype(dtype, weight.device)
    return policy.plan_step(
        crow.numel() - 1, width, col.numel(), batch, dtype, weight.device,
        needs_input_grad=want_gx, needs_weight_grad=want_gw, index_dtype=col.dtype,
        compiled=policy.extension_enabled(weight.new_empty(0, dtype=compute)),
    )


def multiply(crow: torch.Tensor, col: torch.Tensor, weight: torch.Tensor, x_t: torch.Tensor,
             dtype: torch.dtype) -> torch.Tensor:
    """``(batch, rows)`` product of a block ``(crow, col, weight)`` with its input columns
    ``x_t`` (``(width, batch)``), in ``dtype``; sparse kernels whatever the layer's mode."""
    width, batch = x_t.shape
    plan = _plan(crow, col, width, batch, weight, dtype, False, False)
    compute = policy.compute_dtype(dtype, weight.device)
    return sparse_product(plan, x_t.to(compute).contiguous(), weight, None, crow, col, dtype)


def window_pattern(crow: torch.Tensor, col: torch.Tensor, lo: int,
                   hi: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(crow, col, edges)``: the part of a CSR pattern whose columns lie in ``[lo, hi)``, its
    columns counted from ``lo``, and the positions of its edges in the pattern.

    Examples:
        >>> crow, col = torch.tensor([0, 3, 5]), torch.tensor([0, 2, 4, 1, 3])
        >>> [t.tolist() for t in window_pattern(crow, col, 1, 4)]
        [[0, 1, 3], [1, 0, 2], [1, 3, 4]]
    """
    inside = (col >= lo) & (col < hi)
    edges = inside.nonzero().squeeze(1)
    rows = torch.repeat_interleave(torch.arange(crow.numel() - 1, device=col.device),
                                   crow.diff().to(torch.int64), output_size=col.numel())
    counts = torch.bincount(rows[edges], minlength=crow.numel() - 1)
    sub_crow = torch.zeros(crow.numel(), dtype=crow.dtype, device=crow.device)
    torch.cumsum(counts, 0, out=sub_crow[1:])
    return sub_crow, (col[edges] - lo).to(col.dtype), edges


def add_gradients(crow: torch.Tensor, col: torch.Tensor, weight: torch.Tensor,
                  x_t: torch.Tensor, grad_y: torch.Tensor, *,
                  grad_x_t: torch.Tensor | None = None, grad_w: torch.Tensor | None = None,
                  accumulate_gx: bool = True, accumulate_gw: bool = True,
                  window: tuple[int, int] | None = None) -> None:
    """The gradients of ``multiply`` for ``grad_y (batch, rows)``, written into the buffers
    given: the input gradient transposed into ``grad_x_t`` (``(width, batch)``, contiguous) and
    the weight gradient into ``grad_w`` (the block's ``(nnz,)`` slice of the rank's gradient),
    added to what they hold unless ``accumulate_gx`` / ``accumulate_gw`` is ``False``.

    ``window=(lo, hi)``: only the block's edges from input columns ``[lo, hi)`` take part;
    ``x_t`` and ``grad_x_t`` hold those columns, and the other edges' weight gradients are left
    as they are.

    With the compiled kernels the block's gradients take no memory of their own
    (``sparselinear.ops.autograd.sparse_backward_into``)."""
    width, batch = x_t.shape
    if col.numel() == 0:  # nothing flows: the buffers are zero where not accumulated
        for buffer, accumulate in ((grad_x_t, accumulate_gx), (grad_w, accumulate_gw)):
            if buffer is not None and not accumulate:
                buffer.zero_()
        return
    plan = _plan(crow, col, width, batch, weight, grad_y.dtype, grad_x_t is not None,
                 grad_w is not None)
    compute = policy.compute_dtype(grad_y.dtype, weight.device)
    if window is not None and not writes_in_place(plan, compute, grad_x_t, grad_w, True):
        # other kernels: the window's part of the pattern, its weight gradients scattered back
        crow, col, edges = window_pattern(crow, col, *window)
        part = None if grad_w is None else grad_w.new_zeros(edges.numel())
        add_gradients(crow, col, weight[edges], x_t, grad_y, grad_x_t=grad_x_t, grad_w=part,
                      accumulate_gx=accumulate_gx, accumulate_gw=False)
        if grad_w is not None:
            if accumulate_gw:
                grad_w[edges] += part
            else:
                grad_w[edges] = part
        return
    sparse_backward_into(
        plan, x_t.to(compute).contiguous(), weight, grad_y, crow, col,
        lambda: transposed_pattern(crow, col, width), grad_x_t=grad_x_t, grad_w=grad_w,
        accumulate_gx=accumulate_gx, accumulate_gw=accumulate_gw, window=window,
    )
