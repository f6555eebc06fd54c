"""Where a rank's rows come from, without any rank holding the whole pattern.

A *row source* knows the layer's shape and nnz, offers row boundaries with the number of edges
before each (for [`RowPartition.balanced`][sparselinear.distributed.RowPartition.balanced]), and
reads the edges of any row range alone:

* [`ConnectivitySource`][sparselinear.distributed.ConnectivitySource] — a
  [`Connectivity`][sparselinear.Connectivity] every rank already holds (small layers, tests);
* [`RandomBlocks`][sparselinear.distributed.RandomBlocks] — a seeded random pattern generated per
  block of rows from a counter-based seed, so any row range is reproducible on its own and the
  ranks' shards together are exactly
  [`RandomBlocks.connectivity`][sparselinear.distributed.RandomBlocks.connectivity], the
  single-process pattern;
* [`CSRFile`][sparselinear.distributed.CSRFile] and
  [`ParquetEdges`][sparselinear.distributed.ParquetEdges] — files read by row range.
"""

from __future__ import annotations

import hashlib
import numbers
from typing import Any, NamedTuple

import numpy as np
import torch

from ..errors import ShapeError, SparseLinearTypeError, describe
from ..pattern import Connectivity
from ..pattern.generators import resolve_nnz

__all__ = ["ConnectivitySource", "RandomBlocks", "RowBlock", "RowSource", "local_pattern"]


class RowBlock(NamedTuple):
    """The edges of rows ``[start, stop)``: CSR row pointers from 0 (``stop - start + 1``),
    input indices and optional values (``None``), as numpy arrays."""

    crow: np.ndarray
    col: np.ndarray
    values: np.ndarray | None


class RowSource:
    """Base class of row sources. Subclasses set ``shape`` and ``nnz`` and implement
    [`boundaries`][sparselinear.distributed.RowSource.boundaries],
    [`read`][sparselinear.distributed.RowSource.read] and
    [`fingerprint`][sparselinear.distributed.RowSource.fingerprint]."""

    shape: tuple[int, int]
    nnz: int

    def boundaries(self) -> tuple[np.ndarray, np.ndarray]:
        """``(row_points, edge_points)``: rows where a partition may cut, from 0 to
        ``out_features``, and the number of edges before each."""
        raise NotImplementedError

    def read(self, start: int, stop: int) -> RowBlock:
        """The edges of rows ``[start, stop)`` in canonical order (input indices sorted within
        each row)."""
        raise NotImplementedError

    def fingerprint(self) -> str:
        """A string every rank computes alike for the same source; ranks compare it at
        construction."""
        raise NotImplementedError

    def names(self) -> tuple[Any, Any]:
        """``(out_names, in_names)``: the node names of the outputs and the inputs, each
        ``None`` if the source has none."""
        return None, None


def local_pattern(
    block: RowBlock, n_rows: int, n_in: int, dtype: torch.dtype | None = None
) -> tuple[Connectivity, torch.Tensor | None]:
    """Validate a [`RowBlock`][sparselinear.distributed.RowBlock] as a
    [`Connectivity`][sparselinear.Connectivity] of shape ``(n_rows, n_in)``; its values (if any)
    follow the canonical order."""
    crow = np.asarray(block.crow, dtype=np.int64)
    col = np.asarray(block.col, dtype=np.int64)
    values = block.values
    counts = np.diff(crow)
    if crow.size != n_rows + 1 or col.size != int(crow[-1]) or (counts < 0).any():
        raise ShapeError(
            f"The source returned row pointers of {crow.size} entries ending at "
            f"{int(crow[-1]) if crow.size else 'none'} for {n_rows} rows and {col.size} edges."
        )
    rows = np.repeat(np.arange(n_rows, dtype=np.int64), counts)
    if col.size > 1:
        key = rows * max(n_in, 1) + np.clip(col, 0, None)
        if (np.diff(key) < 0).any():  # sort inputs within rows, values alongside
            order = np.argsort(key, kind="stable")
            col = col[order]
            values = None if values is None else np.asarray(values)[order]
    conn = Connectivity.from_csr(torch.from_numpy(crow), torch.from_numpy(col), (n_rows, n_in))
    if values is None:
        return conn, None
    tensor = torch.from_numpy(np.array(values))  # a copy: never a read-only file mapping
    return conn, tensor if dtype is None else tensor.to(dtype)


class ConnectivitySource(RowSource):
    """A pattern every rank already holds; each rank keeps only its rows of it.

    Args:
        connectivity: the whole pattern.
        values: optional initial weights, one per edge in ``connectivity.indices()`` order.
    """

    def __init__(self, connectivity: Connectivity, values: torch.Tensor | None = None) -> None:
        if not isinstance(connectivity, Connectivity):
            raise SparseLinearTypeError(
                f"'connectivity' must be a Connectivity; got {describe(connectivity)}."
            )
        if values is not None and (values.dim() != 1 or values.numel() != connectivity.nnz):
            raise ShapeError(
                f"'values' must hold one value per edge, shape ({connectivity.nnz},); got "
                f"{describe(values)}."
            )
        self.connectivity = connectivity
        self.values = values
        self.shape = connectivity.shape
        self.nnz = connectivity.nnz
        self._crow = connectivity.crow_indices().cpu().to(torch.int64).numpy()

    def boundaries(self) -> tuple[np.ndarray, np.ndarray]:
        return np.arange(self.shape[0] + 1, dtype=np.int64), self._crow

    def read(self, start: int, stop: int) -> RowBlock:
        e0, e1 = int(self._crow[start]), int(self._crow[stop])
        col = self.connectivity.col_indices()[e0:e1].cpu().to(torch.int64).numpy()
        values = None if self.values is None else self.values.detach()[e0:e1].cpu().numpy()
        return RowBlock(self._crow[start:stop + 1] - e0, col, values)

    def fingerprint(self) -> str:
        return f"connectivity:{self.connectivity.digest}"

    def names(self) -> tuple[Any, Any]:
        return self.connectivity.out_names, self.connectivity.in_names


