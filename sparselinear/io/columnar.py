"""Columnar reading of tabular sources with pyarrow: delimited text files (plain or compressed,
parsed on several threads), Parquet, Arrow IPC/Feather, pyarrow Tables, pandas and polars
DataFrames. Only the columns a call uses are read; numbers stay typed numpy arrays, integer node
ids stay integers.

``read_columns`` returns a ``Table`` whose rows are numbered by
their position. Text files under ``COLUMNAR_MIN_BYTES`` are left to the line reader, and so
is a larger one this module cannot read exactly as the line reader would (comment or blank
lines before the header, whitespace separators, lines the parser refuses, names holding a
comment mark or a byte-order mark): ``read_columns`` then gives ``None``.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from .files import file_format, open_binary, pyarrow_or_none, require_pyarrow
from .table import Column, Table, check_options

__all__ = ["arrow_table_of", "id_array", "is_arrow_source", "read_columns", "text_ids"]

_CANONICAL = r"^-?(0|[1-9][0-9]*)$"  # integers written without sign, padding or blanks
_PROBE = 1 << 16
#: Text files smaller than this are read line by line (exactly as before, in milliseconds);
#: larger ones column by column on several threads.
COLUMNAR_MIN_BYTES = 1 << 20


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


# ---------------------------------------------------------------------- integer ids
def text_ids(values: np.ndarray) -> np.ndarray:
    """Node names read as text (an object array of stripped strings) as an int64 (or uint64)
    array when every one is an integer in canonical form (``7``, ``-3``; not ``007``, ``+7``
    or ``7.0``), so that no two names become one id; else unchanged."""
    if values.size == 0 or values.dtype.kind in "iu":
        return values
    uniq, inverse = np.unique(values.astype(str), return_inverse=True)
    pa = pyarrow_or_none()
    if pa is None:  # pragma: no cover - depends on the environment
        import re

        canonical = re.compile(_CANONICAL)
        if not all(canonical.match(u) for u in uniq.tolist()):
            return values
        big = [int(u) for u in uniq.tolist()]
        dtype = np.uint64 if max(big) >= 2**63 else np.int64
        try:
            return np.array(big, dtype=dtype)[inverse.reshape(-1)]
        except OverflowError:
            return values
    ids = id_array(pa.array(uniq.tolist(), type=pa.string()))
    return values if ids is None else ids[inverse.reshape(-1)]


def id_array(strings: Any) -> np.ndarray | None:
    """A pyarrow string array of node ids as int64 (or uint64) when every one is a canonical
    integer that fits; ``None`` where any is not. Each value is parsed, then its text length
    checked against its digits: a sign, padding or blanks make the text longer. The chunks of
    a large column are parsed on several threads."""
    pa = pyarrow_or_none()
    if len(strings) == 0:
        return None
    chunks = strings.chunks if hasattr(strings, "chunks") else [strings]
    for dtype in (pa.int64(), pa.uint64()):
        if len(chunks) > 1:
            with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
                parts = list(pool.map(lambda c, d=dtype: _parse_ids(pa, c, d), chunks))
        else:
            parts = [_parse_ids(pa, chunks[0], dtype)]
        if any(p is False for p in parts):
            return None  # parsed, but written with a sign, padding or blanks
        if any(p is None for p in parts):
            continue
        return np.concatenate(parts) if len(parts) > 1 else parts[0]
    return None


def _parse_ids(pa: Any, chunk: Any, dtype: Any) -> np.ndarray | bool | None:
    """The chunk parsed (``None``: not integers of ``dtype``; ``False``: not canonical)."""
    try:
        ids = pa.compute.cast(chunk, dtype).to_numpy()
    except (pa.ArrowInvalid, OverflowError):
        return None
    length = pa.compute.binary_length(chunk).to_numpy()
    return ids if np.array_equal(length, _digits(ids)) else False


def _digits(ids: np.ndarray) -> np.ndarray:
    """The length of each integer written canonically (``-`` included)."""
    powers = np.array([10**k for k in range(1, 20)], dtype=np.uint64)
    magnitude = ids.astype(np.uint64) if ids.dtype.kind == "u" else np.abs(ids).astype(np.uint64)
    if ids.dtype.kind == "i":
        magnitude[ids == np.iinfo(np.int64).min] = np.uint64(2**63)
    length = np.searchsorted(powers, magnitude, side="right").astype(np.int32) + 1
    if ids.dtype.kind == "i":
        length += ids < 0
    return length


# ---------------------------------------------------------------------- arrow -> numpy
def _numpy(column: Any, as_ids: bool) -> np.ndarray:
    """A pyarrow column as numpy: numbers typed (no nulls), text and nulls as objects."""
    pa = pyarrow_or_none()
    kind = column.type
    if pa.types.is_dictionary(kind):
        column, kind = column.cast(kind.value_type), kind.value_type
    if column.null_count == 0 and (pa.types.is_integer(kind) or pa.types.is_floating(kind)
                                   or pa.types.is_boolean(kind)):
        return column.to_numpy()
    if as_ids and column.null_count == 0 and (pa.types.is_string(kind)
                                              or pa.types.is_large_string(kind)):
        stripped = pa.compute.utf8_trim_whitespace(column)
        ids = id_array(stripped)
        if ids is not None:
            return ids
    return column.to_numpy(zero_copy_only=False).astype(object)


def _table(arrow: Any, names: list[Column], refs: Sequence[Column], ids: Sequence[Column],
           unit: str, origin: str) -> Table:
    """A ``Table`` of the columns ``refs`` of ``arrow`` (others left unread)."""
    wanted = {_position(names, r) for r in refs} - {None}
    columns: list[np.ndarray | None] = [None] * len(names)
    id_positions = {_position(names, r) for r in ids}
    for j in sorted(wanted):
        columns[j] = _numpy(arrow.column(str(names[j])), j in id_positions)
    return Table(names, columns, None, unit, origin, rows=arrow.num_rows)


def _position(names: list[Column], ref: Column) -> int | None:
    if isinstance(ref, str) and ref in names:
        return names.index(ref)
    if isinstance(ref, int) and not isinstance(ref, bool) and 0 <= ref < len(names):
        return ref
    return None


# ---------------------------------------------------------------------- sources
def _first_line(path: Path) -> str | None:
    """The file's first line, decoded; ``None`` when it cannot be decoded."""
    try:
        with open_binary(path) as f:
            head = f.read(_PROBE)
        text = head.decode("utf-8")
    except (OSError, UnicodeDecodeError, EOFError, ValueError):
        return None
    return text.lstrip("\ufeff").split("\n", 1)[0].rstrip("\r")


