"""Sparse layers too large for one process: output rows sharded over ``torch.distributed``.

* :class:`ShardedSparseLinear` — each rank holds the rows of a contiguous, edge-balanced range
  (:class:`RowPartition`): their pattern, values, gradients and optimizer state.
* Row sources that read one rank's rows alone: :class:`RandomBlocks` (a seeded generator, per
  row block), :class:`CSRFile` (``.npz``/``.npy``, memory-mapped), :class:`ParquetEdges` (row
  filter), :class:`ConnectivitySource` (a pattern every rank holds).
* Checkpoints: :func:`save_checkpoint` / :func:`load_checkpoint` (``torch.distributed.checkpoint``,
  re-sharded on load), :func:`consolidated_state_dict` / :func:`load_consolidated_state_dict` /
  :func:`to_sparse_linear` (to and from the single-process layer).
* :func:`step_volume` — the bytes each rank sends per training step.

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
