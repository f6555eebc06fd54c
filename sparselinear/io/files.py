"""File formats of tabular sources, named by their suffix: delimited text (optionally
compressed), Parquet and Arrow IPC/Feather; and the optional pyarrow dependency that reads them
column by column."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import zipfile
from pathlib import Path
from typing import IO, Any

from ..errors import DataError, MissingDependencyError

__all__ = [
    "COMPRESSIONS",
    "FEATHER",
    "PARQUET",
    "TEXT",
    "file_format",
    "open_binary",
    "pyarrow_or_none",
    "require_pyarrow",
]

#: Text tables: one row per line (``.csv``, ``.tsv``, ``.txt``, ``.edges``), optionally compressed.
TEXT = (".csv", ".tsv", ".txt", ".edges")
COMPRESSIONS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
PARQUET = (".parquet", ".pq")
FEATHER = (".feather", ".arrow", ".ipc")
INSTALL = "pip install 'torch-sparselinear[tables]'"


def file_format(path: Path) -> tuple[str, str | None]:
    """``(kind, compression)``: kind ``"text"``, ``"parquet"`` or ``"feather"``; compression
    the suffix (``".gz"``, ``".bz2"``, ``".xz"``, ``".zip"``) or ``None``."""
    suffixes = [s.lower() for s in path.suffixes[-2:]]
    compression = suffixes[-1] if suffixes and suffixes[-1] in (*COMPRESSIONS, ".zip") else None
    inner = suffixes[-2] if compression and len(suffixes) == 2 else (
        suffixes[-1] if suffixes and not compression else "")
    if inner in PARQUET and not compression:
        return "parquet", None
    if inner in FEATHER and not compression:
        return "feather", None
    return "text", compression


def open_binary(path: Path) -> IO[bytes]:
    """``path`` opened for reading bytes, decompressed by its suffix (a ``.zip`` must hold
    exactly one file)."""
    compression = file_format(path)[1]
    if compression == ".zip":
        archive = zipfile.ZipFile(path)
        members = [m for m in archive.namelist() if not m.endswith("/")]
        if len(members) != 1:
            archive.close()
            raise DataError(f"Zip file {str(path)!r} must hold exactly one table; it holds "
                            f"{len(members)} files.")
        return archive.open(members[0])
    if compression is not None:
        return COMPRESSIONS[compression](path, "rb")
    return open(path, "rb")


def read_text(path: Path) -> str:
    """The whole file as text (UTF-8, BOM kept for the caller, universal newlines)."""
    with open_binary(path) as raw, io.TextIOWrapper(raw, encoding="utf-8-sig",
                                                     newline=None) as f:
        return f.read()


def pyarrow_or_none() -> Any:
    """The ``pyarrow`` module (with ``compute`` and ``csv``; ``parquet`` and ``feather``, which
    import pandas, are imported where they are used), or ``None`` where it is not installed."""
    try:
        import pyarrow
        import pyarrow.compute
        import pyarrow.csv
    except ImportError:  # pragma: no cover - depends on the environment
        return None
    return pyarrow


def require_pyarrow(what: str) -> Any:
    """The ``pyarrow`` module; a
    [`MissingDependencyError`][sparselinear.errors.MissingDependencyError] naming ``what`` needs it
    and the install command where it is missing."""
    pa = pyarrow_or_none()
    if pa is None:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(f"{what} needs pyarrow, an optional dependency: `{INSTALL}`.")
    return pa
