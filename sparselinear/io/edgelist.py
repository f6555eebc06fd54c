"""Edge lists with named nodes, read into plain index arrays: CSV/TSV files, pandas DataFrames,
plain sequences and networkx graphs; and the export back to ``(source, target, weight)`` rows.

The readers return :class:`Edges` (coordinates, node names and weights);
:meth:`Connectivity.from_edgelist <sparselinear.Connectivity.from_edgelist>` validates and wraps
them.

An edge ``source -> target`` carries signal from ``source`` to ``target``: ``source`` is an input
(a column of the weight) and ``target`` an output (a row), so the edge is ``W[target, source]``.
For a connectome, ``source`` is the presynaptic and ``target`` the postsynaptic neuron.
"""

from __future__ import annotations

import csv
import difflib
import gzip
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import (
    MAX_LISTED,
    DataError,
    DuplicateEdgeError,
    SparseLinearTypeError,
    check_choice,
    describe,
    listing,
)
from .names import check_names

__all__ = ["Edges", "edge_rows", "networkx_edges", "read_edges"]

DUPLICATES = ("error", "sum", "max", "first")
_INTEGER = re.compile(r"[+-]?\d+")
Column = str | int


@dataclass(frozen=True)
class Edges:
    """An edge list read into index arrays: edge ``k`` feeds input ``cols[k]`` into output
    ``rows[k]`` (int64 tensors, sorted by ``(row, col)``, no repeats), the node names of each
    side, and the weights (``None`` unless a weight column was read)."""

    rows: torch.Tensor
    cols: torch.Tensor
    out_names: tuple
    in_names: tuple
    weights: torch.Tensor | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """``(len(out_names), len(in_names))``."""
        return len(self.out_names), len(self.in_names)


@dataclass
class _Table:
    """Columns of strings (or raw values), the label of each row, and where they came from."""

    names: list[Column]
    columns: list[np.ndarray]
    numbers: np.ndarray  # line number (files) or row position (other sources) of each row
    unit: str  # "file.csv, line" or "row"
    origin: str

    def label(self, i: int) -> str:
        return f"{self.unit} {int(self.numbers[i])}"

    def column(self, ref: Column, role: str) -> np.ndarray:
        if isinstance(ref, str) and ref in self.names:
            return self.columns[self.names.index(ref)]
        if isinstance(ref, int) and not isinstance(ref, bool) and 0 <= ref < len(self.columns):
            return self.columns[ref]
        if not isinstance(ref, (str, int)) or isinstance(ref, bool):
            raise SparseLinearTypeError(
                f"'{role}' must be a column name (str) or position (int); got {describe(ref)}."
            )
        close = difflib.get_close_matches(str(ref), [str(n) for n in self.names], n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise DataError(
            f"'{role}' column {ref!r} not found in {self.origin}; its columns are "
            f"{self.names}.{hint}"
        )

    def subset(self, keep: np.ndarray) -> _Table:
        columns = [c[keep] for c in self.columns]
        return _Table(self.names, columns, self.numbers[keep], self.unit, self.origin)


# ---------------------------------------------------------------------- reading the sources
def _detect_sep(line: str) -> str | None:
    for sep in ("\t", ",", ";"):
        if sep in line:
            return sep
    return None  # runs of whitespace


def _read_file(path: Path, sep: str | None, header: bool, comment: str | None) -> _Table:
    if not path.is_file():
        raise DataError(f"Edge list file {str(path)!r} does not exist or is not a file.")
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    try:
        with opener(path, "rt", newline="", encoding="utf-8-sig") as f:
            text = np.array(f.read().splitlines(), dtype=str)
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"Cannot read edge list file {str(path)!r}: {exc}") from None
    stripped = np.char.strip(text) if text.size else text
    keep = stripped != ""
    if comment:
        keep &= ~np.char.startswith(stripped, comment)
    numbers = np.flatnonzero(keep) + 1
    if numbers.size == 0:
        raise DataError(f"Edge list file {str(path)!r} holds no rows.")
    lines = text[keep].tolist()
    del text, stripped, keep
    if sep is None:
        sep = _detect_sep(lines[0])
    if sep is None:
        rows = [line.split() for line in lines]
    else:
        rows = list(csv.reader(lines, delimiter=sep))
    del lines
    if header:
        names: list[Column] = [field.strip() for field in rows[0]]
        if all(_INTEGER.fullmatch(name) for name in names):
            raise DataError(
                f"{path.name}, line {numbers[0]}: the header row {rows[0]} holds only numbers: it "
                "looks like an edge, not column names. Pass header=False (command line: "
                "--no-header) for a file without a header row."
            )
        rows, numbers = rows[1:], numbers[1:]
    else:
        names = list(range(len(rows[0])))
    width = len(names)
    lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    bad = np.flatnonzero(lengths != width)
    if bad.size:
        i = int(bad[0])
        raise DataError(
            f"{path.name}, line {numbers[i]}: {lengths[i]} field(s) where the "
            f"{'header has' if header else 'first row has'} {width}. Check the separator "
            f"(sep={sep!r}) and quoting."
        )
    table = np.empty((len(rows), width), dtype=object)
    table[:] = rows
    del rows
    columns = [table[:, j] for j in range(width)]
    return _Table(names, columns, numbers, f"{path.name}, line", f"file {path.name!r}")