class RandomBlocks(RowSource):
    """A random pattern generated one block of rows at a time, reproducibly.

    Outputs are cut into blocks of ``block_rows`` rows. Block ``b`` holds its proportional share
    of the edges, ``nnz · stop_b // out - nnz · start_b // out``, drawn uniformly without
    replacement among its ``rows · in_features`` positions by
    ``numpy.random.default_rng([seed, b])``. Any row range is therefore generated from its own
    blocks alone, in time and memory proportional to its edges, and the union over ranks is
    exactly [`connectivity`][sparselinear.distributed.RandomBlocks.connectivity] — whatever the
    number of ranks. It differs from [`Connectivity.random`][sparselinear.Connectivity.random],
    whose draw over the whole matrix cannot be split, only in that edge counts per block are fixed
    (stratified) rather than random.

    Args:
        n_out: the number of outputs (rows).
        n_in: the number of inputs (columns).
        nnz: the number of edges; pass exactly one of ``nnz`` and ``density``.
        density: the edges' fraction of ``n_out · n_in``.
        seed: an int; every rank must pass the same one.
        block_rows: rows per block (the partition's granularity). Default: 64.

    Examples:
        >>> src = RandomBlocks(1000, 500, nnz=5000, seed=0, block_rows=100)
        >>> whole = src.connectivity()
        >>> whole.nnz, bool((whole.fan_in()[:100].sum() == 500))
        (5000, True)
        >>> part = src.read(300, 700)              # rows 300..699 alone
        >>> bool((torch.from_numpy(part.col) == whole.col_indices()[1500:3500]).all())
        True
    """

    def __init__(
        self,
        n_out: int,
        n_in: int,
        *,
        nnz: int | None = None,
        density: float | None = None,
        seed: int,
        block_rows: int = 64,
    ) -> None:
        for name, v in (("n_out", n_out), ("n_in", n_in), ("seed", seed),
                        ("block_rows", block_rows)):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 0:
                raise SparseLinearTypeError(
                    f"'{name}' must be a non-negative int; got {describe(v)}. Every rank must "
                    "pass the same seed for the shards to form one pattern."
                )
        if block_rows < 1:
            raise ShapeError(f"'block_rows' must be at least 1; got {block_rows}.")
        self.shape = (int(n_out), int(n_in))
        self.nnz = resolve_nnz(self.shape[0] * self.shape[1], nnz, density)
        self.seed, self.block_rows = int(seed), int(block_rows)
        starts = np.arange(0, self.shape[0], self.block_rows, dtype=np.int64)
        self._row_points = np.append(starts, self.shape[0])
        self._edge_points = self._edges_before(self._row_points)

    def _edges_before(self, rows: np.ndarray) -> np.ndarray:
        n_out = max(self.shape[0], 1)
        if self.nnz * n_out < 2**62:
            return self.nnz * rows // n_out
        return np.array([self.nnz * int(r) // n_out for r in rows], dtype=np.int64)

    def boundaries(self) -> tuple[np.ndarray, np.ndarray]:
        return self._row_points, self._edge_points

    def read(self, start: int, stop: int) -> RowBlock:
        n_in, size = self.shape[1], self.block_rows
        first, last = start // size, -(-stop // size)
        # filled block by block: no list of per-block arrays, whose many small allocations
        # would leave the C heap grown and fragmented after the read
        base = int(self._edge_points[first]) if last > first else 0
        total = int(self._edge_points[last]) - base if last > first else 0
        row = np.empty(total, dtype=np.int64)
        col = np.empty(total, dtype=np.int64)
        for b in range(first, last):
            r0, r1 = b * size, min((b + 1) * size, self.shape[0])
            e0, e1 = int(self._edge_points[b]) - base, int(self._edge_points[b + 1]) - base
            rng = np.random.default_rng([self.seed, b])
            keys = np.sort(rng.choice((r1 - r0) * n_in, size=e1 - e0, replace=False))
            np.floor_divide(keys, n_in, out=row[e0:e1])
            row[e0:e1] += r0
            np.remainder(keys, n_in, out=col[e0:e1])
        lo = int(np.searchsorted(row, start))  # rows are sorted: the range is one slice
        hi = int(np.searchsorted(row, stop))
        row, col = row[lo:hi], col[lo:hi]
        crow = np.zeros(stop - start + 1, dtype=np.int64)
        np.cumsum(np.bincount(row - start, minlength=stop - start), out=crow[1:])
        return RowBlock(crow, col, None)

    def connectivity(self) -> Connectivity:
        """The whole pattern in one process (what the ranks' shards form together)."""
        return local_pattern(self.read(0, self.shape[0]), *self.shape)[0]

    def fingerprint(self) -> str:
        key = f"{self.shape}:{self.nnz}:{self.seed}:{self.block_rows}"
        return "random-blocks:" + hashlib.sha256(key.encode()).hexdigest()
