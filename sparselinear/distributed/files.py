"""Row sources on files: each rank reads only the byte ranges or table rows of its own rows.

* [`CSRFile`][sparselinear.distributed.CSRFile] — a CSR ``.npz`` (as written by
  ``scipy.sparse.save_npz``, or with the keys ``crow_indices``, ``col_indices`` and optionally
  ``values``) or a directory of ``.npy`` files of those names. ``.npy`` files and uncompressed
  ``.npz`` members are memory-mapped; compressed members are streamed up to the rows needed.
* [`ParquetEdges`][sparselinear.distributed.ParquetEdges] — an edge table with integer
  ``source``/``target`` columns, read with a row filter on the target (pyarrow, the ``tables``
  extra).

Rows are outputs: a file's rows must be targets (postsynaptic neurons). The row pointers
(``out_features + 1`` integers) are read whole on every rank — they decide the partition — but
the input indices and values only for the rank's own rows.
"""

from __future__ import annotations

import hashlib
import os
import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, MissingDependencyError, PatternError, ShapeError, check_choice
from ..pattern.sources import check_shape
from .sources import RowBlock, RowSource

__all__ = ["CSRFile", "ParquetEdges"]

_CRow, _Col, _Values = ("crow_indices", "indptr"), ("col_indices", "indices"), ("values", "data")


