"""What one rank of a row-sharded layer holds beside its rows' parameters in a training step.

The parameters, gradients and optimizer state of a rank's rows are ``1 / world`` of the layer;
what surrounds them depends on how the input arrives
([`ShardedSparseLinear`][sparselinear.distributed.ShardedSparseLinear]):

* **replicated input**: the whole ``(batch, in)`` input, the local kernels' temporaries over
  all ``in`` columns (its transposed copy, per-thread input-gradient buffers, the input
  gradient: [`sparselinear.ops.policy.plan_step`][sparselinear.kernels.plan_step] of the rank's
  ``(rows, in)`` pattern), then the input gradient's copy that is all-reduced beside the gradient
  itself;
* **row-sharded input** (``sparselinear.distributed.ring``): the rank's shard of the input
  and of its gradient, and for one batch chunk at a time three pieces (two of the input passing
  round and the partial sum being added to, or the next input piece with the partial sums
  sent and received), the kernels' per-thread buffers (the compiled sweeps write each block's
  gradients in place; torch's kernels make them, from the plan of a ``(rows, n_b)`` block
  for the chunk); the blocks' transposed patterns where the kernels read them.

Each function returns a ``RankSide``; [`estimate_sharded`][sparselinear.memory.estimate_sharded]
adds the parameters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..distributed.ring import pieces as ring_pieces
from ..distributed.ring import windows as ring_windows
from ..ops import policy
from ..ops.autograd import writes_in_place

__all__ = ["RankSide", "replicated_side", "ring_side"]


@dataclass(frozen=True)
class RankSide:
    """Bytes one rank holds in one training step besides its values, gradients and optimizer
    state.

    Attributes:
        pattern: index memory: the rank's CSR (or its column blocks) and what the kernels
            derive from it and keep.
        input: the layer's input on this rank (the whole input, or the rank's shard).
        output: this rank's rows of the output (its gradient takes its place backward).
        saved: kept from the forward pass for the backward pass besides the input.
        forward, backward: temporaries at the peak of each pass, collective buffers included.
        buffers: of the larger pass's temporaries, the collectives' (pieces in flight, partial
            sums, the all-reduce copy).
        pieces: batch chunks a row-sharded input goes round in (1 otherwise).
    """

    pattern: int
    input: int
    output: int
    saved: int
    forward: int
    backward: int
    buffers: int
    pieces: int = 1

    @property
    def activations(self) -> int:
        return self.input + self.output + self.saved

    @property
    def working(self) -> int:
        return max(self.forward, self.backward)


def _csr_bytes(rows: int, nnz: int, idx: int) -> int:
    return idx * (rows + 1 + nnz)


def replicated_side(rows: int, nnz: int, n_in: int, batch: int, dtype: torch.dtype,
                    device: torch.device, index_dtype: torch.dtype, world_size: int, *,
                    input_requires_grad: bool = True, mode: str = "sparse",
                    bands: tuple[int | None, int | None] = (None, None)) -> RankSide:
    """A rank of ``rows`` rows and ``nnz`` edges whose input, ``(batch, n_in)``, every rank
    holds whole; its gradient is all-reduced when ``world_size > 1``."""
    d = dtype.itemsize
    plan = policy.plan_step(rows, n_in, nnz, batch, dtype, device, mode=mode,
                            band_area=bands[0], band_edges=bands[1],
                            needs_input_grad=input_requires_grad, index_dtype=index_dtype)
    backward, buffers = plan.backward_bytes, 0
    if world_size > 1 and input_requires_grad:
        # after the local backward: the input gradient and the copy being all-reduced, while
        # the kernels' gathered input copy is gone
        reduce = 2 * batch * n_in * d - plan.saved_bytes
        if reduce > backward:
            backward, buffers = reduce, batch * n_in * d
    return RankSide(_csr_bytes(rows, nnz, index_dtype.itemsize) + plan.derived_bytes,
                    batch * n_in * d, batch * rows * d, plan.saved_bytes, plan.forward_bytes,
                    backward, buffers)


def ring_side(rows: int, nnz: int, block_nnz: int, sizes: Sequence[int], rank: int,
              batch: int, dtype: torch.dtype, device: torch.device,
              index_dtype: torch.dtype, *, input_requires_grad: bool = True,
              threads: int | None = None) -> RankSide:
    """A rank of ``rows`` rows and ``nnz`` edges (at most ``block_nnz`` in one input shard's
    block) whose input is row-sharded ``sizes`` ways, multiplied around the ring
    (``sparselinear.distributed.ring``)."""
    d, idx = dtype.itemsize, index_dtype.itemsize
    world, widest, own = len(sizes), max(sizes), sizes[rank]
    k = ring_pieces(batch, widest, d)
    chunk = math.ceil(batch / k)
    piece = widest * chunk * d
    plan = policy.plan_step(rows, widest, block_nnz, chunk, dtype, device,
                            needs_input_grad=input_requires_grad, needs_weight_grad=True,
                            index_dtype=index_dtype, threads=threads)
    # forward: the block's product for the chunk beside the output; this piece and the next
    forward = chunk * rows * d + 2 * piece + plan.forward_bytes
    # backward: the input gradient's shard (the result); for one window of the features, this
    # piece and the next of the input while the block's kernels add into the partial sum, then
    # the next piece, the sum sent and the one received. The compiled sweeps write the block's
    # gradients in place (with several threads, one input-gradient buffer per thread); other
    # kernels make them (over the window's part of the block's pattern, cut out) and add them.
    held = 3 if input_requires_grad else 2
    n_windows = ring_windows(batch, widest, d)
    wide, edges = math.ceil(widest / n_windows), math.ceil(block_nnz / n_windows)
    window = wide * chunk * d
    step = plan if n_windows == 1 else policy.plan_step(
        rows, wide, edges, chunk, dtype, device, needs_input_grad=input_requires_grad,
        needs_weight_grad=True, index_dtype=index_dtype, threads=threads)
    # the kernels' own rule, for gradient buffers of the layer's dtype
    buffer = torch.empty(0, dtype=dtype, device="meta")
    in_place = writes_in_place(step, policy.compute_dtype(dtype, device), buffer, buffer,
                               window=n_windows > 1)
    kernels = 0
    if in_place:
        if input_requires_grad and step.threads > 1:
            kernels = step.threads * window
        if not step.in_place:  # the sweep's (rows, chunk) copy of the output gradient
            kernels += chunk * rows * d
    else:
        kernels = step.backward_bytes + edges * d + (window if input_requires_grad else 0)
        if n_windows > 1:  # cutting: a mask and the row of every edge; the part's indices
            kernels += block_nnz * 9 + edges * (8 + idx + d)
    backward = (batch * own * d if input_requires_grad else 0) + held * window + kernels
    buffers = held * window if backward >= forward else 2 * piece
    pattern = idx * (world * (rows + 1) + nnz)
    if plan.transposed:  # every block's transposed pattern, built once and kept
        pattern += idx * (sum(sizes) + world + 2 * nnz)
    return RankSide(pattern, batch * own * d, batch * rows * d, 0, forward, backward, buffers,
                    k)
