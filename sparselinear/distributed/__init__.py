"""Sparse layers too large for one process: output rows sharded over ``torch.distributed``.

* [`ShardedSparseLinear`][sparselinear.distributed.ShardedSparseLinear] — each rank holds the rows
  of a contiguous, edge-balanced range ([`RowPartition`][sparselinear.distributed.RowPartition]):
  their pattern, values, gradients and optimizer state.
* Row sources that read one rank's rows alone:
  [`RandomBlocks`][sparselinear.distributed.RandomBlocks] (a seeded generator, per row block),
  [`CSRFile`][sparselinear.distributed.CSRFile] (``.npz``/``.npy``, memory-mapped),
  [`ParquetEdges`][sparselinear.distributed.ParquetEdges] (row filter),
  [`ConnectivitySource`][sparselinear.distributed.ConnectivitySource] (a pattern every rank holds).
* Checkpoints: [`save_checkpoint`][sparselinear.distributed.save_checkpoint] /
  [`load_checkpoint`][sparselinear.distributed.load_checkpoint] (``torch.distributed.checkpoint``,
  re-sharded on load), [`consolidated_state_dict`][sparselinear.distributed.consolidated_state_dict]
  / [`load_consolidated_state_dict`][sparselinear.distributed.load_consolidated_state_dict] /
  [`to_sparse_linear`][sparselinear.distributed.to_sparse_linear] (to and from the single-process
  layer).
* [`step_volume`][sparselinear.distributed.step_volume] — the bytes each rank sends per training
  step.

See ``docs/distributed.md``.
"""

from .checkpoint import (
    consolidated_state_dict,
    load_checkpoint,
    load_consolidated_state_dict,
    save_checkpoint,
    to_sparse_linear,
)
from .collectives import Communicator, ProcessGroupError
from .communication import step_volume
from .files import CSRFile, ParquetEdges
from .layer import ShardedSparseLinear
from .partition import RowPartition
from .sources import ConnectivitySource, RandomBlocks, RowBlock, RowSource

__all__ = [
    "CSRFile",
    "Communicator",
    "ConnectivitySource",
    "ParquetEdges",
    "ProcessGroupError",
    "RandomBlocks",
    "RowBlock",
    "RowPartition",
    "RowSource",
    "ShardedSparseLinear",
    "consolidated_state_dict",
    "load_checkpoint",
    "load_consolidated_state_dict",
    "save_checkpoint",
    "step_volume",
    "to_sparse_linear",
]