def _read_frame(frame: Any) -> _Table:
    names = list(frame.columns)
    columns = [frame[name].to_numpy(dtype=object) for name in names]
    numbers = np.arange(len(frame), dtype=np.int64)
    return _Table(names, columns, numbers, "DataFrame row (position)", "the DataFrame")


def _read_mapping(data: Mapping) -> _Table:
    names = list(data.keys())
    columns = [np.asarray(list(data[n]), dtype=object) for n in names]
    lengths = {len(c) for c in columns}
    if len(lengths) > 1:
        raise DataError(
            f"The columns have different lengths: "
            f"{ {str(n): len(c) for n, c in zip(names, columns, strict=True)} }."
        )
    n = columns[0].size if columns else 0
    return _Table(names, columns, np.arange(n, dtype=np.int64), "row", "the mapping")


def _read_rows(data: Sequence) -> _Table:
    rows = [tuple(r) if isinstance(r, (Sequence, np.ndarray)) and not isinstance(r, str) else r
            for r in data]
    bad = next((i for i, r in enumerate(rows) if not isinstance(r, tuple)), None)
    if bad is not None:
        raise SparseLinearTypeError(
            f"Each edge must be a (source, target[, weight]) tuple; row {bad} is "
            f"{describe(rows[bad])}."
        )
    width = len(rows[0]) if rows else 2
    bad = next((i for i, r in enumerate(rows) if len(r) != width), None)
    if bad is not None:
        raise DataError(f"row {bad} has {len(rows[bad])} field(s) where row 0 has {width}.")
    columns = [np.array([r[j] for r in rows], dtype=object) for j in range(width)]
    numbers = np.arange(len(rows), dtype=np.int64)
    return _Table(list(range(width)), columns, numbers, "row", "the edge list")


def _read(data: Any, sep: str | None, header: bool, comment: str | None) -> _Table:
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


# ---------------------------------------------------------------------- parsing the columns
def _strings(values: np.ndarray) -> np.ndarray:
    return np.char.strip(values.astype(str)) if values.size else np.zeros(0, dtype=str)


def _names_of(values: np.ndarray, table: _Table, role: str) -> np.ndarray:
    missing = np.equal(values, None) | (values != values)  # None or NaN (pandas missing)
    text = _strings(values)
    empty = missing | (text == "")
    if empty.any():
        i = int(np.argmax(empty))
        raise DataError(f"{table.label(i)}: empty {role} name. Every edge needs both endpoints.")
    return text


