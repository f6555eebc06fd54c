"""Delimited text files (plain or compressed) read in blocks of whole lines, each parsed by
pyarrow on several threads, filtered and reduced as it is read (``sparselinear.io.stream``),
while the next block is decompressed on a thread of its own.

Every block knows the file line it starts on, and which of its lines hold no row (blank lines,
comments), so a row is always named by its file line, in a file of any size. A block pyarrow
refuses (a row of another width, a quote left open) is read by the line reader, which names the
flaw by its line. Where a file must be read as a whole by the line reader (lines broken by a
lone carriage return, runs of whitespace as the separator, a header it cannot use),
``read_text_blocks`` gives ``None``.
"""

from __future__ import annotations

import csv
import threading
from collections.abc import Iterator
from pathlib import Path
from queue import Empty, Queue
from typing import IO, Any

import numpy as np

from ..errors import DataError
from .files import file_format, open_binary, pyarrow_or_none
from .lines import LineMap
from .stream import Blocks, Selection
from .table import (
    UNREADABLE,
    Column,
    Table,
    header_alone,
    parse_lines,
    position,
    unreadable,
)

__all__ = ["BLOCK_BYTES", "read_text_blocks"]

#: Decompressed bytes read per block; the kept rows of a block are all that stays of it.
BLOCK_BYTES = 1 << 22
_BOM = b"\xef\xbb\xbf"
_ARROW_COMPRESSION = {".gz": "gzip", ".bz2": "bz2"}
Piece = tuple[bytes, int, int]  # whole lines, the line they start on, how many there are


class _NeedsLineReaderError(Exception):
    """The file must be read as a whole by the line reader."""


def _open(path: Path) -> IO[bytes]:
    """The decompressed bytes of ``path`` (pyarrow decompresses gzip and bzip2 natively)."""
    pa = pyarrow_or_none()
    compression = file_format(path)[1]
    if compression in _ARROW_COMPRESSION:
        return pa.input_stream(str(path), compression=_ARROW_COMPRESSION[compression])
    return open_binary(path)


def _pieces(stream: IO[bytes], size: int, name: str) -> Iterator[Piece]:
    """Pieces of about ``size`` bytes ending at a line end, each with the line it starts on
    and how many lines it holds."""
    tail, line = b"", 1
    while True:
        data = stream.read(size)
        if not data:
            if tail:
                yield _checked(tail, line, name), line, tail.count(b"\n") + 1
            return
        data = tail + data if tail else data
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            tail = data
            continue
        piece, tail = (data[:cut], data[cut:]) if cut < len(data) else (data, b"")
        lines = piece.count(b"\n")
        yield _checked(piece, line, name), line, lines
        line += lines


def _checked(piece: bytes, line: int, name: str) -> bytes:
    """``piece``, refused where it holds a NUL character or a lone carriage return."""
    if b"\x00" in piece:
        at = line + piece.count(b"\n", 0, piece.index(b"\x00"))
        raise DataError(f"{name}, line {at}: a NUL character; edge lists are UTF-8 text (is it "
                        "UTF-16 or binary? Save it as UTF-8 text).")
    if b"\r" in piece and piece.count(b"\r") != piece.count(b"\r\n"):
        raise _NeedsLineReaderError  # a lone carriage return ends a line for the line reader
    return piece


