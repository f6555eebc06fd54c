"""The [`ShardedSparseLinear`][sparselinear.distributed.ShardedSparseLinear] module: a sparse layer
whose output rows are split across the ranks of a process group."""

from __future__ import annotations

import hashlib
from typing import Any

import torch
from torch import nn

from ..errors import ShapeError, SparseLinearTypeError, WiringMismatchError, describe
from ..nn import SparseLinear
from ..pattern import Connectivity
from .blocks import ShardBlocks
from .collectives import (
    Communicator,
    agree,
    gather_output,
    group_info,
    replicated_input,
)
from .partition import RowPartition
from .ring import RingProduct, ring_product
from .sources import ConnectivitySource, RowSource, local_pattern

__all__ = ["ShardedSparseLinear"]


def _as_source(source: Any) -> RowSource:
    if isinstance(source, Connectivity):
        return ConnectivitySource(source)
    if isinstance(source, RowSource):
        return source
    raise SparseLinearTypeError(
        f"'source' must be a Connectivity or a row source (RandomBlocks, CSRFile, "
        f"ParquetEdges, ConnectivitySource); got {describe(source)}."
    )


class ShardedSparseLinear(nn.Module):
    r"""A [`SparseLinear`][sparselinear.SparseLinear] whose output rows are partitioned across
    ranks.

    Rank ``r`` owns a contiguous range of output rows, chosen so that every rank holds about
    ``nnz / world`` edges, and keeps only their pattern, values, bias, gradients and optimizer
    state. Collectives run on ``torch.distributed`` (gloo on CPU, NCCL on CUDA):

    * replicated input (``input_partition=None``): every rank holds the whole input; the local
      sparse product gives this rank's rows of the output, and backward all-reduces the input
      gradient's per-rank partial sums.
      ``local`` is an ordinary
      [`SparseLinear`][sparselinear.SparseLinear] of shape ``(rows of r, in_features)``.
    * row-sharded input (``input_partition=``: the output of a previous sharded layer, or a
      recurrent step's own): no rank ever holds the whole input. The shards pass around a ring
      of ranks in pieces (``ring``), each multiplied by the block of
      this rank's rows for that shard, and backward sends the input gradient's partial sums
      along the same ring to the rank that owns each shard (a reduce-scatter).
      ``local`` is then a ``ShardBlocks``
      holding the rows in column blocks by input shard, always computed with sparse kernels
      (``mode`` does not apply).
    * ``gather_output=True`` all-gathers the full output. Weight and bias gradients stay
      local, so any torch optimizer steps each rank's shard.

    Per-rank memory is about ``1 / world`` of the layer, plus the input side: the whole input,
    its gradient and their buffers for a replicated input, one shard of them and a few pieces
    for a sharded one
    ([`sparselinear.memory.estimate_sharded`][sparselinear.memory.estimate_sharded]).

    Every rank must build the layer with the same arguments; the ranks compare the source's
    fingerprint, the shape and the partition at construction and all raise
    [`WiringMismatchError`][sparselinear.errors.WiringMismatchError] if they disagree. A failure on
    one rank (a file it cannot read, a bad input width) raises on every rank.

    Args:
        in_features: size of each input sample, as for
            [`SparseLinear`][sparselinear.SparseLinear].
        out_features: size of each output sample (all ranks together).
        source: a [`Connectivity`][sparselinear.Connectivity] (every rank holds it) or a row source
            that reads one rank's rows alone
            ([`RandomBlocks`][sparselinear.distributed.RandomBlocks],
            [`CSRFile`][sparselinear.distributed.CSRFile],
            [`ParquetEdges`][sparselinear.distributed.ParquetEdges]).
        bias: whether the layer has a bias. Default: ``True``.
        group: the process group; default: the default group.
        input_partition: ``None`` (the input is replicated on every rank), the
            ``output_partition`` of the layer feeding this one (its output is row-sharded), or
            ``"output"``: sharded like this layer's own output (a recurrent layer, square).
        gather_output: return the full ``(*, out_features)`` output on every rank instead of
            this rank's rows. Default: ``False``.
        row_bounds: ``world + 1`` row boundaries to use instead of the edge-balanced ones.
        device: of the parameters, as for [`SparseLinear`][sparselinear.SparseLinear].
        dtype: of the parameters, likewise.
        mode: how the local product computes, as for [`SparseLinear`][sparselinear.SparseLinear].
        check_inputs: before each forward pass, the ranks compare the input's width and batch
            in one small all-reduce, so a bad input raises on every rank instead of leaving the
            others blocked in a collective; a replicated input's checksum joins them (one read
            of the input), so an input that differs between ranks raises
            [`DataError`][sparselinear.errors.DataError] on every rank. Default: ``True``.

    Shape:
        - Input: ``(*, in_features)``, or ``(*, rows of this rank in input_partition)``.
        - Output: ``(*, rows of this rank)``, or ``(*, out_features)`` with ``gather_output``.

    Attributes:
        local: this rank's rows: a [`SparseLinear`][sparselinear.SparseLinear], or for a row-sharded
            input on several ranks a ``ShardBlocks`` (its ``weight``,
            stored block by block, and ``bias`` are the parameters;
            [`to_canonical`][sparselinear.distributed.ShardedSparseLinear.to_canonical]).
        output_partition: the [`RowPartition`][sparselinear.distributed.RowPartition] of the output
            rows.
        digest: a digest of the whole pattern as partitioned, equal on every rank.
        out_names, in_names: the node names of this rank's rows and of all inputs, when the
            source has them (a named [`Connectivity`][sparselinear.Connectivity]); consolidation
            carries them back to the single-process layer.

    Examples:
        >>> import torch.distributed as dist
        >>> dist.is_initialized()   # doctest: +SKIP
        True
        >>> src = RandomBlocks(100_000, 100_000, nnz=1_000_000, seed=0)  # doctest: +SKIP
        >>> layer = ShardedSparseLinear(100_000, 100_000, src)           # doctest: +SKIP
        >>> layer(torch.randn(8, 100_000)).shape   # this rank's rows    # doctest: +SKIP
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        source: Any,
        bias: bool = True,
        *,
        group: Any = None,
        input_partition: RowPartition | str | None = None,
        gather_output: bool = False,
        row_bounds: Any = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        mode: str = "auto",
        check_inputs: bool = True,
    ) -> None:
        super().__init__()
        group, rank, world = group_info(group)
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.gather_output, self.check_inputs = bool(gather_output), bool(check_inputs)
        self.comm = Communicator(group, torch.device(device or "cpu"))

        def build():
            src = _as_source(source)
            if tuple(src.shape) != (self.out_features, self.in_features):
                raise ShapeError(
                    f"The source has shape {tuple(src.shape)} (out, in) but the layer is "
                    f"(out_features={out_features}, in_features={in_features})."
                )
            if row_bounds is not None:
                bounds = tuple(int(b) for b in row_bounds)
                RowPartition(bounds, (0,) * len(bounds))  # checks the row bounds alone
                if len(bounds) != world + 1 or bounds[-1] != self.out_features:
                    raise ShapeError(
                        f"'row_bounds' must hold world + 1 = {world + 1} bounds from 0 to "
                        f"{self.out_features}; got {bounds}."
                    )
            else:
                bounds = RowPartition.balanced(*src.boundaries(), world).row_bounds
            start, stop = bounds[rank], bounds[rank + 1]
            conn, values = local_pattern(src.read(start, stop), stop - start, self.in_features)
            return src, bounds, conn, values

        src, bounds, conn, values = agree(group, "Building the sharded layer", build)
        mine = (src.shape, src.nnz, src.fingerprint(), bounds, conn.nnz, conn.digest)
        everyone: list[Any] = [None] * world
        torch.distributed.all_gather_object(everyone, mine, group=group)
        self.output_partition = self._agree_on_pattern(everyone)
        self.digest = hashlib.sha256(":".join(e[5] for e in everyone).encode()).hexdigest()
        if input_partition == "output":
            if self.in_features != self.out_features:
                raise ShapeError(
                    f"input_partition='output' needs a square layer; this one is "
                    f"{self.out_features} x {self.in_features}."
                )
            input_partition = self.output_partition
        if input_partition is not None:
            self._check_input_partition(input_partition, world)
        self.input_partition: RowPartition | None = input_partition
        out_names, self.in_names = src.names()
        start, stop = self.output_partition.rows(rank)
        # this rank's rows' names; the inputs' whole (every rank holds the source's anyway)
        self.out_names = None if out_names is None else out_names[start:stop]
        self.local: SparseLinear | ShardBlocks
        if input_partition is not None and world > 1:  # multiplied shard by shard: blocks
            self.local = ShardBlocks(conn.crow_indices(), conn.col_indices(),
                                     input_partition.row_bounds, bias, values=values,
                                     device=device, dtype=dtype)
            self._ring_product = RingProduct(self.comm, self.local)
        else:
            self.local = SparseLinear(self.in_features, conn.out_features, conn, bias,
                                      device=device, dtype=dtype, mode=mode)
            if values is not None:
                with torch.no_grad():
                    self.local.weight.copy_(values.to(self.local.weight.dtype))

    def _agree_on_pattern(self, everyone: list[Any]) -> RowPartition:
        first = everyone[0]
        for rank, other in enumerate(everyone):
            for i, what in ((0, "shape"), (1, "nnz"), (2, "source"), (3, "row bounds")):
                if other[i] != first[i]:
                    raise WiringMismatchError(
                        f"The ranks disagree on the pattern: rank 0 has {what} "
                        f"{str(first[i])[:80]}, rank {rank} has {str(other[i])[:80]}. Every "
                        "rank must build the layer from the same source (same file, same seed)."
                    )
        total = sum(e[4] for e in everyone)
        if total != first[1]:
            raise WiringMismatchError(
                f"The ranks' shards hold {total} edges together; the source has {first[1]}."
            )
        edges = [0]
        for e in everyone:
            edges.append(edges[-1] + e[4])
        return RowPartition(tuple(first[3]), tuple(edges))

    def _check_input_partition(self, partition: Any, world: int) -> None:
        if not isinstance(partition, RowPartition):
            raise SparseLinearTypeError(
                f"'input_partition' must be None, 'output' or a RowPartition (the "
                f"`output_partition` of the layer before); got {describe(partition)}."
            )
        if partition.world_size != world or partition.out_features != self.in_features:
            raise ShapeError(
                f"'input_partition' splits {partition.out_features} features over "
                f"{partition.world_size} ranks; this layer reads in_features="
                f"{self.in_features} on {world} ranks."
            )

    # ------------------------------------------------------------------ properties
    @property
    def weight(self) -> torch.Tensor:
        """This rank's edge values, shape ``(local nnz,)``: in the canonical order of its rows
        (row by row, inputs sorted), or, for a row-sharded input on several ranks, block by
        block of input shard
        ([`to_canonical`][sparselinear.distributed.ShardedSparseLinear.to_canonical] converts)."""
        return self.local.weight

    @property
    def bias(self) -> torch.Tensor | None:
        """This rank's bias, shape ``(local rows,)``."""
        return self.local.bias

    @property
    def rank(self) -> int:
        return self.comm.rank

    @property
    def world_size(self) -> int:
        return self.comm.world_size

    @property
    def rows(self) -> tuple[int, int]:
        """``(start, stop)`` of this rank's output rows."""
        return self.output_partition.rows(self.rank)

    @property
    def nnz(self) -> int:
        """Edges of the whole layer (this rank's: ``local.nnz``)."""
        return self.output_partition.nnz

    @property
    def bytes_sent(self) -> int:
        """Bytes this rank's collectives have sent (ring volumes); set ``comm.bytes_sent = 0``
        to start a new count."""
        return self.comm.bytes_sent

    # ------------------------------------------------------------------ the canonical order
    def canonical_pattern(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(crow, col)``: this rank's rows as a canonical CSR of shape ``(rows,
        in_features)``, whatever the storage."""
        if isinstance(self.local, ShardBlocks):
            return self.local.canonical_pattern()
        return self.local.crow_indices, self.local.col_indices

    def to_canonical(self, values: torch.Tensor) -> torch.Tensor:
        """A per-edge tensor of this rank (the weight, its gradient, optimizer state) in the
        canonical order of its rows: the order of
        [`canonical_pattern`][sparselinear.distributed.ShardedSparseLinear.canonical_pattern], of
        the single-process layer's weight slice and of checkpoints."""
        if isinstance(self.local, ShardBlocks):
            return self.local.to_canonical(values)
        return values

    def from_canonical(self, values: torch.Tensor) -> torch.Tensor:
        """The inverse of
        [`to_canonical`][sparselinear.distributed.ShardedSparseLinear.to_canonical]: a per-edge
        tensor in this rank's storage order."""
        if isinstance(self.local, ShardBlocks):
            return self.local.from_canonical(values)
        return values

    # ------------------------------------------------------------------ forward
    def _problem(self, input: Any, width: int, sharded: bool) -> str | None:
        """What is wrong with this rank's input, or ``None``."""
        if not isinstance(input, torch.Tensor):
            return f"the input must be a torch.Tensor; got {describe(input)}"
        if input.dim() == 0 or input.shape[-1] != width:
            kind = (f"this rank's {width} rows of the previous layer's output (input_partition)"
                    if sharded else f"in_features = {width}, replicated on every rank")
            return (f"the input's last dimension must be {kind}; got {describe(input)}. "
                    + ("Pass the previous sharded layer's output as is."
                       if sharded else "A row-sharded input needs input_partition=."))
        weight = self.local.weight
        if input.dtype != weight.dtype or input.device != weight.device:
            return (f"the input must be {weight.dtype} on {weight.device}, as the layer's "
                    f"weight; got {describe(input)}. Convert it with `.to(...)`.")
        return None

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        sharded = self.input_partition is not None
        width = self.input_partition.sizes()[self.rank] if sharded else self.in_features
        problem = self._problem(input, width, sharded)
        batch = input.shape[:-1].numel() if problem is None else -1
        if self.check_inputs:
            self.comm.check(problem, "Sharded layer input", batch, self.local.weight.device,
                            None if sharded or self.world_size == 1 else input)
        elif problem is not None:
            raise ShapeError(problem)
        lead = input.shape[:-1]
        x = input.reshape(-1, width)
        if sharded and self.world_size > 1:
            y = ring_product(x, self.local.weight, self.local.bias, self._ring_product)
        elif sharded:
            y = self.local(x)
        else:
            y = self.local(replicated_input(x, self.comm))
        if self.gather_output:
            y = gather_output(y, self.comm, self.output_partition.sizes())
            return y.reshape(*lead, self.out_features)
        return y.reshape(*lead, y.shape[-1])

    def extra_repr(self) -> str:
        start, stop = self.rows
        layout = "sharded" if self.input_partition else "replicated"
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"nnz={self.nnz}, rank={self.rank}/{self.world_size}, rows=[{start}, {stop}), "
            f"local_nnz={self.local.nnz}, input={layout}, gather_output={self.gather_output}"
        )

    @classmethod
    def from_sparse_linear(cls, layer: SparseLinear, **options: Any) -> ShardedSparseLinear:
        """Shard a single-process layer that every rank holds: each rank keeps its rows'
        weights and bias. ``options`` are those of the constructor."""
        if not isinstance(layer, SparseLinear):
            raise SparseLinearTypeError(f"'layer' must be a SparseLinear; got {describe(layer)}.")
        source = ConnectivitySource(layer.connectivity.to("cpu"), layer.weight.detach().cpu())
        options.setdefault("dtype", layer.weight.dtype)
        sharded = cls(layer.in_features, layer.out_features, source,
                      bias=layer.bias is not None, **options)
        if layer.bias is not None:
            start, stop = sharded.rows
            with torch.no_grad():
                sharded.local.bias.copy_(layer.bias.detach()[start:stop])
        return sharded
