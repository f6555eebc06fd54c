"""A row-sharded input multiplied where it lies: its shards pass around a ring of ranks.

Rank ``p`` holds rows ``R_p`` of the layer, stored by input shard (``ShardBlocks``), and
shard ``p`` of the input (``(batch, n_p)``). The product ``y_p = Σ_b W[R_p, shard b] · x_b``
needs every shard, but never all at once:

* forward: the batch is cut into ``k`` chunks so that a chunk of the widest shard is at most
  ``PIECE_BYTES``. For each chunk, rank ``p`` multiplies its own shard's piece, passes it
  to rank ``p + 1`` while receiving rank ``p - 1``'s, multiplies that by the block of its rows
  for shard ``p - 1``, and so on around the ring: ``world`` steps, two pieces held at a time.
* backward: the pieces go round again (the weight gradient of block ``b`` needs shard ``b``),
  and each rank's contribution to the input gradient of shard ``b`` travels along the same
  ring: rank ``b + 1`` starts it, every next rank adds its own, and rank ``b`` receives the sum
  of the others' and adds its own — a reduce-scatter, piece by piece. The compiled kernels add
  each block's input gradient straight into the partial sum received and its weight gradient
  into its slice of the rank's gradient, so a block's gradients take no memory of their own.

Each rank thus holds three pieces of one chunk at a time (two of the input and the partial sum
being added to; then the next input piece and the partial sums sent and received) instead of
the whole ``(batch, in_features)`` input, its transposed copy, its gradient and a reduction
buffer. With ``WINDOW_BYTES`` set, the backward pass goes round once per window of the shards'
features for each chunk, so its pieces are windows of the chunk's. A rank sends
``N - n_{p+1}`` input features per batch row forward, as many again backward, and ``N - n_p``
gradient features: an all-gather forward, and an all-gather and a reduce-scatter backward
([`step_volume`][sparselinear.distributed.step_volume]).

Point-to-point exchanges with the two neighbours are batched (``batch_isend_irecv``), so the
ring runs on gloo and on NCCL alike.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.distributed as dist
from torch.autograd.function import once_differentiable

from .blocks import ShardBlocks, add_gradients, multiply
from .collectives import Communicator

__all__ = ["MIN_CHUNK_ROWS", "PIECE_BYTES", "WINDOW_BYTES", "Ring", "RingProduct", "pieces",
           "ring_product", "windows"]

#: The largest piece of an input shard that a rank sends at once (bytes): the batch is cut into
#: ``ceil(batch · widest shard · itemsize / PIECE_BYTES)`` chunks, but none narrower than
#: ``MIN_CHUNK_ROWS`` rows. Smaller pieces hold less memory and cost more sweeps over the
#: pattern. Read at call time.
PIECE_BYTES = 8 << 20

#: The fewest batch rows of a chunk: the kernels vectorise over 8 batch columns, and narrower
#: chunks run at a fraction of their speed (2.5x slower per edge at 4 rows on the development
#: machine, 1.4x at 8, unchanged from 16). Read at call time.
MIN_CHUNK_ROWS = 8

#: The largest piece the backward pass sends at once (bytes), or 0 (the default) for the
#: forward pass's pieces. The backward pass holds three pieces where the forward pass holds
#: two; with a size here it also cuts each chunk's shards along their features, into windows
#: of at most this size. The compiled kernels sweep one window of a block's columns at a time
#: (other kernels cut the block's pattern), a sweep over the block's rows per window: smaller
#: windows hold less memory and take longer (BENCHMARKS.md: 2 MB windows at 1 M x 1 M on 4
#: ranks, 0.02 GB less per rank, steps about 1.5x as long). Read at call time.
WINDOW_BYTES = 0


def _global(group: Any, rank: int) -> int:
    return rank if group is None else dist.get_global_rank(group, rank)


class Ring:
    """Exchanges with the ring neighbours of a
    [`Communicator`][sparselinear.distributed.Communicator]: send to rank ``p + 1``, receive from
    rank ``p - 1``, counting the bytes sent."""

    def __init__(self, comm: Communicator) -> None:
        self.comm = comm
        w, p = comm.world_size, comm.rank
        self.next, self.prev = _global(comm.group, (p + 1) % w), _global(comm.group, (p - 1) % w)

    def exchange(self, send: torch.Tensor | None, recv: torch.Tensor | None,
                 tag: int = 0) -> list[Any]:
        """Start sending ``send`` and receiving into ``recv`` (either may be ``None`` or empty:
        both ends know the sizes); returns the requests to wait for."""
        ops = []
        if send is not None and send.numel():
            self.comm.bytes_sent += send.numel() * send.element_size()
            ops.append(dist.P2POp(dist.isend, send, self.next, self.comm.group, tag))
        if recv is not None and recv.numel():
            ops.append(dist.P2POp(dist.irecv, recv, self.prev, self.comm.group, tag))
        return dist.batch_isend_irecv(ops) if ops else []


def _wait(requests: list[Any]) -> None:
    """Wait for every request and drop it: a request keeps its tensors alive (the piece just
    sent, which would otherwise stay beside the next ones)."""
    while requests:
        requests.pop().wait()


def _bounds(batch: int, k: int) -> list[tuple[int, int]]:
    return [(batch * j // k, batch * (j + 1) // k) for j in range(k)]


def pieces(batch: int, widest: int, itemsize: int) -> int:
    """Chunks of the batch so that a chunk of the widest shard is at most ``PIECE_BYTES``,
    each of at least ``MIN_CHUNK_ROWS`` rows (at least 1 chunk).

    Examples:
        >>> pieces(32, 250_000, 4)      # 32 MB a shard: 4 chunks of 8 rows, 8 MB each
        4
        >>> pieces(32, 500_000, 4)      # 64 MB: 8 MB pieces would be 4 rows; 8 rows is 16 MB
        4
    """
    wanted = math.ceil(batch * widest * itemsize / max(PIECE_BYTES, 1))
    return max(1, min(wanted, batch // max(MIN_CHUNK_ROWS, 1)))


def windows(batch: int, widest: int, itemsize: int) -> int:
    """Windows the backward pass cuts each shard's features into, so that a piece of one of
    ``pieces``'s chunks of the widest shard is at most ``WINDOW_BYTES`` (1 where it is 0).

    Examples:
        >>> windows(32, 250_000, 4)     # 8 MB pieces of 8 rows, whole by default; with
        1
        >>> # WINDOW_BYTES = 2 << 20 they would go round in 4 windows of 2 MB
    """
    if batch == 0 or WINDOW_BYTES <= 0:
        return 1
    rows = math.ceil(batch / pieces(batch, widest, itemsize))
    return max(1, math.ceil(widest * rows * itemsize / WINDOW_BYTES))


class RingProduct:
    """The product of one rank's rows (``ShardBlocks``) with a row-sharded input, piece
    by piece around the ring of a [`Communicator`][sparselinear.distributed.Communicator]."""

    def __init__(self, comm: Communicator, blocks: ShardBlocks) -> None:
        self.comm, self.ring, self.blocks = comm, Ring(comm), blocks
        bounds = blocks.bounds
        self.sizes = [b - a for a, b in zip(bounds, bounds[1:])]

    def pieces(self, batch: int, itemsize: int) -> int:
        """Chunks of the batch for pieces of at most ``PIECE_BYTES``."""
        return pieces(batch, max(self.sizes), itemsize)

    def forward(self, x: torch.Tensor, weight: torch.Tensor,
                bias: torch.Tensor | None) -> torch.Tensor:
        """``(batch, rows)``: this rank's rows of the output for its shard ``x (batch, n_p)``."""
        p, w = self.comm.rank, self.comm.world_size
        batch = x.shape[0]
        y = x.new_zeros(batch, self.blocks.out_features)
        if bias is not None:
            y += bias.to(x.dtype)
        if batch == 0:  # every rank has the same batch (the layer's input check)
            return y
        for r0, r1 in _bounds(batch, self.pieces(batch, x.element_size())):
            current = x[r0:r1].t().contiguous()  # (n_p, rows of the chunk)
            for s in range(w):
                shard = (p - s) % w
                following, requests = None, []
                if s < w - 1:  # pass the piece on; the previous rank's comes in
                    following = x.new_empty(self.sizes[(shard - 1) % w], r1 - r0)
                    requests = self.ring.exchange(current, following)
                crow, col, edges = self.blocks.block(shard)
                if col.numel():
                    y[r0:r1] += multiply(crow, col, weight[edges], current, x.dtype)
                _wait(requests)
                current = following
        return y

    def windows(self, batch: int, itemsize: int) -> int:
        """Windows of the shards' features for the backward pass's pieces."""
        return windows(batch, max(self.sizes), itemsize)

    def _window(self, shard: int, j: int, k: int) -> tuple[int, int]:
        n = self.sizes[shard]
        return n * j // k, n * (j + 1) // k

    def backward(self, x: torch.Tensor, weight: torch.Tensor, grad_y: torch.Tensor,
                 want_gx: bool, want_gw: bool) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """``(grad_x (batch, n_p), grad_w (local nnz,))`` for ``grad_y (batch, rows)``, each
        ``None`` unless asked for.

        The batch goes round in the forward pass's chunks, and each chunk once per window of
        the shards' features (``windows``). Each block's gradients are written where they
        belong: its weight gradient into its slice of ``grad_w`` (added from the second chunk
        on), its input gradient into the partial sum for its shard's window, held transposed
        (``(window, rows of the chunk)``) — the sum received from the previous rank, or a fresh
        one where the sum starts. A rank holds at most three pieces at a time: this piece and
        the next of the input while the block's kernels add into the partial sum, then the next
        piece, the sum being sent and the one being received."""
        batch = x.shape[0]
        grad_y = grad_y.contiguous()
        grad_x = torch.empty_like(x, dtype=grad_y.dtype) if want_gx else None
        grad_w = torch.empty_like(weight) if want_gw else None
        if batch == 0 or not (want_gx or want_gw):
            if grad_w is not None:
                grad_w.zero_()
            return grad_x, grad_w
        k = self.windows(batch, x.element_size())
        for chunk, (r0, r1) in enumerate(_bounds(batch, self.pieces(batch, x.element_size()))):
            for j in range(k):
                self._window_backward(x, weight, grad_y[r0:r1], grad_x, grad_w, r0, r1, j, k,
                                      chunk > 0)
        return grad_x, grad_w

    def _window_backward(self, x: torch.Tensor, weight: torch.Tensor, g: torch.Tensor,
                         grad_x: torch.Tensor | None, grad_w: torch.Tensor | None, r0: int,
                         r1: int, j: int, k: int, accumulate_gw: bool) -> None:
        """One chunk's window ``j`` of ``k`` round the ring (``backward``)."""
        p, w = self.comm.rank, self.comm.world_size
        m = r1 - r0
        own_lo, own_hi = self._window(p, j, k)
        # without a weight gradient the input is not read: a buffer of its shape will do
        current = x[r0:r1, own_lo:own_hi].t().contiguous() if grad_w is not None else None
        held = None  # the partial sum received from the previous rank
        for s in range(w):
            shard = (p - s) % w
            lo, hi = self._window(shard, j, k)
            following, requests = None, []
            if grad_w is not None and s < w - 1:  # pass the piece on; the previous one comes in
                following = x.new_empty(_width(self._window((shard - 1) % w, j, k)), m)
                requests = self.ring.exchange(current, following)
            crow, col, edges = self.blocks.block(shard)
            x_t = current if current is not None else x.new_empty(hi - lo, m)
            # the block's input gradient goes into the sum received (a new one where the sum
            # starts: this rank's own shard, and the shard whose sum starts here)
            partial = None
            if grad_x is not None:
                partial = held if held is not None else g.new_empty(hi - lo, m)
            add_gradients(crow, col, weight[edges], x_t, g, grad_x_t=partial,
                          grad_w=None if grad_w is None else grad_w[edges],
                          accumulate_gx=held is not None, accumulate_gw=accumulate_gw,
                          window=None if k == 1 else (lo, hi))
            del x_t
            _wait(requests)
            current, held = following, None
            if grad_x is not None and s == 0:  # own shard: the others' sum comes last
                grad_x[r0:r1, own_lo:own_hi] = partial.t()
            elif grad_x is not None:
                held = g.new_empty(_width(self._window((p - 1 - s) % w, j, k)), m)
                _wait(self.ring.exchange(partial, held, tag=1))
            del partial
        if held is not None:
            grad_x[r0:r1, own_lo:own_hi] += held.t()


def _width(window: tuple[int, int]) -> int:
    return window[1] - window[0]


class _RingFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                product: RingProduct) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.product, ctx.has_bias = product, bias is not None
        return product.forward(x, weight, bias)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y: torch.Tensor):
        x, weight = ctx.saved_tensors
        want_gx, want_gw, want_gb = ctx.needs_input_grad[:3]
        grad_x, grad_w = ctx.product.backward(x, weight, grad_y, want_gx, want_gw)
        grad_b = grad_y.sum(0) if ctx.has_bias and want_gb else None
        return grad_x, grad_w, grad_b, None


def ring_product(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                 product: RingProduct) -> torch.Tensor:
    """``(batch, rows)``: this rank's rows of ``x W^T + b`` for its input shard ``x (batch,
    n_p)``, differentiable in ``x``, ``weight`` and ``bias`` (first order)."""
    return _RingFunction.apply(x, weight, bias, product)