def _weights_of(values: np.ndarray, table: _Table, column: Column) -> np.ndarray:
    try:
        out = np.array(values, dtype=np.float64)
    except (TypeError, ValueError):
        out = None
    if out is None:
        for i, v in enumerate(values):
            try:
                float(v)
            except (TypeError, ValueError):
                raise DataError(
                    f"{table.label(i)}: weight column {column!r} holds {v!r}, which is not a "
                    "number."
                ) from None
    bad = ~np.isfinite(out)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"{table.label(i)}: weight column {column!r} holds {values[i]!r}; weights "
                        "must be finite numbers.")
    return out


def _filter(table: _Table, where: Mapping | None) -> _Table:
    if where is None:
        return table
    if not isinstance(where, Mapping):
        raise SparseLinearTypeError(
            f"'where' must be a mapping {{column: value or list of values}}, e.g. "
            f"{{'type': 'chemical'}}; got {describe(where)}."
        )
    keep = np.ones(table.numbers.size, dtype=bool)
    for ref, wanted in where.items():
        values = _strings(table.column(ref, "where"))
        wanted = [wanted] if isinstance(wanted, str) or not isinstance(wanted, Sequence) else wanted
        keep &= np.isin(values, [str(w).strip() for w in wanted])
    return table.subset(keep)


