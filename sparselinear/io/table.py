"""Tabular sources of an edge list read into columns: delimited text files (optionally gzip),
pandas DataFrames, mappings of columns and sequences of rows; and the check that a file's header
row is not an edge.

Every row keeps a label (``"edges.csv, line 7"`` or ``"row 3"``) for the error messages of the
edge-list reader (``sparselinear.io.edgelist``).
"""

from __future__ import annotations

import csv
import difflib
import lzma
import os
import re
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MAX_LISTED, DataError, SparseLinearTypeError, describe, listing
from .files import read_text
from .lines import LineMap

__all__ = ["NUMBER", "Table", "check_header", "distinct", "is_number", "read_table", "rows_text"]

Column = str | int
#: A decimal number as written in a text file: optional sign, digits with an optional point and
#: exponent, or ``nan`` / ``inf`` / ``infinity`` (any case). ASCII only: ``'²'`` is no number.
NUMBER = re.compile(
    r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf(?:inity)?|nan)", re.IGNORECASE
)
_BOM = "\ufeff"


def is_number(text: str) -> bool:
    """Whether ``text`` (surrounding whitespace ignored) reads as a number in a text file.

    Examples:
        >>> [is_number(t) for t in ("12", " -0.5e3 ", "+1", "NaN", "1_000", "²", "x1")]
        [True, True, True, True, False, False, False]
    """
    return NUMBER.fullmatch(text.strip()) is not None