def _ahead(items: Iterator[Any], depth: int = 2) -> Iterator[Any]:
    """The items of ``items``, each made on a thread while the one before is used (a file is
    decompressed while the block before it is parsed); an error there is raised here."""
    queue: Queue = Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                queue.put((True, item))
            queue.put((False, None))
        except BaseException as exc:  # handed to the reading thread
            queue.put((False, exc))

    thread = threading.Thread(target=produce, name="sparselinear-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            more, item = queue.get()
            if not more:
                if item is not None:
                    raise item
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # let it finish before its stream is closed
            try:
                queue.get(timeout=0.01)
            except Empty:
                pass
        thread.join()


def _decoded(data: bytes, line: int, name: str) -> str:
    """``data`` as text; bytes that are not UTF-8 raise, naming their line."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        at = line + data.count(b"\n", 0, exc.start)
        raise DataError(f"{name}, line {at}: bytes that are not UTF-8 text ({exc.reason}). "
                        "Edge lists are UTF-8 text; save the file as UTF-8.") from None


def _first_row(pieces: Iterator[Piece], comment: str | None,
               name: str) -> tuple[bytes, int, int, str] | None:
    """The first line that is neither blank nor a comment: ``(piece, start, line, text)``, the
    piece it lies in, where it starts there, its line number and text (``None``: no such line)."""
    for piece, line, _ in pieces:
        start = 3 if line == 1 and piece.startswith(_BOM) else 0
        while start < len(piece):
            end = piece.find(b"\n", start)
            end = len(piece) if end < 0 else end + 1
            text = _decoded(piece[start:end], line, name).rstrip("\n").rstrip("\r")
            text = text.lstrip("\ufeff") if line == 1 else text.removeprefix("\ufeff")
            stripped = text.strip()
            if stripped and not (comment and stripped.startswith(comment)):
                return piece, start, line, text
            start, line = end, line + 1
    return None


def read_text_blocks(path: Path, selection: Selection, sep: str | None, header: bool,
                     comment: str | None) -> Table | None:
    """The rows of a delimited text file that ``selection`` keeps, read in blocks of
    ``BLOCK_BYTES``; ``None`` where the line reader must read it (see the module)."""
    pa = pyarrow_or_none()
    if pa is None:  # pragma: no cover - depends on the environment
        return None
    try:
        with _open(path) as stream:
            pieces = _ahead(_pieces(stream, BLOCK_BYTES, path.name))
            try:
                return _read(pa, path, pieces, selection, sep, header, comment)
            finally:
                pieces.close()  # the thread reading ahead stops before its stream is closed
    except _NeedsLineReaderError:
        return None
    except UNREADABLE as exc:
        raise unreadable(path, exc) from None


def _read(pa: Any, path: Path, pieces: Iterator[Piece], selection: Selection,
          sep: str | None, header: bool, comment: str | None) -> Table | None:
    first = _first_row(pieces, comment, path.name)
    if first is None:
        return None  # no row at all: the line reader says so
    piece, start, line, text = first
    sep = next((s for s in ("\t", ",", ";") if s in text), None) if sep is None else sep
    if sep is None:
        return None  # runs of whitespace: the line reader splits them
    try:
        fields = next(csv.reader([text], delimiter=sep, strict=True), [])
    except csv.Error:
        return None  # the line reader names the flaw
    names: list[Column] = [f.strip() for f in fields] if header else list(range(len(fields)))
    if header and (len(set(names)) != len(names) or any(not n for n in names)):
        return None
    header_line = line if header else None
    if header:
        end = piece.find(b"\n", start)
        start, line = (len(piece) if end < 0 else end + 1), line + 1
    rest = piece[start:]
    parser = _Parser(pa, path.name, names, selection, sep, header, comment, header_line)
    blocks = Blocks(selection, names, f"{path.name}, line", f"file {path.name!r}", header_line)
    skipped: list[np.ndarray] = []
    first_line = line
    head = (rest, line, rest.count(b"\n") + (not rest.endswith(b"\n"))) if rest else None
    for data, at, lines in _chain(head, pieces):
        block, lines_skipped = parser.parse(data, at, lines)
        skipped.append(lines_skipped)
        if block.size:
            blocks.add(block)
    if not blocks.rows:
        if header_line is not None:
            raise header_alone(path.name, header_line, names)
        return None  # pragma: no cover - without a header the first row is a row
    return blocks.table(LineMap.join(first_line, skipped))


def _chain(first: Piece | None, rest: Iterator[Piece]) -> Iterator[Piece]:
    if first is not None:
        yield first
    yield from rest


class _Parser:
    """Blocks of whole lines of one file into tables of its wanted columns: numbers as numpy
    arrays, text (node ids included) as pyarrow arrays."""

    def __init__(self, pa: Any, name: str, names: list[Column], selection: Selection,
                 sep: str, header: bool, comment: str | None, header_line: int | None) -> None:
        self.pa, self.name, self.names, self.sep = pa, name, names, sep
        self.header, self.comment, self.header_line = header, comment, header_line
        self.keys = [f"f{j}" for j in range(len(names))]
        self.wanted = sorted({position(names, r) for r in selection.refs} - {None})
        self.ids = {position(names, r) for r in selection.ids} - {None}
        self.text = {self.keys[j] for j in self.ids}  # columns read as text, not inferred
        self.mark = comment.encode() if comment else None

    def parse(self, data: bytes, first_line: int, lines: int) -> tuple[Table, np.ndarray]:
        """The rows of ``data`` (``lines`` whole lines from ``first_line`` on) and the lines
        that hold none."""
        if not data.isascii():
            _decoded(data, first_line, self.name)  # UTF-8, or the line of the first flaw
            if _BOM in data:
                data = data.removeprefix(_BOM).replace(b"\n" + _BOM, b"\n")
        skipped, cleaned = np.zeros(0, dtype=np.int64), False
        if self.mark is not None and self.mark in data:  # a comment line may parse as a row
            (data, skipped), cleaned = self._blank_skipped(data, first_line), True
        arrow = self._arrow(data)
        if (arrow is None or arrow.num_rows != lines - skipped.size) and not cleaned:
            data, skipped = self._blank_skipped(data, first_line)  # blank lines, say
            arrow = self._arrow(data)
        if arrow is None or arrow.num_rows != lines - skipped.size:
            return self._by_lines(data, first_line, lines)
        columns: list[Any] = [None] * len(self.names)
        for key in arrow.column_names:
            column = arrow.column(key)
            columns[self.keys.index(key)] = (
                column if self.pa.types.is_string(column.type) else column.to_numpy())
        table = Table(self.names, columns, None, f"{self.name}, line", f"file {self.name!r}",
                      self.header_line, rows=arrow.num_rows, lines=LineMap(first_line, skipped))
        return table, skipped

    def _blank_skipped(self, data: bytes, first_line: int) -> tuple[bytes, np.ndarray]:
        """``data`` with its blank and comment lines emptied (pyarrow skips empty lines), and
        their line numbers."""
        lines = data.decode("utf-8").split("\n")
        if lines[-1] == "":
            lines.pop()
        skip = [i for i, line in enumerate(lines) if not line.strip()
                or (self.comment and line.strip().startswith(self.comment))]
        if not skip:
            return data, np.zeros(0, dtype=np.int64)
        for i in skip:
            lines[i] = ""
        return ("\n".join(lines) + "\n").encode(), np.asarray(skip, dtype=np.int64) + first_line

    def _arrow(self, data: bytes) -> Any:
        """``data`` parsed by pyarrow (``None`` where it refuses it); a column inferred as
        anything but numbers or text (a date, say) is read again as text, as the line reader
        reads it."""
        pa, csv_ = self.pa, self.pa.csv
        while True:
            try:
                arrow = csv_.read_csv(
                    pa.py_buffer(data),
                    read_options=csv_.ReadOptions(column_names=self.keys, use_threads=True),
                    parse_options=csv_.ParseOptions(delimiter=self.sep,
                                                    newlines_in_values=False),
                    convert_options=csv_.ConvertOptions(
                        include_columns=[self.keys[j] for j in self.wanted], null_values=[],
                        strings_can_be_null=False, true_values=[], false_values=[],
                        column_types={k: pa.string() for k in self.text}),
                )
            except pa.ArrowInvalid:
                return None
            odd = {f.name for f in arrow.schema if not (
                pa.types.is_integer(f.type) or pa.types.is_floating(f.type)
                or pa.types.is_string(f.type))} - self.text
            if not odd:
                return arrow
            self.text |= odd

    def _by_lines(self, data: bytes, first_line: int, lines: int) -> tuple[Table, np.ndarray]:
        """The rows of ``data`` read by the line reader, which names any flaw by its line."""
        columns, numbers = parse_lines(data.decode("utf-8"), first_line, self.sep,
                                       len(self.names), self.header, self.comment, self.name)
        kept: list[Any] = [None] * len(self.names)
        for j in self.wanted:
            kept[j] = (self.pa.array(columns[j], type=self.pa.string()) if j in self.ids
                       else columns[j])
        skipped = np.setdiff1d(np.arange(first_line, first_line + lines, dtype=np.int64),
                               numbers)
        table = Table(self.names, kept, None, f"{self.name}, line", f"file {self.name!r}",
                      self.header_line, rows=numbers.size, lines=LineMap(first_line, skipped))
        return table, skipped
