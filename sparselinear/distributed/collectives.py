"""The collectives a row-sharded layer issues, as autograd functions, and the agreement step
that makes every rank raise when one rank fails.

Activations are ``(batch, features)``; a row-sharded activation holds rank ``r``'s slice of the
features. Ranks may own different numbers of features, so shards are zero-padded to the largest
before ``all_gather`` (torch's collectives want equal sizes). A row-sharded *input* is not
gathered: ``ring`` multiplies it piece by piece.

[`Communicator`][sparselinear.distributed.Communicator] counts the bytes each rank sends per
collective with the ring algorithm's volumes (``(W - 1) / W`` of the gathered or reduced tensor;
twice that for all-reduce), the figures ``sparselinear.memory.sharded`` predicts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from .. import errors
from ..errors import SparseLinearError

__all__ = ["Communicator", "ProcessGroupError", "agree", "checksum", "gather_output",
           "replicated_input"]

T = TypeVar("T")

_all_gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor


class ProcessGroupError(SparseLinearError, RuntimeError):
    """The process group is missing, not initialised, or a rank failed during a collective
    step."""


def group_info(group: Any = None) -> tuple[Any, int, int]:
    """``(group, rank, world_size)``, or
    [`ProcessGroupError`][sparselinear.distributed.ProcessGroupError] if there is no process
    group."""
    if not dist.is_available():
        raise ProcessGroupError("This build of torch has no torch.distributed.")
    if not dist.is_initialized():
        raise ProcessGroupError(
            "The default process group is not initialised. Start the script with `torchrun "
            "--nproc-per-node N script.py` and call `torch.distributed.init_process_group("
            "'gloo')` (CPU) or `('nccl')` (CUDA) before building a sharded layer."
        )
    return group, dist.get_rank(group), dist.get_world_size(group)


def agree(group: Any, what: str, fn: Callable[[], T]) -> T:
    """Run ``fn`` on every rank; if it raises on any rank, raise on every rank.

    The rank that failed re-raises its own exception; the others raise the same library error
    class (or [`ProcessGroupError`][sparselinear.distributed.ProcessGroupError]) naming the rank and
    its message — so no rank goes on to a collective the failed one will never join.
    """
    failure: tuple[str, str] | None = None
    own: BaseException | None = None
    result = None
    try:
        result = fn()
    except Exception as exc:  # any failure must reach the other ranks, not only ours
        own, failure = exc, (type(exc).__name__, str(exc))
    gathered: list[Any] = [None] * dist.get_world_size(group)
    dist.all_gather_object(gathered, failure, group=group)
    failed = [(r, f) for r, f in enumerate(gathered) if f is not None]
    if own is not None:
        raise own
    if failed:
        rank, (name, message) = failed[0]
        cls = getattr(errors, name, None)
        if not (isinstance(cls, type) and issubclass(cls, SparseLinearError)):
            cls = ProcessGroupError
        raise cls(f"{what} failed on rank {rank} ({name}): {message}")
    return result  # type: ignore[return-value]


_BITS = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def checksum(x: torch.Tensor) -> tuple[int, int]:
    """Two integer sums of ``x``'s bits, equal for equal tensors whatever the order of the
    additions (integer sums, wrapping): the sum of all values, and the sum of each row's sum
    times the row's index, so that rows in another order differ too. Reads ``x`` once.

    Examples:
        >>> a = torch.randn(3, 4)
        >>> checksum(a) == checksum(a.clone()), checksum(a) == checksum(a.flip(0))
        (True, False)
    """
    if x.numel() == 0:
        return 0, 0
    bits = x.detach().contiguous().view(_BITS[x.element_size()])
    rows = bits.reshape(-1, x.shape[-1]).sum(dim=1, dtype=torch.int64)
    index = torch.arange(1, rows.numel() + 1, dtype=torch.int64, device=rows.device)
    low = (1 << 62) - 1  # non-negative, and their negatives fit an int64 too
    return int(rows.sum()) & low, int((rows * index).sum()) & low


class Communicator:
    """A process group, the device its collectives run on, and a count of the bytes sent.

    Attributes:
        bytes_sent: bytes this rank has sent so far (ring-algorithm volumes); reset it to 0 to
            measure a step.
    """

    def __init__(self, group: Any, device: torch.device) -> None:
        self.group, self.rank, self.world_size = group_info(group)
        self.device = device
        self.bytes_sent = 0

    def check(self, problem: str | None, what: str, batch: int, device: torch.device,
              replicated: torch.Tensor | None = None) -> None:
        """Every rank states its problem (``None`` if none) and batch in one small all-reduce;
        if any rank has a problem or the batches differ, every rank raises
        [`ShapeError`][sparselinear.errors.ShapeError] with the first rank's text. With
        ``replicated`` (an input every rank should hold alike), the same all-reduce compares
        its ``checksum``, and every rank raises [`DataError`][sparselinear.errors.DataError] if
        they differ."""
        sums = checksum(replicated) if replicated is not None and problem is None else (0, 0)
        flags = torch.tensor([0 if problem is None else 1, batch, -batch, sums[0], -sums[0],
                              sums[1], -sums[1]], dtype=torch.int64, device=device)
        dist.all_reduce(flags, op=dist.ReduceOp.MAX, group=self.group)
        same = [int(flags[i]) == -int(flags[i + 1]) for i in (1, 3, 5)]
        if int(flags[0]) == 0 and all(same):
            return
        if int(flags[0]) == 0 and not same[0]:
            raise errors.ShapeError(
                f"{what}: the ranks were given different batch sizes (from {-int(flags[2])} to "
                f"{int(flags[1])} rows); every rank must pass the same batch."
            )
        if int(flags[0]) == 0:
            raise errors.DataError(
                f"{what}: the input differs between the ranks, but input_partition=None says "
                "it is replicated: every rank must pass the same input (seed its generator "
                "alike, or broadcast it from rank 0), or pass each rank its rows of a "
                "row-sharded input with input_partition=."
            )
        problems: list[Any] = [None] * self.world_size
        dist.all_gather_object(problems, problem, group=self.group)
        rank, text = next((r, p) for r, p in enumerate(problems) if p is not None)
        where = "" if rank == self.rank else f" (on rank {rank})"
        raise errors.ShapeError(f"{what}{where}: {text}")

    def all_reduce(self, t: torch.Tensor) -> torch.Tensor:
        w = self.world_size
        self.bytes_sent += 2 * (w - 1) * t.numel() * t.element_size() // w
        dist.all_reduce(t, group=self.group)
        return t

    def all_gather_features(self, x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
        """``(B, sizes[rank])`` on each rank -> ``(B, sum(sizes))`` on every rank."""
        w, widest = self.world_size, max(sizes)
        batch = x.shape[0]
        padded = x.new_zeros(batch, widest)
        padded[:, : x.shape[1]] = x
        out = x.new_empty(w, batch, widest)
        self.bytes_sent += (w - 1) * padded.numel() * padded.element_size()
        _all_gather(out.view(-1), padded.view(-1), group=self.group)
        return torch.cat([out[r, :, :n] for r, n in enumerate(sizes)], dim=1)


class _Replicated(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, comm: Communicator) -> torch.Tensor:
        ctx.comm = comm
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        # one contiguous copy to reduce in place (the incoming gradient may be shared)
        return ctx.comm.all_reduce(grad.clone(memory_format=torch.contiguous_format)), None


class _GatherOutput(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y: torch.Tensor, comm: Communicator, sizes: list[int]) -> torch.Tensor:
        ctx.start = sum(sizes[: comm.rank])
        ctx.size = sizes[comm.rank]
        return comm.all_gather_features(y.contiguous(), sizes)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        # every rank computed the same loss from the gathered output: its slice is the gradient
        return grad[:, ctx.start:ctx.start + ctx.size].contiguous(), None, None


def replicated_input(x: torch.Tensor, comm: Communicator) -> torch.Tensor:
    """Identity forward; the input gradient's per-rank partial sums all-reduced backward (on
    more than one rank)."""
    return _Replicated.apply(x, comm) if x.requires_grad and comm.world_size > 1 else x


def gather_output(y: torch.Tensor, comm: Communicator, sizes: list[int]) -> torch.Tensor:
    """All-gather a row-sharded output; backward keeps this rank's slice of the gradient."""
    return _GatherOutput.apply(y, comm, sizes)