def _index(values: np.ndarray, names: tuple[str, ...], table: _Table, role: str) -> np.ndarray:
    """Position of each value in ``names``, vectorised; unknown names raise with their row."""
    ordered = np.array(names, dtype=str) if names else np.zeros(0, dtype=str)
    order = np.argsort(ordered, kind="stable")
    pos = np.searchsorted(ordered[order], values) if values.size else np.zeros(0, np.int64)
    found = pos < ordered.size
    found[found] = ordered[order][pos[found]] == values[found]
    if not found.all():
        i = int(np.argmin(found))
        name = str(values[i])
        close = difflib.get_close_matches(name, names, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise DataError(f"{table.label(i)}: unknown {role} name {name!r}; it is not among the "
                        f"{len(names)} given nodes.{hint}")
    return order[pos].astype(np.int64) if values.size else np.zeros(0, np.int64)


def _factorize(values: np.ndarray) -> tuple[tuple[str, ...], np.ndarray]:
    """Distinct names, sorted (numerically when all are non-negative integers), and the index
    of each value among them."""
    names, codes = np.unique(values, return_inverse=True)
    if names.size and np.char.isdigit(names).all():
        order = np.argsort(names.astype(object).astype(int), kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size)
        names, codes = names[order], rank[codes]
    return tuple(names.tolist()), codes.astype(np.int64).reshape(-1)


def _resolve(src, dst, table, nodes, in_names, out_names, shared):
    """Node names of each side and the (row, col) index of every edge."""
    if nodes is not None:
        if in_names is not None or out_names is not None:
            raise DataError("Pass either 'nodes' (one list for both sides) or "
                            "'in_names'/'out_names', not both.")
        in_names = out_names = check_names(nodes, len(nodes), "nodes")
    elif in_names is None and out_names is None and shared:
        names, codes = _factorize(np.concatenate([src, dst]))
        return names, names, codes[src.size:], codes[: src.size]
    if out_names is None:
        out_names, rows = _factorize(dst)
    else:
        out_names = check_names(out_names, len(out_names), "out_names")
        rows = _index(dst, out_names, table, "target")
    if in_names is None:
        in_names, cols = _factorize(src)
    else:
        in_names = check_names(in_names, len(in_names), "in_names")
        cols = _index(src, in_names, table, "source")
    return out_names, in_names, rows, cols


def _merge_duplicates(keys, weights, table, src, dst, policy):
    """Sort edges by key and merge repeats according to ``policy``."""
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    first = np.ones(keys.size, dtype=bool)
    first[1:] = keys[1:] != keys[:-1]
    if first.all():
        return order, weights[order] if weights is not None else None
    if policy == "error":
        repeat = order[~first]
        where = np.searchsorted(keys, keys[~first])  # first occurrence of each repeat
        listed = listing(
            (f"{str(src[r])!r} -> {str(dst[r])!r} ({table.label(order[w])} and {table.label(r)})"
             for r, w in zip(repeat[:MAX_LISTED], where[:MAX_LISTED], strict=True)),
            repeat.size, sep="; ",
        )
        raise DuplicateEdgeError(
            f"{repeat.size} edge(s) appear more than once: {listed}. Pass "
            "duplicates='sum' (add their weights), 'max' or 'first', or filter with `where=`."
        )
    starts = np.flatnonzero(first)
    merged = None
    if weights is not None:
        w = weights[order]
        reduce = {"sum": np.add, "max": np.maximum}.get(policy)
        merged = reduce.reduceat(w, starts) if reduce is not None else w[starts]
    return order[starts], merged


def read_edges(
    data: Any,
    *,
    source: Column | None = None,
    target: Column | None = None,
    weight: Column | None = None,
    sep: str | None = None,
    where: Mapping[Column, Any] | None = None,
    nodes: Sequence[str] | None = None,
    in_names: Sequence[str] | None = None,
    out_names: Sequence[str] | None = None,
    shared_nodes: bool = True,
    duplicates: str = "error",
    header: bool = True,
    comment: str | None = "#",
) -> Edges:
    """Read an edge list with named nodes into index arrays and names (:class:`Edges`).

    An edge ``source -> target`` feeds input ``source`` into output ``target``: it becomes
    ``W[target, source]``. Whitespace around names and fields is stripped.

    Args:
        data: a CSV/TSV file path (gzip-compressed if it ends in ``.gz``; with a header row
            unless ``header=False``), a pandas DataFrame, a mapping ``{column: values}``, or a
            sequence of ``(source, target)`` / ``(source, target, weight)`` rows.
        source, target: column name or position of the edge endpoints. Default: the first and
            the second column.
        weight: column name or position of a numeric weight, read into ``Edges.weights``.
        sep: field separator of a file. Default: detected from the header line (tab, comma or
            semicolon, else runs of whitespace).
        where: keep only rows whose columns hold the given value(s), e.g.
            ``{"type": "chemical"}`` or ``{"type": ["chemical", "electrical"]}``.
        nodes: the node names, used for both inputs and outputs (an ``N x N`` pattern, e.g. a
            recurrent layer); names in the data that are not listed raise an error.
        in_names, out_names: node names of each side, for a bipartite (feed-forward) pattern.
        shared_nodes: when no names are given: ``True`` (default) uses the sorted union of all
            names on both sides (``N x N``); ``False`` uses the sorted sources as inputs and the
            sorted targets as outputs. Names sort as text, or as numbers when all are integers.
        duplicates: what to do with an edge listed twice: ``"error"`` (default), ``"sum"`` or
            ``"max"`` of the weights, or keep the ``"first"``.
        header: whether a file's first row names the columns; a first row of integers only is
            refused as a header (it looks like an edge): pass ``header=False``.
        comment: lines of a file starting with this are skipped (``None``: none are).

    Returns:
        :class:`Edges` of shape ``(len(out_names), len(in_names))``; ``weights`` (when
        ``weight`` is given) a tensor of the default float dtype and shape ``(nnz,)``, in the
        order of the edges.

    Examples::

        >>> rows = [("a", "b", 2.0), (" c", "b ", 1.0), ("b", "a", 5.0)]
        >>> edges = read_edges(rows, weight=2)
        >>> edges.shape, edges.in_names
        ((3, 3), ('a', 'b', 'c'))
        >>> edges.rows, edges.cols, edges.weights
        (tensor([0, 1, 1]), tensor([1, 0, 2]), tensor([5., 2., 1.]))
    """
    check_choice(duplicates, DUPLICATES, "duplicates",
                 "'sum' or 'max' merges the weights of a repeated edge, 'first' keeps one.")
    table = _filter(_read(data, sep, header, comment), where)
    src = _names_of(table.column(0 if source is None else source, "source"), table, "source")
    dst = _names_of(table.column(1 if target is None else target, "target"), table, "target")
    weights = None
    if weight is not None:
        weights = _weights_of(table.column(weight, "weight"), table, weight)
    out_names, in_names, rows, cols = _resolve(
        src, dst, table, nodes, in_names, out_names, shared_nodes
    )
    keep, weights = _merge_duplicates(
        rows * len(in_names) + cols, weights, table, src, dst, duplicates
    )
    values = None if weights is None else torch.from_numpy(weights).to(torch.get_default_dtype())
    return Edges(torch.from_numpy(rows[keep]), torch.from_numpy(cols[keep]), out_names, in_names,
                 values)


def networkx_edges(
    graph: Any, *, weight: str | None = None, nodes: Sequence[Any] | None = None
) -> Edges:
    """Read a networkx graph: edge ``u -> v`` feeds input ``u`` into output ``v``.

    Args:
        graph: a ``networkx`` ``Graph``/``DiGraph`` (undirected edges become two directed ones;
            parallel edges of a multigraph are merged, their weights added).
        weight: edge attribute used as weight (edges without it weigh 1), read into
            ``Edges.weights``.
        nodes: node order (default: ``graph.nodes`` order); a subset selects the induced
            subgraph. Names are ``str(node)``.

    Examples::

        >>> import networkx as nx
        >>> edges = networkx_edges(nx.DiGraph([("x", "y"), ("y", "z")]))
        >>> edges.out_names, edges.rows.tolist(), edges.cols.tolist()
        (('x', 'y', 'z'), [1, 2], [0, 1])
    """
    try:
        import networkx as nx
    except ImportError:  # pragma: no cover - depends on the environment
        raise SparseLinearTypeError(
            "from_networkx needs networkx: `pip install networkx`."
        ) from None
    if not isinstance(graph, nx.Graph):
        raise SparseLinearTypeError(f"'graph' must be a networkx graph; got {describe(graph)}.")
    nodelist = list(graph.nodes) if nodes is None else list(nodes)
    try:
        adj = nx.to_scipy_sparse_array(graph, nodelist=nodelist, weight=weight, format="coo")
    except nx.NetworkXError as e:
        raise DataError(f"Cannot read the graph with nodes={nodes!r}: {e}") from None
    adj.sum_duplicates()  # row = source (input), col = target (output)
    names = check_names([str(n) for n in nodelist], len(nodelist), "nodes")
    indices = torch.from_numpy(np.stack([adj.col, adj.row]).astype(np.int64))
    n = len(nodelist)
    keys = indices[0] * n + indices[1]
    order = torch.argsort(keys)
    values = None
    if weight is not None:
        values = torch.from_numpy(np.asarray(adj.data, dtype=np.float64))[order]
        values = values.to(torch.get_default_dtype())
    return Edges(indices[0, order], indices[1, order], names, names, values)


def edge_rows(
    rows: torch.Tensor,
    cols: torch.Tensor,
    out_names: Sequence[Any] | None,
    in_names: Sequence[Any] | None,
    values: torch.Tensor | None = None,
) -> list[tuple[Any, ...]]:
    """``(source, target)`` or ``(source, target, weight)`` rows, one per edge ``k`` feeding
    input ``cols[k]`` into output ``rows[k]``: sources are inputs and targets outputs, named
    when names are given (else indices).

    Examples::

        >>> import torch
        >>> edge_rows(torch.tensor([1, 2]), torch.tensor([0, 1]), None, ("a", "b", "c"),
        ...           torch.tensor([0.5, -1.0]))
        [('a', 1, 0.5), ('b', 2, -1.0)]
    """
    rows, cols = rows.cpu().numpy(), cols.cpu().numpy()
    sources = np.array(in_names, dtype=object)[cols] if in_names is not None else cols
    targets = np.array(out_names, dtype=object)[rows] if out_names is not None else rows
    columns = [sources.tolist(), targets.tolist()]
    if values is not None:
        if not isinstance(values, torch.Tensor) or values.shape != (rows.size,):
            raise DataError(
                f"'values' must be a tensor of shape ({rows.size},), one per edge; got "
                f"{describe(values)}."
            )
        columns.append(values.detach().cpu().tolist())
    return list(zip(*columns, strict=True))
