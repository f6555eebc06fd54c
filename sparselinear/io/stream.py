"""Sources read in blocks of rows (a text file's lines, a Parquet file's batches): each block is
checked, filtered by ``where=`` and reduced to the columns a call keeps as soon as it is read, so
that only the kept rows of the kept columns are ever held, then the blocks are joined once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import SparseLinearError
from .files import pyarrow_or_none
from .intids import ids_of_text
from .lines import LineMap
from .table import Column, Table, position, take
from .where import RowFilter

__all__ = ["CHUNK_BYTES", "Blocks", "Parts", "Selection", "join"]


@dataclass(frozen=True)
class Selection:
    """What a read keeps of a source: the columns ``keep`` (``ids``: those holding node ids,
    read as integers where they are), the rows that meet ``where``, and ``check``, run on each
    block before it is filtered (the header check of an edge list).

    Examples:
        >>> Selection(keep=("pre", "post", "count"), ids=("pre", "post"),
        ...           where=[("neuropil", "in", ["AL_L"])]).refs
        ['pre', 'post', 'count', 'neuropil']
    """

    keep: Sequence[Column]
    ids: Sequence[Column]
    where: Any = None
    check: Callable[[Table], None] | None = None

    @property
    def refs(self) -> list[Column]:
        """Every column the read needs: the kept ones and those the conditions read."""
        refs = list(self.keep)
        if self.where is not None:
            try:
                refs += [r for r in RowFilter(self.where).refs if r not in refs]
            except SparseLinearError:
                pass  # reported when the blocks are filtered
        return refs


class Blocks:
    """The kept rows of a source, gathered one block at a time.

    Args:
        selection: what to keep.
        names: the column names of the source.
        unit: how a row is named in messages (``"edges.csv, line"``).
        origin: how the source is named in messages (``"file 'edges.csv'"``).
        header_line: the line of a text file's header row, if it has one.
    """

    def __init__(self, selection: Selection, names: list[Column], unit: str, origin: str,
                 header_line: int | None = None) -> None:
        self.selection = selection
        self.names, self.unit, self.origin, self.header_line = names, unit, origin, header_line
        self.rows_filter = RowFilter(selection.where)
        kept = (position(names, r) for r in selection.keep)
        self.kept_positions = sorted({p for p in kept if p is not None})
        self.id_positions = {position(names, r) for r in selection.ids} - {None}
        self.parts = {j: Parts() for j in self.kept_positions}
        self.keep_masks = Parts()
        self.rows = 0

    def add(self, block: Table) -> None:
        """Check ``block``, filter it and keep its kept columns' kept rows."""
        if self.selection.check is not None:
            self.selection.check(block)
        keep = self.rows_filter.mask(block)
        for j in self.kept_positions:
            column = block.column(j, "column")
            column = column if keep is None else take(column, keep)
            if j in self.id_positions and not isinstance(column, np.ndarray):
                column = ids_of_text(column)  # the ids of the kept rows only
            self.parts[j].append(column)
        if keep is not None:
            self.keep_masks.append(keep)
        self.rows += block.size

    def table(self, lines: LineMap | None = None) -> Table:
        """The kept rows of every block, as one table (``lines``: the line of each row of a
        text file)."""
        self.rows_filter.finish(self.origin)
        release_unused()
        columns: list[Any] = [None] * len(self.names)
        for j in self.kept_positions:
            columns[j] = join(self.parts.pop(j).arrays(), j in self.id_positions)
        kept = join(self.keep_masks.arrays(), False) if self.keep_masks.items else None
        return Table(self.names, columns, None, self.unit, self.origin, self.header_line,
                     kept=kept, rows=self.rows, lines=lines, filtered=True)