class _Member:
    """One 1-D array of an ``.npz`` archive, read by element range without loading the rest."""

    def __init__(self, path: Path, archive: zipfile.ZipFile, name: str) -> None:
        self.path, self.archive, self.name = path, archive, name
        info = archive.getinfo(name)
        with archive.open(name) as f:
            version = np.lib.format.read_magic(f)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, _, dtype = read_header(f)
            self.header = f.tell()
        if len(shape) != 1:
            raise DataError(f"'{name}' in {path} must be 1-D; it has shape {shape}.")
        self.size, self.dtype = int(shape[0]), dtype
        self.mapped = None
        if info.compress_type == zipfile.ZIP_STORED:
            with open(path, "rb") as fh:  # the local header's lengths locate the member's bytes
                fh.seek(info.header_offset)
                n, m = struct.unpack("<HH", fh.read(30)[26:30])
            offset = info.header_offset + 30 + n + m + self.header
            self.mapped = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)

    def read(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        stop = self.size if stop is None else stop
        if self.mapped is not None:
            return np.asarray(self.mapped[start:stop])
        with self.archive.open(self.name) as f:  # compressed: decompressed up to `start` only
            f.seek(self.header + start * self.dtype.itemsize)
            data = f.read((stop - start) * self.dtype.itemsize)
        return np.frombuffer(data, dtype=self.dtype).copy()


def _pick(names: set[str], keys: tuple[str, ...], path: Path, required: bool = True):
    for key in keys:
        if key in names:
            return key
    if required:
        raise DataError(
            f"{path} holds {sorted(names)}; a CSR file needs one of {list(keys)} (scipy's "
            "`save_npz` names, or crow_indices/col_indices/values)."
        )
    return None


class CSRFile(RowSource):
    """A CSR pattern on disk whose rows are the layer's outputs.

    Args:
        path: an ``.npz`` file, or a directory holding ``crow_indices.npy``,
            ``col_indices.npy`` and optionally ``values.npy``.
        orientation: must be ``"target_source"``: rows are outputs (targets), as in
            ``nn.Linear.weight``. A ``"source_target"`` file cannot be read by rows of
            outputs; transpose it once, e.g.
            ``scipy.sparse.save_npz(out, scipy.sparse.load_npz(path).T.tocsr())``.
        shape: ``(out_features, in_features)``; read from a scipy ``.npz``, required otherwise.
        use_values: read the stored values as initial weights. Default: ``False``.

    Examples:
        >>> import scipy.sparse, tempfile, os
        >>> adj = scipy.sparse.random(50, 40, density=0.1, format="csr", random_state=0)
        >>> path = os.path.join(tempfile.mkdtemp(), "w.npz")
        >>> scipy.sparse.save_npz(path, adj, compressed=False)
        >>> src = CSRFile(path, orientation="target_source")
        >>> src.shape, src.nnz, src.read(10, 20).col.size == adj[10:20].nnz
        ((50, 40), 200, True)
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        orientation: str,
        shape: Any = None,
        use_values: bool = False,
    ) -> None:
        check_choice(orientation, ("target_source", "source_target"), "orientation")
        self.path = Path(path)
        if orientation != "target_source":
            raise PatternError(
                f"{self.path} is (source, target): its rows are inputs, but each rank reads "
                "rows of outputs. Transpose it once, e.g. `scipy.sparse.save_npz(out, "
                "scipy.sparse.load_npz(path).T.tocsr())`, and pass "
                "orientation='target_source'."
            )
        self._shape_arg, self.use_values = shape, bool(use_values)
        self._opened = False

    def _open(self) -> None:
        """Read the row pointers and locate the other arrays (on first use: inside the layer's
        construction, so a rank that cannot read the file raises on every rank)."""
        if self._opened:
            return
        shape = self._shape_arg
        if self.path.is_dir():
            arrays = {p.stem: p for p in self.path.glob("*.npy")}
            crow_key, col_key = _pick(set(arrays), _CRow, self.path), _pick(set(arrays), _Col,
                                                                                self.path)
            val_key = _pick(set(arrays), _Values, self.path, required=False)
            self._crow_arr = np.load(arrays[crow_key], mmap_mode="r")
            self._col_arr = np.load(arrays[col_key], mmap_mode="r")
            self._val_arr = np.load(arrays[val_key], mmap_mode="r") if val_key else None
            stored_shape = None
        elif self.path.is_file():
            archive = zipfile.ZipFile(self.path)
            names = {n.removesuffix(".npy") for n in archive.namelist()}
            if "format" in names:
                fmt = np.load(self.path, allow_pickle=False)["format"].item()
                fmt = fmt.decode() if isinstance(fmt, bytes) else str(fmt)
                if fmt != "csr":
                    raise DataError(
                        f"{self.path} holds a '{fmt}' matrix; row-sharded reading needs CSR. "
                        "Convert it once: `scipy.sparse.save_npz(path, matrix.tocsr())`."
                    )
            stored_shape = (
                tuple(int(v) for v in np.load(self.path)["shape"]) if "shape" in names else None
            )
            member = lambda key: _Member(self.path, archive, key + ".npy")  # noqa: E731
            self._crow_arr = member(_pick(names, _CRow, self.path)).read()
            self._col_arr = member(_pick(names, _Col, self.path))
            val_key = _pick(names, _Values, self.path, required=False)
            self._val_arr = member(val_key) if val_key else None
        else:
            raise DataError(f"No such file or directory: {self.path}.")
        if shape is None and stored_shape is None:
            raise ShapeError(f"{self.path} does not store its shape; pass shape=(out, in).")
        self._shape = check_shape(shape if shape is not None else stored_shape)
        self._crow = np.asarray(self._crow_arr, dtype=np.int64)
        col_size = self._col_arr.size
        if self._crow.size != self._shape[0] + 1 or self._crow[0] != 0 or \
                self._crow[-1] != col_size or (np.diff(self._crow) < 0).any():
            raise PatternError(
                f"{self.path}: the row pointers must have out_features + 1 = {self._shape[0] + 1} "
                f"entries, start at 0, never decrease and end at the number of column indices "
                f"({col_size}); got {self._crow.size} entries ending at {int(self._crow[-1])}."
            )
        self._nnz = int(col_size)
        self._opened = True

    @property
    def shape(self) -> tuple[int, int]:  # type: ignore[override]
        self._open()
        return self._shape

    @property
    def nnz(self) -> int:  # type: ignore[override]
        self._open()
        return self._nnz

    def boundaries(self) -> tuple[np.ndarray, np.ndarray]:
        self._open()
        return np.arange(self.shape[0] + 1, dtype=np.int64), self._crow

    def _slice(self, arr: Any, e0: int, e1: int) -> np.ndarray:
        return arr.read(e0, e1) if isinstance(arr, _Member) else np.asarray(arr[e0:e1])

    def read(self, start: int, stop: int) -> RowBlock:
        self._open()
        e0, e1 = int(self._crow[start]), int(self._crow[stop])
        col = self._slice(self._col_arr, e0, e1).astype(np.int64)
        if col.size and (col.min() < 0 or col.max() >= self.shape[1]):
            raise PatternError(
                f"{self.path}: rows {start}..{stop - 1} hold input index "
                f"{int(col.min() if col.min() < 0 else col.max())}, outside [0, {self.shape[1]})."
            )
        values = None
        if self.use_values:
            if self._val_arr is None:
                raise DataError(f"{self.path} holds no values; pass use_values=False.")
            values = self._slice(self._val_arr, e0, e1)
        return RowBlock(self._crow[start:stop + 1] - e0, col, values)

    def fingerprint(self) -> str:
        self._open()
        h = hashlib.sha256(f"csr:{self.shape}:{self.nnz}:".encode())
        h.update(self._crow.tobytes())
        return h.hexdigest()


class ParquetEdges(RowSource):
    """An edge table in Parquet, one row per edge, read by row filter on the target column.

    Args:
        path: a Parquet file or dataset directory.
        source: name of the integer input index column.
        target: name of the integer output index column.
        shape: ``(out_features, in_features)``.
        weight: optional name of a column of initial weights.

    Each rank reads the ``target`` column once in batches to count edges per output (memory
    ``out_features`` integers), then only the table rows whose target lies in its range.

    Examples:
        >>> import pyarrow as pa, pyarrow.parquet as pq, tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "edges.parquet")
        >>> pq.write_table(pa.table({"pre": [0, 2, 1], "post": [1, 1, 0]}), path)
        >>> src = ParquetEdges(path, source="pre", target="post", shape=(2, 3))
        >>> src.read(1, 2).col.tolist()             # inputs of output 1
        [0, 2]
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        source: str,
        target: str,
        shape: Any,
        weight: str | None = None,
    ) -> None:
        self.path, self.source, self.target, self.weight = Path(path), source, target, weight
        self.shape = check_shape(shape)
        self._crow: np.ndarray | None = None

    def _open(self) -> np.ndarray:
        """Count the edges of each output (on first use: inside the layer's construction, so a
        rank that cannot read the table raises on every rank)."""
        if self._crow is not None:
            return self._crow
        try:
            import pyarrow.dataset as ds
        except ImportError as exc:
            raise MissingDependencyError(
                "Reading Parquet edge tables needs pyarrow: `pip install pyarrow` (or the "
                "`tables` extra)."
            ) from exc
        if not self.path.exists():
            raise DataError(f"No such file or directory: {self.path}.")
        source, target, weight = self.source, self.target, self.weight
        self._dataset = ds.dataset(self.path, format="parquet")
        names = set(self._dataset.schema.names)
        missing = [c for c in (source, target, weight) if c is not None and c not in names]
        if missing:
            raise DataError(f"{self.path} has columns {sorted(names)}; missing {missing}.")
        counts = np.zeros(self.shape[0], dtype=np.int64)
        for batch in self._dataset.to_batches(columns=[target]):
            t = batch.column(0).to_numpy(zero_copy_only=False).astype(np.int64)
            self._check_range(t, self.shape[0], target)
            counts += np.bincount(t, minlength=self.shape[0])
        crow = np.zeros(self.shape[0] + 1, dtype=np.int64)
        np.cumsum(counts, out=crow[1:])
        self._crow = crow
        return crow

    @property
    def nnz(self) -> int:  # type: ignore[override]
        return int(self._open()[-1])

    def _check_range(self, v: np.ndarray, bound: int, column: str) -> None:
        if v.size and (v.min() < 0 or v.max() >= bound):
            bad = int(v.min() if v.min() < 0 else v.max())
            raise PatternError(
                f"{self.path}: column '{column}' holds index {bad}, outside [0, {bound}). "
                "Columns hold integer indices counted from 0; map names to indices first."
            )

    def boundaries(self) -> tuple[np.ndarray, np.ndarray]:
        return np.arange(self.shape[0] + 1, dtype=np.int64), self._open()

    def read(self, start: int, stop: int) -> RowBlock:
        import pyarrow.dataset as ds

        self._open()
        columns = [self.target, self.source] + ([self.weight] if self.weight else [])
        where = (ds.field(self.target) >= start) & (ds.field(self.target) < stop)
        table = self._dataset.to_table(columns=columns, filter=where)
        arrays = [c.to_numpy() for c in table.columns]
        rows, cols = arrays[0].astype(np.int64), arrays[1].astype(np.int64)
        self._check_range(cols, self.shape[1], self.source)
        order = np.lexsort((cols, rows))
        crow = np.zeros(stop - start + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows - start, minlength=stop - start), out=crow[1:])
        values = arrays[2][order] if self.weight else None
        return RowBlock(crow, cols[order], values)

    def fingerprint(self) -> str:
        h = hashlib.sha256(f"parquet:{self.shape}:{self.nnz}:".encode())
        h.update(self._open().tobytes())
        return h.hexdigest()
