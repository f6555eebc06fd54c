"""Which reader a pattern file needs, from its name, and the reading of scipy matrix files.

Edge lists (``EDGE_LIST_SUFFIXES``) are read by [`read_edges`][sparselinear.io.read_edges]
(``Connectivity.from_edgelist``); scipy sparse ``.npz`` and Matrix Market ``.mtx`` files by
[`read_matrix`][sparselinear.io.read_matrix], whose matrix ``scipy_coordinates`` turns
into coordinates.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import DataError

if TYPE_CHECKING:
    import scipy.sparse

__all__ = ["EDGE_LIST_SUFFIXES", "MATRIX_SUFFIXES", "adjacency_kind", "read_matrix"]

#: Edge lists: one ``source, target[, ...]`` row per edge; text ones may also be compressed
#: (``.gz``, ``.bz2``, ``.xz``, ``.zip``); Parquet and Arrow/Feather tables need pyarrow.
EDGE_LIST_SUFFIXES = (".csv", ".tsv", ".txt", ".edges", ".parquet", ".pq", ".feather", ".arrow")
_COMPRESSED = (".gz", ".bz2", ".xz", ".zip")
#: scipy sparse matrices (``scipy.sparse.save_npz``) and Matrix Market files (also ``.mtx.gz``).
MATRIX_SUFFIXES = (".npz", ".mtx")


def _suffix(path: Path) -> str:
    """The kind suffix of ``path`` (``.csv`` for ``a.csv.gz``), lower-case; ``.gz`` only where
    the reader decompresses it."""
    name = path.name.lower()
    outer = os.path.splitext(name)[1]
    if outer in _COMPRESSED:
        inner = os.path.splitext(name[: -len(outer)])[1]
        if inner == ".mtx" and outer == ".gz":
            return inner
        return inner if inner in EDGE_LIST_SUFFIXES[:4] else outer
    return path.suffix.lower()


def adjacency_kind(path: str | os.PathLike) -> str:
    """``"edgelist"`` or ``"matrix"``: the reader the file at ``path`` needs, from its name.

    Raises:
        DataError: the file does not exist, or its kind is unknown.

    Examples:
        >>> from sparselinear.datasets import celegans_path
        >>> adjacency_kind(celegans_path())
        'edgelist'
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Cannot read '{path}': no such file.")
    suffix = _suffix(path)
    if suffix in EDGE_LIST_SUFFIXES:
        return "edgelist"
    if suffix in MATRIX_SUFFIXES:
        return "matrix"
    raise DataError(
        f"Cannot read '{path}': unknown file kind '{suffix or '(none)'}'. Use an edge list "
        f"({', '.join(EDGE_LIST_SUFFIXES)}; text ones optionally .gz/.bz2/.xz/.zip), a scipy "
        "sparse .npz or a Matrix "
        "Market .mtx (optionally .mtx.gz)."
    )


def read_matrix(path: str | os.PathLike) -> scipy.sparse.coo_array:
    """The sparse matrix stored in a scipy ``.npz`` or Matrix Market ``.mtx`` file, as it is
    stored: which axis holds the outputs is the caller's choice.

    Raises:
        DataError: the file is missing, of another kind, or unreadable.

    Examples:
        >>> import scipy.sparse, tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "a.npz")
        >>> scipy.sparse.save_npz(path, scipy.sparse.eye(3, format="csr"))
        >>> read_matrix(path).shape
        (3, 3)
    """
    path = Path(path)
    if adjacency_kind(path) != "matrix":
        raise DataError(
            f"Cannot read '{path}' as a matrix: expected a {' or '.join(MATRIX_SUFFIXES)} file. "
            "Read edge lists with `read_edges` / `Connectivity.from_edgelist`."
        )
    import scipy.io
    import scipy.sparse

    suffix = _suffix(path)
    try:
        if suffix == ".npz":
            return scipy.sparse.coo_array(scipy.sparse.load_npz(path))
        return scipy.sparse.coo_array(scipy.io.mmread(path))
    except (OSError, ValueError, KeyError, EOFError) as exc:
        raise DataError(f"Cannot read '{path}' as {suffix[1:]}: {exc}") from None