class Parts:
    """The blocks of one column, appended one by one. Numbers are copied at once into large
    chunks allocated ahead (``CHUNK_BYTES`` each, a memory map of its own, resident only
    as it fills), so no small allocation outlives its block to fragment the heap: the kept
    rows cost their own size. Text stays a list of blocks."""

    def __init__(self) -> None:
        self.items: list[Any] = []  # numpy arrays, pyarrow arrays and runs

    def append(self, part: Any) -> None:
        if not len(part):
            return  # nothing kept (its dtype, say object for text, would spread to the rest)
        numeric = isinstance(part, np.ndarray) and part.dtype.kind in "iufb"
        if not numeric:
            self.items.append(part)
            return
        last = self.items[-1] if self.items else None
        if not (isinstance(last, _Run) and last.dtype == part.dtype):
            last = _Run(part.dtype)
            self.items.append(last)
        last.append(part)

    def arrays(self) -> list[Any]:
        """The blocks, each run of numbers as one array; the parts are handed over."""
        items, self.items = self.items, []
        return [item.array() if isinstance(item, _Run) else item for item in items]


#: Bytes of each chunk that numbers are gathered in.
CHUNK_BYTES = 1 << 27


class _Run:
    """Numbers of one dtype, gathered in chunks of ``CHUNK_BYTES``."""

    def __init__(self, dtype: np.dtype) -> None:
        self.dtype = dtype
        self.chunks: list[np.ndarray] = []
        self.fill = 0  # values in the last chunk

    def append(self, part: np.ndarray) -> None:
        done = 0
        while done < part.size:
            if not self.chunks or self.fill == self.chunks[-1].size:
                self.chunks.append(np.empty(max(CHUNK_BYTES // self.dtype.itemsize, 1),
                                            dtype=self.dtype))
                self.fill = 0
            n = min(part.size - done, self.chunks[-1].size - self.fill)
            self.chunks[-1][self.fill:self.fill + n] = part[done:done + n]
            self.fill += n
            done += n

    def array(self) -> np.ndarray:
        """The values as one array (the chunks handed over)."""
        if len(self.chunks) <= 1:
            return self.chunks[0][:self.fill] if self.chunks else np.zeros(0, self.dtype)
        full, self.chunks = self.chunks, []
        full[-1] = full[-1][:self.fill]
        return join(full, False)


def release_unused() -> None:
    """Hand the memory pyarrow's allocator keeps for reuse back to the system: the blocks are
    read, and what follows allocates with numpy."""
    pa = pyarrow_or_none()
    if pa is not None:
        pa.default_memory_pool().release_unused()


def join(parts: list[Any], ids: bool) -> np.ndarray:
    """The blocks of one column as one numpy array, each block released once copied; text
    (pyarrow) becomes an object array, and ids of mixed kinds become text."""
    pa = None
    if any(not isinstance(p, np.ndarray) for p in parts):
        from .files import require_pyarrow

        pa = require_pyarrow("Reading text columns")
    if pa is not None and all(not isinstance(p, np.ndarray) for p in parts):
        chunks = [c for p in parts for c in (p.chunks if isinstance(p, pa.ChunkedArray)
                                             else [p])]
        parts.clear()
        return pa.chunked_array(chunks, type=pa.string()).to_numpy(zero_copy_only=False)
    if pa is not None:
        parts[:] = [p if isinstance(p, np.ndarray) else p.to_numpy(zero_copy_only=False)
                    for p in parts]
    if ids:
        parts[:] = _same_kind(parts)
    if len(parts) == 1:
        return parts.pop()
    dtype = np.result_type(*parts) if parts else np.dtype(object)
    out = np.empty(sum(p.size for p in parts), dtype=dtype)
    start = 0
    parts.reverse()
    while parts:  # copy block by block, releasing each: about one copy of the column is held
        part = parts.pop()
        out[start:start + part.size] = part
        start += part.size
        del part
    return out


def _same_kind(parts: list[np.ndarray]) -> list[np.ndarray]:
    """Id blocks of one kind: int64, uint64 (no negative id alongside), or else text."""
    kinds = {p.dtype for p in parts if p.size}
    if len(kinds) <= 1:
        return parts
    if all(k.kind in "iu" for k in kinds) and not any(
            p.dtype.kind == "i" and p.size and p.min() < 0 for p in parts):
        return [p.astype(np.uint64) for p in parts]
    return [p if p.dtype == object else p.astype(str).astype(object) for p in parts]