def _read_text(path: Path, refs, ids, sep, header, comment) -> Table | None:
    pa = pyarrow_or_none()
    line = _first_line(path)
    if pa is None or line is None or not line.strip() or (comment and line.strip().startswith(
            comment)):
        return None
    if sep is None:
        sep = next((s for s in ("\t", ",", ";") if s in line), None)
        if sep is None:
            return None  # runs of whitespace: the line reader splits them
    first = next(csv.reader([line], delimiter=sep), [])
    names: list[Column] = [f.strip() for f in first] if header else list(range(len(first)))
    if header and (len(set(names)) != len(names) or any(not n for n in names)):
        return None
    keys = [str(n) for n in names] if header else [f"f{j}" for j in range(len(names))]
    wanted = sorted({_position(names, r) for r in refs} - {None})
    id_keys = {keys[p] for p in (_position(names, r) for r in ids) if p is not None}
    options = dict(
        read_options=pa.csv.ReadOptions(column_names=None if header else keys, use_threads=True,
                                        block_size=1 << 24),
        parse_options=pa.csv.ParseOptions(delimiter=sep, newlines_in_values=False),
        convert_options=pa.csv.ConvertOptions(
            include_columns=[keys[j] for j in wanted], null_values=[],
            strings_can_be_null=False, column_types={k: pa.string() for k in id_keys}),
    )
    try:
        arrow = _stream_text(pa, path, options, id_keys, comment)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError, EOFError, ValueError):
        return None
    if arrow is None:
        return None
    if header:
        arrow = arrow.rename_columns([str(names[keys.index(k)]) for k in arrow.column_names])
    else:
        arrow = arrow.rename_columns([str(keys.index(k)) for k in arrow.column_names])
    table = _table(arrow, [str(n) for n in names], [str(_pos_name(names, r)) for r in refs],
                   [str(_pos_name(names, r)) for r in ids], f"{path.name}, data row",
                   f"file {path.name!r}")
    table.names = names
    table.header_line = 1 if header else None
    return table


