"""Columnar reading of tabular sources with pyarrow: delimited text files (plain or compressed,
parsed on several threads), Parquet, Arrow IPC/Feather, pyarrow Tables, pandas and polars
DataFrames. Only the columns a call uses are read; numbers stay typed numpy arrays, integer node
ids stay integers.

Every source is read in blocks (a text file's lines, a Parquet file's batches, an Arrow file's
record batches), each filtered by ``where=`` and reduced to the kept columns as it is read
(``sparselinear.io.stream``): ``read_columns`` returns a ``Table`` of the kept rows, each named
by its file line (text) or position (other sources). Text files under ``COLUMNAR_MIN_BYTES`` are
left to the line reader, and so is a larger one this module cannot read exactly as the line
reader would (``sparselinear.io.textblocks``): ``read_columns`` then gives ``None``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from .files import file_format, require_pyarrow
from .intids import id_array, text_ids
from .stream import Blocks, Selection
from .table import Column, Table, check_options, position
from .textblocks import read_text_blocks

__all__ = ["BATCH_ROWS", "COLUMNAR_MIN_BYTES", "arrow_table_of", "id_array",
           "is_arrow_source", "read_columns", "text_ids"]

#: Text files smaller than this are read line by line (exactly as before, in milliseconds);
#: larger ones column by column on several threads.
COLUMNAR_MIN_BYTES = 1 << 20
#: Rows per block of a Parquet/Arrow source.
BATCH_ROWS = 1 << 17


def is_arrow_source(data: Any) -> bool:
    """Whether ``data`` is a pyarrow Table/RecordBatch or a polars DataFrame."""
    module = type(data).__module__
    return (module.startswith("pyarrow") and hasattr(data, "schema")) or (
        module.startswith("polars") and hasattr(data, "to_arrow"))


def arrow_table_of(data: Any) -> Any:
    """A pyarrow Table of a pyarrow Table/RecordBatch or a polars DataFrame."""
    pa = require_pyarrow("Reading a pyarrow/polars table")
    if type(data).__module__.startswith("polars"):
        return data.to_arrow()
    return pa.Table.from_batches([data]) if isinstance(data, pa.RecordBatch) else data


# ---------------------------------------------------------------------- arrow -> numpy
def _column(pa: Any, column: Any) -> Any:
    """A pyarrow column for a block: numbers as numpy (no nulls), text as one pyarrow string
    array, anything else (and nulls) as numpy objects."""
    kind = column.type
    if pa.types.is_dictionary(kind):
        column, kind = column.cast(kind.value_type), kind.value_type
    if column.null_count == 0 and (pa.types.is_integer(kind) or pa.types.is_floating(kind)
                                   or pa.types.is_boolean(kind)):
        return column.to_numpy(zero_copy_only=False)
    if column.null_count == 0 and (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        return column.cast(pa.string())  # ids among them are parsed once filtered
    return column.to_numpy(zero_copy_only=False).astype(object)


def _block(pa: Any, batch: Any, names: list[Column], wanted: Iterable[int], unit: str,
           origin: str, offset: int) -> Table:
    """A ``Table`` of the columns ``wanted`` of a record batch (others left unread)."""
    columns: list[Any] = [None] * len(names)
    for j in wanted:
        columns[j] = _column(pa, batch.column(str(names[j])))
    return Table(names, columns, None, unit, origin, rows=batch.num_rows, offset=offset)


def _gather(pa: Any, batches: Iterable[Any], schema: Any, names: list[Column],
            selection: Selection, unit: str, origin: str) -> Table:
    """The rows of record ``batches`` that ``selection`` keeps (one empty block where there
    is no batch, so that every column and condition is checked)."""
    wanted = sorted({position(names, r) for r in selection.refs} - {None})
    blocks = Blocks(selection, names, unit, origin)
    offset = 0
    for batch in batches:
        blocks.add(_block(pa, batch, names, wanted, unit, origin, offset))
        offset += batch.num_rows
    if not offset:
        blocks.add(_block(pa, schema.empty_table(), names, wanted, unit, origin, 0))
    return blocks.table()


# ---------------------------------------------------------------------- sources
def _read_arrow_file(path: Path, kind: str, selection: Selection) -> Table:
    pa = require_pyarrow(f"Reading {path.suffix} files")
    import pyarrow.feather
    import pyarrow.parquet  # noqa: F401 - imported here: they import pandas, slow to load
    if not path.is_file():
        raise DataError(f"Edge list file {str(path)!r} does not exist or is not a file.")
    try:
        if kind == "parquet":
            # read as a stream (no memory map, no whole row group buffered ahead): only one
            # batch of the wanted columns is resident at a time
            parquet = pa.parquet.ParquetFile(path, memory_map=False, pre_buffer=False)
            schema = parquet.schema_arrow
            names = list(schema.names)
            wanted = sorted({position(names, r) for r in selection.refs} - {None})
            batches = parquet.iter_batches(batch_size=BATCH_ROWS,
                                           columns=[names[j] for j in wanted])
        else:
            reader = pa.ipc.open_file(pa.memory_map(str(path)))
            schema = reader.schema
            names = list(schema.names)
            wanted = sorted({position(names, r) for r in selection.refs} - {None})
            reader = pa.ipc.open_file(pa.memory_map(str(path)),
                                      options=pa.ipc.IpcReadOptions(included_fields=wanted))
            batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
    except (pa.ArrowInvalid, OSError) as exc:
        raise _unreadable(kind, path, exc) from None
    return _gather(pa, _reading(pa, batches, kind, path), schema, names, selection,
                   f"{path.name}, row", f"file {path.name!r}")


def _reading(pa: Any, batches: Iterable[Any], kind: str, path: Path) -> Iterator[Any]:
    """The batches of a file; a damaged one raises ``DataError``."""
    try:
        yield from batches
    except (pa.ArrowInvalid, OSError) as exc:
        raise _unreadable(kind, path, exc) from None


def _unreadable(kind: str, path: Path, exc: BaseException) -> DataError:
    return DataError(f"Cannot read {kind} file {str(path)!r}: {exc}.")


def read_columns(data: Any, selection: Selection, sep: str | None, header: bool,
                 comment: str | None) -> Table | None:
    """The rows and columns of a file or table ``data`` that ``selection`` keeps, or ``None``
    where the source is better read line by line (see the module docstring)."""
    if isinstance(data, Path):
        kind = file_format(data)[0]
        if kind != "text":
            return _read_arrow_file(data, kind, selection)
        if not data.is_file() or data.stat().st_size < COLUMNAR_MIN_BYTES:
            return None
        check_options(sep, comment)
        return read_text_blocks(data, selection, sep, header, comment)
    if is_arrow_source(data):
        pa = require_pyarrow("Reading a pyarrow/polars table")
        arrow = arrow_table_of(data)
        return _gather(pa, arrow.to_batches(max_chunksize=BATCH_ROWS), arrow.schema,
                       list(arrow.column_names), selection, "row", "the table")
    if type(data).__module__.startswith("pandas") and hasattr(data, "columns"):
        blocks = Blocks(selection, list(data.columns), "DataFrame row (position)",
                        "the DataFrame")
        blocks.add(_pandas(data, selection))
        return blocks.table()
    return None


def _pandas(frame: Any, selection: Selection) -> Table:
    names = list(frame.columns)
    columns: list[np.ndarray | None] = [None] * len(names)
    id_positions = {position(names, r) for r in selection.ids}
    for j in sorted({position(names, r) for r in selection.refs} - {None}):
        series = frame.iloc[:, j]
        typed = isinstance(series.dtype, np.dtype)  # not a pandas extension (nullable) dtype
        values = series.to_numpy() if typed else None
        if values is None or values.dtype.kind not in "iufb" or (
                values.dtype.kind == "f" and j in id_positions):
            values = series.to_numpy(dtype=object)
        columns[j] = values
    return Table(names, columns, None, "DataFrame row (position)", "the DataFrame",
                 rows=len(frame))
