"""Read an adjacency pattern from a file into plain arrays: scipy ``.npz``, Matrix Market ``.mtx``
or an edge-list CSV (two integer columns ``output,input``; a header line and further columns are
ignored)."""

from __future__ import annotations

import os

import numpy as np
import scipy.io
import scipy.sparse

from ..errors import DataError

__all__ = ["EDGE_LIST_SUFFIXES", "load_adjacency"]

EDGE_LIST_SUFFIXES = (".csv", ".tsv", ".txt", ".edges")


def _read_edge_list(path: str) -> np.ndarray:
    with open(path) as f:
        first = f.readline()
    delimiter = "," if "," in first else ("\t" if "\t" in first else None)
    tokens = first.replace(",", " ").split()
    header = 1 if tokens and not all(t.lstrip("-").isdigit() for t in tokens[:2]) else 0
    try:
        edges = np.loadtxt(
            path, delimiter=delimiter, skiprows=header, usecols=(0, 1), dtype=np.int64, ndmin=2
        )
    except ValueError as exc:
        raise DataError(
            f"Cannot parse '{path}' as an edge list: {exc}. Expected two integer columns "
            "(output index, input index) per line, optionally after one header line."
        ) from None
    return edges.T


def load_adjacency(path: str | os.PathLike, *, shape: tuple[int, int] | None = None,
                   transpose: bool = False) -> np.ndarray | scipy.sparse.coo_array:
    """Read a pattern from ``path``: a scipy matrix, or ``(2, nnz)`` int64 indices
    ``[output, input]``; rows are outputs and columns inputs unless ``transpose`` (the file is
    ``(source, target)``, i.e. ``(input, output)``). ``Connectivity(result, shape)`` wraps it.

    Raises:
        DataError: the file is missing, unreadable, of an unknown kind or malformed.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(f"Cannot read '{path}': no such file.")
    suffix = os.path.splitext(path.lower().removesuffix(".gz"))[1]
    if suffix not in (".npz", ".mtx", *EDGE_LIST_SUFFIXES):
        raise DataError(
            f"Cannot read '{path}': unknown file kind '{suffix or '(none)'}'. Use a scipy sparse "
            f".npz, a Matrix Market .mtx or an edge list ({', '.join(EDGE_LIST_SUFFIXES)})."
        )
    try:
        if suffix == ".npz":
            source = scipy.sparse.coo_array(scipy.sparse.load_npz(path))
        elif suffix == ".mtx":
            source = scipy.sparse.coo_array(scipy.io.mmread(path))
        else:
            source = _read_edge_list(path)
    except DataError:
        raise
    except (OSError, ValueError, KeyError, EOFError) as exc:
        raise DataError(f"Cannot read '{path}' as {suffix[1:]}: {exc}") from None
    if not isinstance(source, np.ndarray) and shape is not None:
        source = np.stack([source.row, source.col])  # the shape may add empty rows or columns
    if transpose:
        source = source.T if not isinstance(source, np.ndarray) else source[::-1]
    if isinstance(source, np.ndarray):
        source = np.ascontiguousarray(source, dtype=np.int64)
    return source
