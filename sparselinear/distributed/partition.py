"""Which output rows each rank owns: contiguous row ranges balanced by edges.

A connectome's in-degrees are skewed, so equal numbers of rows would give some ranks many more
edges (values, gradients, optimizer state, work) than others.
[`RowPartition.balanced`][sparselinear.distributed.RowPartition.balanced] places the boundaries
where the cumulative edge count crosses ``k · nnz / world``, among the row boundaries a source can
offer (every row for a CSR file, every row block for a generator).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ShapeError, SparseLinearTypeError, describe

__all__ = ["RowPartition"]


@dataclass(frozen=True)
class RowPartition:
    """Contiguous output-row ranges, one per rank, and the edges each holds.

    Rank ``r`` owns rows ``[row_bounds[r], row_bounds[r + 1])`` and edges
    ``[edge_bounds[r], edge_bounds[r + 1])`` of the canonical (row-major) edge order, so the
    concatenation of the ranks' weights in rank order is the single-process layer's weight.

    Args:
        row_bounds: ``world + 1`` increasing row indices from ``0`` to ``out_features``.
        edge_bounds: ``world + 1`` non-decreasing edge offsets from ``0`` to ``nnz``.

    Examples:
        >>> import numpy as np
        >>> crow = np.array([0, 9, 10, 11, 12])          # row 0 holds 9 of 12 edges
        >>> p = RowPartition.balanced(np.arange(5), crow, 2)
        >>> p.row_bounds, p.edge_bounds
        ((0, 1, 4), (0, 9, 12))
        >>> p.rows(1), p.edges(1), p.world_size
        ((1, 4), (9, 12), 2)
    """

    row_bounds: tuple[int, ...]
    edge_bounds: tuple[int, ...]

    def __post_init__(self) -> None:
        rows, edges = self.row_bounds, self.edge_bounds
        if len(rows) != len(edges) or len(rows) < 2:
            raise ShapeError(
                f"A partition needs world + 1 row and edge bounds; got {len(rows)} and "
                f"{len(edges)}."
            )
        if rows[0] != 0 or edges[0] != 0 or any(b <= a for a, b in zip(rows, rows[1:])) or any(
            b < a for a, b in zip(edges, edges[1:])
        ):
            raise ShapeError(
                f"Row bounds must increase from 0 (every rank owns at least one row) and edge "
                f"bounds must not decrease from 0; got rows {rows}, edges {edges}."
            )

    @property
    def world_size(self) -> int:
        return len(self.row_bounds) - 1

    @property
    def out_features(self) -> int:
        return self.row_bounds[-1]

    @property
    def nnz(self) -> int:
        return self.edge_bounds[-1]

    def rows(self, rank: int) -> tuple[int, int]:
        """``(start, stop)`` of the rows ``rank`` owns."""
        return self.row_bounds[rank], self.row_bounds[rank + 1]

    def edges(self, rank: int) -> tuple[int, int]:
        """``(start, stop)`` of the edges ``rank`` owns, in the canonical edge order."""
        return self.edge_bounds[rank], self.edge_bounds[rank + 1]

    def sizes(self) -> list[int]:
        """Rows per rank."""
        return [b - a for a, b in zip(self.row_bounds, self.row_bounds[1:])]

    @classmethod
    def balanced(cls, row_points: Any, edge_points: Any, world_size: int) -> RowPartition:
        """Split at the offered boundaries so that each rank holds about ``nnz / world`` edges.

        Args:
            row_points: increasing row indices where a boundary may fall, from ``0`` to
                ``out_features`` (``arange(out + 1)`` for row granularity).
            edge_points: the number of edges before each of them (the CSR row pointers for
                row granularity).
            world_size: the number of ranks.

        Every rank gets at least one row; a rank may get no edges (all rows empty).
        """
        if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
            raise SparseLinearTypeError(
                f"'world_size' must be a positive int; got {describe(world_size)}."
            )
        rows = np.asarray(row_points, dtype=np.int64)
        edges = np.asarray(edge_points, dtype=np.int64)
        n_out = int(rows[-1])
        if rows.size - 1 < world_size:
            unit = "rows" if rows.size - 1 == n_out else "row blocks"
            raise ShapeError(
                f"Cannot split {rows.size - 1} {unit} (out_features={n_out}) over "
                f"{world_size} ranks: every rank must own at least one row. Use at most "
                f"{rows.size - 1} ranks" + (", or smaller row blocks." if unit != "rows" else ".")
            )
        targets = edges[-1] * np.arange(1, world_size) / world_size
        # the offered boundary whose edge count is nearest each target
        right = np.clip(np.searchsorted(edges, targets, side="left"), 1, rows.size - 1)
        left = right - 1
        pick = np.where(targets - edges[left] <= edges[right] - targets, left, right)
        # keep every rank's range non-empty: boundary k lies in [k, points - world + k]
        k = np.arange(1, world_size)
        pick = np.maximum.accumulate(np.maximum(pick, k))
        pick = np.minimum(pick, rows.size - 1 - world_size + k)
        for i in range(1, pick.size):  # strictly increasing (a few entries: world - 1)
            pick[i] = max(pick[i], pick[i - 1] + 1)
        index = [0, *pick.tolist(), rows.size - 1]
        return cls(tuple(int(rows[i]) for i in index), tuple(int(edges[i]) for i in index))

    @classmethod
    def even(cls, n: int, world_size: int) -> RowPartition:
        """``n`` features split as evenly as possible, without edges: the partition of an input
        that each rank holds its rows of (``ShardedSparseLinear(..., input_partition=)``).

        Examples:
            >>> RowPartition.even(10, 3).sizes()
            [3, 3, 4]
        """
        if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
            raise SparseLinearTypeError(
                f"'world_size' must be a positive int; got {describe(world_size)}."
            )
        if n < world_size:
            raise ShapeError(f"Cannot split {n} features over {world_size} ranks.")
        bounds = tuple(r * n // world_size for r in range(world_size + 1))
        return cls(bounds, (0,) * (world_size + 1))

    @classmethod
    def from_row_bounds(cls, row_bounds: Sequence[int], crow: Any) -> RowPartition:
        """A partition at given row boundaries, with its edge bounds read from the row
        pointers ``crow`` (``out_features + 1`` entries)."""
        crow = np.asarray(crow, dtype=np.int64)
        bounds = tuple(int(b) for b in row_bounds)
        if bounds[-1] != crow.size - 1 or any(b < 0 or b >= crow.size for b in bounds):
            raise ShapeError(
                f"'row_bounds' must run from 0 to out_features={crow.size - 1}; got {bounds}."
            )
        return cls(bounds, tuple(int(crow[b]) for b in bounds))