@dataclass
class Table:
    """Columns of strings (files) or raw values, the number of each row and where they came
    from. ``header_line`` is the line of a file's header row (``None``: no header was read);
    ``any_column`` marks an empty sequence of rows, where any column position is empty.

    Rows are numbered in one of two ways: ``numbers`` holds the line number (files) or
    position (other sources) of each row; or, where it is ``None`` (sources read in blocks),
    a row is numbered by its position among the source's rows (``kept`` marks the rows that
    remain of ``rows``; ``offset`` is the position of the first), and ``lines`` maps that
    position to its line in a text file. Columns are numpy arrays, or pyarrow arrays for text
    read in blocks."""

    names: list[Column]
    columns: list[Any]
    numbers: np.ndarray | None
    unit: str  # "file.csv, line" or "row"
    origin: str
    header_line: int | None = None
    any_column: bool = False
    kept: np.ndarray | None = None  # sources read in blocks: which of the source's rows remain
    rows: int = 0  # sources read in blocks: the number of rows read
    offset: int = 0  # sources read in blocks: the source position of the first row
    lines: LineMap | None = None  # text files read in blocks: the line of each position
    filtered: bool = False  # the header check and ``where=`` were applied as it was read

    def number(self, i: int) -> int:
        """The line number or position of row ``i`` in its source."""
        if self.numbers is not None:
            return int(self.numbers[i])
        position = self.offset + int(i if self.kept is None else np.flatnonzero(self.kept)[i])
        return position if self.lines is None else self.lines.line(position)

    def label(self, i: int) -> str:
        """``"edges.csv, line 7"`` / ``"row 3"``: where row ``i`` came from."""
        return f"{self.unit} {self.number(i)}"

    @property
    def size(self) -> int:
        """The number of rows."""
        if self.numbers is not None:
            return int(self.numbers.size)
        return self.rows if self.kept is None else int(np.count_nonzero(self.kept))

    def position(self, ref: Any) -> int | None:
        """The position of column ``ref`` (a header name or a 0-based position), or ``None``."""
        return position(self.names, ref)

    def column(self, ref: Column, role: str) -> Any:
        """The values of column ``ref`` (a header name or a 0-based position)."""
        if not isinstance(ref, (str, int)) or isinstance(ref, bool):
            raise SparseLinearTypeError(
                f"'{role}' must be a column name (str) or position (int); got {describe(ref)}."
            )
        if isinstance(ref, str) and ref in self.names:
            return self._read(self.names.index(ref), ref)
        if isinstance(ref, int) and 0 <= ref < len(self.columns):
            return self._read(ref, ref)
        if isinstance(ref, int) and ref >= 0 and self.any_column:
            return np.zeros(0, dtype=object)
        close = difflib.get_close_matches(str(ref), [str(n) for n in self.names], n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise DataError(
            f"'{role}' column {ref!r} not found in {self.origin}; its columns are "
            f"{self.names}.{hint}"
        )

    def _read(self, j: int, ref: Column) -> Any:
        if self.columns[j] is None:  # pragma: no cover - the columnar readers read every ref
            raise DataError(f"Column {ref!r} of {self.origin} was not read.")
        return self.columns[j]

    def subset(self, keep: np.ndarray) -> Table:
        """The rows where ``keep`` is true."""
        columns = [None if c is None else take(c, keep) for c in self.columns]
        if self.numbers is not None:
            return Table(self.names, columns, self.numbers[keep], self.unit, self.origin,
                         self.header_line, self.any_column)
        kept = keep.copy() if self.kept is None else self.kept.copy()
        if self.kept is not None:
            kept[self.kept] = keep
        return Table(self.names, columns, None, self.unit, self.origin, self.header_line,
                     kept=kept, rows=self.rows, offset=self.offset, lines=self.lines)

    def release(self) -> None:
        """Drop the columns once read: the rows keep their labels, for messages."""
        self.columns = [None] * len(self.columns)


def position(names: Sequence[Column], ref: Any) -> int | None:
    """The position of column ``ref`` among ``names`` (a name or a 0-based position), or
    ``None`` where there is none."""
    if isinstance(ref, str) and ref in names:
        return list(names).index(ref)
    if isinstance(ref, int) and not isinstance(ref, bool) and 0 <= ref < len(names):
        return ref
    return None


def numpy_of(column: Any) -> np.ndarray:
    """A numpy or pyarrow column as a numpy array (text as objects)."""
    if isinstance(column, np.ndarray):
        return column
    return column.to_numpy(zero_copy_only=False)


def take(column: Any, keep: np.ndarray) -> Any:
    """The entries of a numpy or pyarrow column where ``keep`` is true."""
    if isinstance(column, np.ndarray):
        return column[keep]
    return column.filter(keep)


# ---------------------------------------------------------------------- text files
#: What reading a damaged file raises (a truncated or corrupt archive, a missing file).
UNREADABLE = (OSError, EOFError, zipfile.BadZipFile, lzma.LZMAError)


def unreadable(path: Path, exc: BaseException) -> DataError:
    """The error for a file that cannot be read, with what reading it raised."""
    return DataError(f"Cannot read edge list file {str(path)!r}: {exc}. Edge lists are UTF-8 "
                     "text files (optionally compressed: .gz, .bz2, .xz, .zip), Parquet "
                     "(.parquet) or Arrow/Feather (.feather, .arrow).")


def _decode(path: Path) -> str:
    """The text of the file: UTF-8, universal newlines, a byte-order mark at the start of the
    file or of any line (concatenated files) removed; NUL characters refused."""
    if not path.is_file():
        raise DataError(f"Edge list file {str(path)!r} does not exist or is not a file.")
    try:
        text = read_text(path)
    except (*UNREADABLE, UnicodeDecodeError) as exc:
        raise unreadable(path, exc) from None
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise DataError(f"{path.name}, line {line}: a NUL character; edge lists are UTF-8 text "
                        "(is it UTF-16 or binary? Save it as UTF-8 text).")
    return text.lstrip(_BOM).replace("\n" + _BOM, "\n")


def _kept_lines(text: str, comment: str | None) -> tuple[list[str], np.ndarray]:
    """The lines that are neither blank nor comments, and their 1-based line numbers."""
    lines = text.split("\n")
    numbers = [i + 1 for i, line in enumerate(lines)
               if line.strip() and not (comment and line.strip().startswith(comment))]
    return [lines[i - 1] for i in numbers], np.asarray(numbers, dtype=np.int64)


def _detect_sep(line: str) -> str | None:
    for sep in ("\t", ",", ";"):
        if sep in line:
            return sep
    return None  # runs of whitespace


def _split(lines: list[str], numbers: np.ndarray, sep: str | None, name: str) -> list[list[str]]:
    """The fields of each line; a quoted field may not run past the end of its line."""
    if sep is None:
        return [line.split() for line in lines]
    reader = csv.reader(lines, delimiter=sep, strict=True)
    rows: list[list[str]] = []
    try:
        rows.extend(reader)
    except csv.Error as exc:
        if "unexpected end of data" not in str(exc):
            raise DataError(f"{name}, line {numbers[min(reader.line_num, len(lines)) - 1]}: "
                            f"{exc}. Check the quoting.") from None
        raise _open_quote(name, numbers[_first_open_quote(lines, sep)]) from None
    if reader.line_num != len(rows):
        raise _open_quote(name, numbers[_first_open_quote(lines, sep)])
    return rows


def _first_open_quote(lines: list[str], sep: str) -> int:
    """The index of the first line whose quoted field runs past its end."""
    reader = csv.reader(lines, delimiter=sep)
    i = 0
    for i, _ in enumerate(reader):
        if reader.line_num != i + 1:
            return i
    return i


def _open_quote(name: str, line: int) -> DataError:
    return DataError(f"{name}, line {line}: a quoted field is not closed on its line. Every "
                     "edge is one line; check the quotes (\").")


def check_options(sep: Any, comment: Any) -> None:
    if sep is not None and (not isinstance(sep, str) or len(sep) != 1 or sep in "\"\r\n"):
        raise DataError(f"'sep' must be one character such as ',' or '\\t' (None: detected); "
                        f"got {sep!r}.")
    if comment is not None and (not isinstance(comment, str) or not comment.strip()):
        raise DataError(f"'comment' must be a non-blank string such as '#', or None; got "
                        f"{comment!r}.")


def _read_file(path: Path, sep: str | None, header: bool, comment: str | None) -> Table:
    check_options(sep, comment)
    lines, numbers = _kept_lines(_decode(path), comment)
    if numbers.size == 0:
        raise DataError(f"Edge list file {str(path)!r} holds no rows.")
    sep = _detect_sep(lines[0]) if sep is None else sep
    rows = _split(lines, numbers, sep, path.name)
    del lines
    names: list[Column] = list(range(len(rows[0])))
    header_line = None
    if header:
        names = [field.strip() for field in rows[0]]
        header_line, rows, numbers = int(numbers[0]), rows[1:], numbers[1:]
        if not rows:
            raise header_alone(path.name, header_line, names)
    columns = _columns(rows, numbers, len(names), header, sep, path.name)
    return Table(names, columns, numbers, f"{path.name}, line", f"file {path.name!r}",
                 header_line)


def _columns(rows: list[list[str]], numbers: np.ndarray, width: int, header: bool,
             sep: str | None, name: str) -> list[np.ndarray]:
    """The fields of ``rows`` as ``width`` object columns; a row of another width raises."""
    lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    bad = np.flatnonzero(lengths != width)
    if bad.size:
        i = int(bad[0])
        raise DataError(
            f"{name}, line {numbers[i]}: {lengths[i]} field(s) where the "
            f"{'header has' if header else 'first row has'} {width}. Check the separator "
            f"(sep={sep!r}) and quoting."
        )
    table = np.empty((len(rows), width), dtype=object)
    table[:] = rows
    del rows
    return [table[:, j] for j in range(width)]


def parse_lines(text: str, first_line: int, sep: str | None, width: int, header: bool,
                comment: str | None, name: str) -> tuple[list[np.ndarray], np.ndarray]:
    """The rows of a stretch of a text file read line by line, as the whole-file reader reads
    them: ``width`` object columns and the file line of each row (``first_line``: the line
    the stretch starts on). Blank and comment lines are skipped; a flaw raises, naming its
    line."""
    text = text.replace("\r\n", "\n").lstrip(_BOM).replace("\n" + _BOM, "\n")
    lines, numbers = _kept_lines(text, comment)
    numbers += first_line - 1
    rows = _split(lines, numbers, sep, name)
    del lines
    return _columns(rows, numbers, width, header, sep, name), numbers


def header_alone(name: str, header_line: int, names: Sequence[Any]) -> DataError:
    """The error for a file whose header row no edge follows."""
    return DataError(
        f"{name}: line {header_line} {rows_text(names)} is read as the header row and no edge "
        "follows it. If it is an edge, pass header=False (command line: --no-header)."
    )


def rows_text(fields: Sequence[Any]) -> str:
    """The fields of a row as a list for a message: ``['0', '1']``."""
    return str([str(f) for f in fields])


# ---------------------------------------------------------------------- other sources
def _read_frame(frame: Any) -> Table:
    names = list(frame.columns)
    columns = [frame[name].to_numpy(dtype=object) for name in names]
    numbers = np.arange(len(frame), dtype=np.int64)
    return Table(names, columns, numbers, "DataFrame row (position)", "the DataFrame")


def _read_mapping(data: Mapping) -> Table:
    names = list(data.keys())
    bad = next((n for n in names if isinstance(data[n], (str, bytes))
                or not isinstance(data[n], (Iterable, np.ndarray))), None)
    if bad is not None:
        raise SparseLinearTypeError(
            f"Each column of the mapping must be a sequence of values; column {bad!r} is "
            f"{describe(data[bad])}."
        )
    columns = [data[n] if isinstance(data[n], np.ndarray) and data[n].ndim == 1
               and data[n].dtype.kind in "iuf" else np.asarray([*data[n], None], dtype=object)[:-1]
               for n in names]  # typed numpy columns (ids, weights) stay typed
    lengths = {len(c) for c in columns}
    if len(lengths) > 1:
        raise DataError(
            f"The columns have different lengths: "
            f"{ {str(n): len(c) for n, c in zip(names, columns, strict=True)} }."
        )
    n = columns[0].size if columns else 0
    return Table(names, columns, np.arange(n, dtype=np.int64), "row", "the mapping")


def _read_rows(data: Sequence | np.ndarray) -> Table:
    rows = [tuple(r) if isinstance(r, (Sequence, np.ndarray)) and not isinstance(r, str) else r
            for r in data]
    bad = next((i for i, r in enumerate(rows) if not isinstance(r, tuple)), None)
    if bad is not None:
        raise SparseLinearTypeError(
            f"Each edge must be a (source, target[, weight]) tuple; row {bad} is "
            f"{describe(rows[bad])}."
        )
    width = len(rows[0]) if rows else 0
    bad = next((i for i, r in enumerate(rows) if len(r) != width), None)
    if bad is not None:
        raise DataError(f"row {bad} has {len(rows[bad])} field(s) where row 0 has {width}.")
    columns = []
    for j in range(width):
        column = np.empty(len(rows), dtype=object)
        column[:] = [r[j] for r in rows]
        columns.append(column)
    numbers = np.arange(len(rows), dtype=np.int64)
    return Table(list(range(width)), columns, numbers, "row", "the edge list", None, not rows)


def read_table(data: Any, sep: str | None, header: bool, comment: str | None) -> Table:
    """Read ``data`` (a file path, a DataFrame, a mapping of columns or a sequence of rows)
    into a ``Table``; ``sep``, ``header`` and ``comment`` apply to files."""
    if isinstance(data, (str, os.PathLike)):
        return _read_file(Path(data), sep, header, comment)
    if type(data).__module__.startswith("pandas") and hasattr(data, "columns"):
        return _read_frame(data)
    if isinstance(data, Mapping):
        return _read_mapping(data)
    if isinstance(data, (Sequence, np.ndarray)) and not isinstance(data, (bytes, str)):
        return _read_rows(data)
    raise SparseLinearTypeError(
        f"'data' must be a CSV/TSV path, a pandas DataFrame, a mapping of columns or a sequence "
        f"of (source, target[, weight]) rows; got {describe(data)}."
    )


# ---------------------------------------------------------------------- is the header an edge?
def _edge_like(table: Table, source: Any, target: Any, weight: Any) -> str | None:
    """Why the header row reads as an edge (``None``: it does not), for columns chosen by
    position: all its fields are numbers, its weight field is a number, or its source/target
    field names a node of the edges below it."""
    names = [str(n) for n in table.names]
    if all(is_number(n) for n in names):
        return "holds only numbers"
    if isinstance(weight, int) and 0 <= weight < len(names) and is_number(names[weight]):
        return f"has the number {names[weight]!r} in the weight column {weight}"
    ends = [0 if source is None else source, 1 if target is None else target]
    positions = [p for p in ends if isinstance(p, int) and 0 <= p < len(names)]
    nodes = [np.char.strip(numpy_of(table.columns[p]).astype(str)) for p in positions]
    for p in positions:
        found = [np.flatnonzero(column == names[p]) for column in nodes]
        first = min((int(f[0]) for f in found if f.size), default=None)
        if first is not None:
            return f"names node {names[p]!r}, a node of the edge on line {table.number(first)}"
    return None


def check_header(table: Table, source: Any, target: Any, weight: Any, where: Any) -> None:
    """Refuse a file's header row that reads as an edge, unless a column was selected by one
    of its names (which proves it a header): no row may vanish into the header silently."""
    if table.header_line is None:
        return
    refs = [source, target, weight, *(where.keys() if isinstance(where, Mapping) else ())]
    if any(isinstance(r, str) and r in table.names for r in refs):
        return
    reason = _edge_like(table, source, target, weight)
    if reason is not None:
        unit = table.unit.rsplit(",", 1)[0]
        raise DataError(
            f"{unit}, line {table.header_line}: the header row {rows_text(table.names)} "
            f"{reason}: it looks like an edge, not column names, and reading it as the header "
            "would drop it. Pass header=False (command line: --no-header) for a file without a "
            "header row, or select the columns by their header names (e.g. "
            f"source={str(table.names[0])!r}) if it is one."
        )


def distinct(values: np.ndarray) -> str:
    """The distinct values of a column, for a message: ``"2 distinct values: 'a', 'b'"``."""
    uniq = np.unique(values) if values.size else values
    shown = listing((repr(str(v)) for v in uniq[:MAX_LISTED]), total=uniq.size)
    return f"{uniq.size} distinct value(s): {shown}"
