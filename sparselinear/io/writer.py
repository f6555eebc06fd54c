"""Writing an edge list to a file with its original node ids, streaming in chunks: CSV/TSV
(optionally ``.gz``/``.bz2``/``.xz``) or Parquet, never a Python object per edge."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DataError, describe
from .files import COMPRESSIONS, file_format, require_pyarrow

__all__ = ["write_edges"]

CHUNK = 1 << 20


def _side(index: np.ndarray, names: Any) -> np.ndarray:
    if names is None:
        return index
    if isinstance(names, np.ndarray):
        return names[index]
    return np.asarray(names, dtype=object)[index]


def write_edges(
    path: str | os.PathLike, rows: torch.Tensor, cols: torch.Tensor, out_names: Any,
    in_names: Any, values: torch.Tensor | None = None, *, source: str = "source",
    target: str = "target", weight: str = "weight", chunk: int = CHUNK,
) -> Path:
    """Write edges ``cols[k] -> rows[k]`` to ``path`` as ``source, target[, weight]`` columns,
    ``chunk`` edges at a time (``.parquet`` needs pyarrow; CSV/TSV does not).

    Examples:
        >>> import tempfile, torch
        >>> from pathlib import Path
        >>> path = Path(tempfile.mkdtemp()) / "edges.csv"
        >>> _ = write_edges(path, torch.tensor([1]), torch.tensor([0]), None, ("a", "b"),
        ...                 torch.tensor([0.5]))
        >>> print(path.read_text(), end="")
        source,target,weight
        a,1,0.5
    """
    path = Path(path)
    rows_np, cols_np = rows.cpu().numpy(), cols.cpu().numpy()
    w = None
    if values is not None:
        if not isinstance(values, torch.Tensor) or values.shape != (rows_np.size,):
            raise DataError(f"'values' must be a tensor of shape ({rows_np.size},), one per "
                            f"edge; got {describe(values)}.")
        w = values.detach().cpu().numpy()
    kind, compression = file_format(path)
    header = [source, target] + ([weight] if w is not None else [])
    if kind == "parquet":
        _parquet(path, rows_np, cols_np, out_names, in_names, w, header, chunk)
        return path
    if kind == "feather" or compression == ".zip":
        raise DataError(f"write_edges writes .csv/.tsv (optionally .gz, .bz2, .xz) or .parquet; "
                        f"got {path.name!r}.")
    sep = "\t" if path.name.lower().removesuffix(compression or "").endswith(".tsv") else ","
    opener = COMPRESSIONS.get(compression, open)
    with opener(path, "wt", newline="", encoding="utf-8") as f:
        f.write(sep.join(header) + "\n")
        for start in range(0, rows_np.size, chunk):
            part = slice(start, start + chunk)
            columns = [_side(cols_np[part], in_names), _side(rows_np[part], out_names)]
            if w is not None:
                columns.append(w[part])
            text = [c.astype(str) if c.dtype != object else np.asarray(
                [_quote(v, sep) for v in c], dtype=str) for c in columns]
            lines = text[0]
            for column in text[1:]:
                lines = np.char.add(np.char.add(lines, sep), column)
            f.write("\n".join(lines.tolist()) + ("\n" if lines.size else ""))
    return path


def _quote(value: Any, sep: str) -> str:
    text = str(value)
    if any(c in text for c in (sep, '"', "\n", "\r")) or text != text.strip():
        return '"' + text.replace('"', '""') + '"'
    return text


def _parquet(path, rows, cols, out_names, in_names, w, header, chunk) -> None:
    pa = require_pyarrow("Writing Parquet")
    import pyarrow.parquet  # noqa: F401
    writer = None
    try:
        for start in range(0, max(rows.size, 1), chunk):
            part = slice(start, start + chunk)
            columns = [_side(cols[part], in_names), _side(rows[part], out_names)]
            if w is not None:
                columns.append(w[part])
            arrays = [pa.array(c.tolist() if c.dtype == object else c) for c in columns]
            batch = pa.table(dict(zip(header, arrays)))
            if writer is None:
                writer = pa.parquet.ParquetWriter(str(path), batch.schema)
            writer.write_table(batch)
    finally:
        if writer is not None:
            writer.close()