def _stream_text(pa: Any, path: Path, options: dict, id_keys: set[str],
                 comment: str | None) -> Any:
    """The columns of a text file as a pyarrow table, read in blocks: each block's id columns
    are parsed into integers at once (canonical integers only), so that at most one block of
    their text is held; ``None`` where a block holds what the line reader treats specially (a
    comment mark, a quote), and a table of text ids where some id is not a canonical integer."""
    batches, as_text = [], False
    with open_binary(path) as raw:
        reader = pa.csv.open_csv(raw, **options)
        for batch in reader:
            arrays = []
            for key, column in zip(batch.schema.names, batch.columns, strict=True):
                if key in id_keys and not as_text and pa.types.is_string(column.type) \
                        and len(column):
                    parsed = id_array(column)  # canonical integers hold no mark
                    if parsed is not None:
                        arrays.append(pa.array(parsed))
                        continue
                    as_text = True  # text ids: read the whole file as text below
                if pa.types.is_string(column.type) and len(column) and _suspicious(
                        pa, column, comment):
                    return None
                arrays.append(column)
            if as_text:
                break
            batches.append(pa.RecordBatch.from_arrays(arrays, names=batch.schema.names))
        schema = reader.schema
    if as_text:
        del batches
        with open_binary(path) as raw:
            arrow = pa.csv.read_csv(raw, **options)
        for key in arrow.column_names:
            column = arrow.column(key)
            if pa.types.is_string(column.type) and len(column) and _suspicious(pa, column,
                                                                               comment):
                return None
        return arrow
    if not batches:
        return schema.empty_table()
    return pa.Table.from_batches(batches)


def _pos_name(names: list[Column], ref: Column) -> Column:
    p = _position(names, ref)
    return ref if p is None else names[p]


def _suspicious(pa: Any, column: Any, comment: str | None) -> bool:
    pc = pa.compute
    bom = pc.any(pc.match_substring(column, "\ufeff")).as_py()
    mark = bool(comment) and pc.any(pc.starts_with(pc.utf8_ltrim_whitespace(column),
                                                   comment)).as_py()
    return bool(bom or mark)


def _read_arrow_file(path: Path, kind: str, refs, ids) -> Table:
    pa = require_pyarrow(f"Reading {path.suffix} files")
    import pyarrow.feather
    import pyarrow.parquet  # noqa: F401 - imported here: they import pandas, slow to load
    if not path.is_file():
        raise DataError(f"Edge list file {str(path)!r} does not exist or is not a file.")
    try:
        if kind == "parquet":
            names = list(pa.parquet.read_schema(path).names)
        else:
            with pa.memory_map(str(path)) as source:
                names = list(pa.ipc.open_file(source).schema.names)
        wanted = sorted({_position(names, r) for r in refs} - {None})
        columns = [names[j] for j in wanted]
        arrow = (pa.parquet.ParquetFile(path, memory_map=True).read(columns=columns)
                 if kind == "parquet" else pa.feather.read_table(path, columns=columns))
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"Cannot read {kind} file {str(path)!r}: {exc}.") from None
    return _table(arrow, names, refs, ids, f"{path.name}, row", f"file {path.name!r}")


def read_columns(data: Any, refs: Sequence[Column], ids: Sequence[Column], sep: str | None,
                 header: bool, comment: str | None) -> Table | None:
    """The columns ``refs`` of a file or table ``data`` (``ids``: the node-id columns), or
    ``None`` where the source is better read line by line (see the module docstring)."""
    if isinstance(data, Path):
        kind = file_format(data)[0]
        if kind != "text":
            return _read_arrow_file(data, kind, refs, ids)
        if not data.is_file() or data.stat().st_size < COLUMNAR_MIN_BYTES:
            return None
        check_options(sep, comment)
        return _read_text(data, refs, ids, sep, header, comment)
    if is_arrow_source(data):
        arrow = arrow_table_of(data)
        return _table(arrow, list(arrow.column_names), refs, ids, "row", "the table")
    if type(data).__module__.startswith("pandas") and hasattr(data, "columns"):
        return _pandas(data, refs, ids)
    return None


def _pandas(frame: Any, refs, ids) -> Table:
    names = list(frame.columns)
    columns: list[np.ndarray | None] = [None] * len(names)
    id_positions = {_position(names, r) for r in ids}
    for j in sorted({_position(names, r) for r in refs} - {None}):
        series = frame.iloc[:, j]
        typed = isinstance(series.dtype, np.dtype)  # not a pandas extension (nullable) dtype
        values = series.to_numpy() if typed else None
        if values is None or values.dtype.kind not in "iufb" or (
                values.dtype.kind == "f" and j in id_positions):
            values = series.to_numpy(dtype=object)
        columns[j] = values
    return Table(names, columns, np.arange(len(frame), dtype=np.int64),
                 "DataFrame row (position)", "the DataFrame")


def line_reader_fallback_size() -> int:
    """Files up to this many bytes are re-read line by line to report a flaw by its line."""
    return 256 << 20

