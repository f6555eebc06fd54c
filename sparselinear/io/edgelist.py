"""Edge lists with named nodes, read into plain index arrays: CSV/TSV files, pandas DataFrames,
plain sequences and networkx graphs; and the export back to ``(source, target, weight)`` rows.

The readers return [`Edges`][sparselinear.io.Edges] (coordinates, node names and weights);
[`Connectivity.from_edgelist`][sparselinear.Connectivity.from_edgelist] validates and wraps
them.

An edge ``source -> target`` carries signal from ``source`` to ``target``: ``source`` is an input
(a column of the weight) and ``target`` an output (a row), so the edge is ``W[target, source]``.
For a connectome, ``source`` is the presynaptic and ``target`` the postsynaptic neuron.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DataError, SparseLinearTypeError, check_choice, describe
from .columnar import read_columns
from .ids import factorize, index_of, merge_duplicates, positions, shared_factorize
from .intids import text_ids
from .names import check_names
from .neurons import neuron_table
from .progress import Progress
from .stream import Selection
from .table import Column, Table, check_header, is_number, read_table
from .where import apply_where, strings

__all__ = ["Edges", "edge_rows", "networkx_edges", "read_edges"]

DUPLICATES = ("error", "sum", "max", "first")


@dataclass(frozen=True)
class Edges:
    """An edge list read into index arrays: edge ``k`` feeds input ``cols[k]`` into output
    ``rows[k]`` (int64 tensors, sorted by ``(row, col)``, no repeats), the node names of each
    side (a ``range(n)`` for a side without names), and the weights (``None`` unless a weight
    column was read); with a neuron table as ``nodes``, its other columns as per-node
    attributes of both sides (``{column: array}`` in node order)."""

    rows: torch.Tensor
    cols: torch.Tensor
    out_names: tuple | np.ndarray | range
    in_names: tuple | np.ndarray | range
    weights: torch.Tensor | None = None
    out_attributes: Mapping[str, np.ndarray] | None = None
    in_attributes: Mapping[str, np.ndarray] | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """``(len(out_names), len(in_names))``."""
        return len(self.out_names), len(self.in_names)


# ---------------------------------------------------------------------- parsing the columns
def _is_missing(value: Any) -> bool:
    """``None``, NaN, ``pandas.NA`` / ``NaT``: a cell without a value."""
    if value is None:
        return True
    try:
        return bool(value != value)
    except (TypeError, ValueError):  # pandas.NA refuses bool()
        return True


def _names_of(values: np.ndarray, table: Table, role: str) -> np.ndarray:
    """The node names of a column: integer ids as they are, anything else as stripped text
    (text of canonical integers becomes integer ids); missing or empty names raise."""
    if values.dtype.kind in "iu":
        return values
    missing = np.frompyfunc(_is_missing, 1, 1)(values).astype(bool) if values.size else values
    if missing.any():
        i = int(np.argmax(missing))
        raise DataError(f"{table.label(i)}: empty {role} name (a missing value, "
                        f"{values[i]!r}). Every edge needs both endpoints.")
    text = strings(values)
    empty = text == ""
    if empty.any():
        i = int(np.argmax(empty))
        raise DataError(f"{table.label(i)}: empty {role} name. Every edge needs both endpoints.")
    return text_ids(text.astype(object))


def _not_number(value: Any) -> bool:
    """Text that is not a decimal number, or a value ``float()`` refuses."""
    if isinstance(value, str):
        return not is_number(value)
    try:
        float(value)
    except (TypeError, ValueError, OverflowError):
        return True
    return False


def _weights_of(values: np.ndarray, table: Table, column: Column) -> np.ndarray:
    """The weights as float64; fields that are not numbers, or not finite, raise."""
    if values.dtype.kind in "iufb":
        out = values.astype(np.float64)
    else:
        bad = np.frompyfunc(_not_number, 1, 1)(values).astype(bool) if values.size else values
        if bad.any():
            i = int(np.argmax(bad))
            raise DataError(f"{table.label(i)}: weight column {column!r} holds {values[i]!r}, "
                            "which is not a number.")
        out = np.fromiter((float(v) for v in values), dtype=np.float64, count=values.size)
    bad = ~np.isfinite(out)
    if bad.any():
        i = int(np.argmax(bad))
        value = values[i].item() if isinstance(values[i], np.generic) else values[i]
        raise DataError(f"{table.label(i)}: weight column {column!r} holds {value!r}; weights "
                        "must be finite numbers.")
    return out


def _in_dtype(weights: np.ndarray, dtype: torch.dtype, where: Callable[[int], str]) -> torch.Tensor:
    """``weights`` cast to ``dtype``; a weight that overflows it raises, named by ``where(i)``."""
    out = torch.from_numpy(weights).to(dtype)
    bad = ~torch.isfinite(out)
    if bool(bad.any()):
        i = int(torch.argmax(bad.to(torch.uint8)))
        value = float(weights[i])
        if not np.isfinite(value):
            raise DataError(f"{where(i)}: weight {value!r} is not a finite number.")
        raise DataError(
            f"{where(i)}: weight {value!r} overflows {dtype} (largest finite value "
            f"{torch.finfo(dtype).max:.4g}); weights are checked in the default dtype they are "
            "stored in. Scale the weights down, or read them with "
            "torch.set_default_dtype(torch.float64)."
        )
    return out


def _given(names: Any, role: str) -> tuple[str, ...] | np.ndarray | range:
    """Names given for one side, checked; ``range(n)`` stands for ``n`` unnamed positions."""
    if isinstance(names, range):
        if names.start != 0 or names.step != 1:
            raise DataError(f"'{role}' as a range must be range(n), positions 0..n-1; got "
                            f"{names!r}.")
        return names
    return check_names(names, len(names) if hasattr(names, "__len__") else -1, role)


def _side(values, given, table, role):
    if isinstance(given, range):
        return given, positions(values, len(given), table, role)
    return given, index_of(values, given, table, role)


def _resolve(src, dst, table, nodes, in_names, out_names, shared):
    """Node names of each side (``range(n)`` where unnamed) and the (row, col) index of every
    edge."""
    if nodes is not None:
        if in_names is not None or out_names is not None:
            raise DataError("Pass either 'nodes' (one list for both sides) or "
                            "'in_names'/'out_names', not both.")
        in_names = out_names = _given(getattr(nodes, "ids", nodes), "nodes")
    elif in_names is None and out_names is None and shared:
        names, cols, rows = shared_factorize(src, dst)
        return names, names, rows, cols
    if out_names is None:
        out_names, rows = factorize(dst)
    else:
        out_names, rows = _side(dst, _given(out_names, "out_names"), table, "target")
    if in_names is None:
        in_names, cols = factorize(src)
    else:
        in_names, cols = _side(src, _given(in_names, "in_names"), table, "source")
    return out_names, in_names, rows, cols


def _selection(source, target, weight, where) -> Selection:
    """What a read keeps: the endpoint and weight columns of the rows that meet ``where``,
    every block's header row checked first."""
    ids = [0 if source is None else source, 1 if target is None else target]
    keep = [*ids, *([weight] if weight is not None else [])]
    return Selection(keep, ids, where,
                     lambda block: check_header(block, source, target, weight, where))


def read_edges(
    data: Any,
    *,
    source: Column | None = None,
    target: Column | None = None,
    weight: Column | None = None,
    sep: str | None = None,
    where: Mapping[Column, Any] | Sequence[tuple] | None = None,
    nodes: Any = None,
    in_names: Any = None,
    out_names: Any = None,
    shared_nodes: bool = True,
    duplicates: str = "error",
    header: bool = True,
    comment: str | None = "#",
    progress: bool | None = None,
) -> Edges:
    """Read an edge list with named nodes into index arrays and names
    ([`Edges`][sparselinear.io.Edges]).

    An edge ``source -> target`` feeds input ``source`` into output ``target``: it becomes
    ``W[target, source]``. Whitespace around names and fields is stripped.

    Args:
        data: a CSV/TSV file path (gzip-compressed if it ends in ``.gz``; with a header row
            unless ``header=False``), a pandas DataFrame, a mapping ``{column: values}``, or a
            sequence of ``(source, target)`` / ``(source, target, weight)`` rows.
        source: column name or position of the edges' sources (inputs). Default: the first
            column.
        target: column name or position of the edges' targets (outputs). Default: the second
            column.
        weight: column name or position of a numeric weight, read into ``Edges.weights``.
        sep: field separator of a file. Default: detected from the header line (tab, comma or
            semicolon, else runs of whitespace).
        where: keep only rows whose columns hold the given value(s), e.g.
            ``{"type": "chemical"}`` or ``{"type": ["chemical", "electrical"]}`` (values of
            one column are alternatives, different columns must all match). A value matches a
            cell with the same text (whitespace stripped), or, when both read as numbers, the
            same value: ``5``, ``5.0`` and ``"5"`` all select cells ``"5"``, ``"5.0"``, ``5``.
            A value that no row holds raises (naming the column's distinct values), and so
            do conditions that no row meets together: a filter never empties the pattern.
        nodes: the node names, used for both inputs and outputs (an ``N x N`` pattern, e.g. a
            recurrent layer), in this order, nodes without edges included; names in the data
            that are not listed raise an error. ``range(n)``: the data holds integer positions
            ``0 .. n-1`` and the pattern has no names (what
            [`Connectivity.to_edgelist`][sparselinear.Connectivity.to_edgelist] writes for an
            unnamed pattern). Or a neuron table: a
            [`NeuronTable`][sparselinear.io.NeuronTable]
            ([`read_neurons`][sparselinear.io.read_neurons]), a pandas/polars DataFrame or
            pyarrow Table, or a table file (CSV/TSV, Parquet, Feather), whose first column
            holds the node ids, in node order; its other columns become per-node attributes
            (``Edges.out_attributes`` and ``in_attributes``;
            [`Connectivity.in_attributes`][sparselinear.Connectivity.in_attributes]).
        in_names: node names of the inputs, for a bipartite (feed-forward) pattern; ``range(n)``
            as for ``nodes``. Given names are matched without their surrounding whitespace, as
            the data is read, and kept as given.
        out_names: node names of the outputs, likewise.
        shared_nodes: when no names are given: ``True`` (default) uses the sorted union of all
            names on both sides (``N x N``); ``False`` uses the sorted sources as inputs and the
            sorted targets as outputs. Names sort as text, or as numbers when all are integers.
        duplicates: what to do with an edge listed twice: ``"error"`` (default), ``"sum"`` or
            ``"max"`` of the weights, or keep the ``"first"``.
        header: whether a file's first row names the columns. No edge vanishes into the
            header: unless a column is selected by one of its names (which proves it a
            header), a first row that reads as an edge raises and asks for ``header=False``:
            one whose fields are all numbers (``0,1``, ``+1 -2``, ``0.0,1.0``), whose weight
            field (``weight`` by position) is a number, or whose source/target field names a
            node of the edges below. A file with a header and no edge raises too.
        comment: lines of a file starting with this are skipped (``None``: none are).

    Files are UTF-8 text; a byte-order mark at the start of the file (or of a line, as in
    concatenated files) is removed, so it never joins the first name nor hides a row. Blank
    lines and comments are skipped; every other line is one edge (a quoted field may not run
    past its line). Weights must be finite numbers (ASCII decimal text in files) and finite in
    the default dtype they are stored in: ``1e39`` overflows float32 and raises, naming its
    line, as does a sum of repeats (``duplicates="sum"``) that overflows.

    Returns:
        [`Edges`][sparselinear.io.Edges] of shape ``(len(out_names), len(in_names))``; ``weights``
        (when ``weight`` is given) a tensor of the default float dtype and shape ``(nnz,)``, in the
        order of the edges.

    Examples:
        >>> rows = [("a", "b", 2.0), (" c", "b ", 1.0), ("b", "a", 5.0)]
        >>> edges = read_edges(rows, weight=2)
        >>> edges.shape, edges.in_names
        ((3, 3), ('a', 'b', 'c'))
        >>> edges.rows, edges.cols, edges.weights
        (tensor([0, 1, 1]), tensor([1, 0, 2]), tensor([5., 2., 1.]))
    """
    check_choice(duplicates, DUPLICATES, "duplicates",
                 "'sum' or 'max' merges the weights of a repeated edge, 'first' keeps one.")
    neurons = neuron_table(nodes)
    if neurons is not None:
        nodes = neurons.ids
    attributes = None if neurons is None else neurons.attributes
    args = (source, target, weight, where, nodes, in_names, out_names, shared_nodes, duplicates,
            attributes)
    path = Path(data) if isinstance(data, (str, os.PathLike)) else None
    selection = _selection(source, target, weight, where)
    with Progress(progress, path) as bar:
        table = read_columns(path if path is not None else data, selection, sep, header,
                             comment)
        if table is None:
            table = read_table(data, sep, header, comment)
        bar.step("read")
        return _edges(table, *args, bar=bar)


def _edges(table, source, target, weight, where, nodes, in_names, out_names, shared_nodes,
           duplicates, attributes, *, bar) -> Edges:
    if not table.filtered:
        check_header(table, source, target, weight, where)
        table = apply_where(table, where)
    src = _names_of(table.column(0 if source is None else source, "source"), table, "source")
    dst = _names_of(table.column(1 if target is None else target, "target"), table, "target")
    weights, dtype = None, torch.get_default_dtype()
    if weight is not None:
        weights = _weights_of(table.column(weight, "weight"), table, weight)
        _in_dtype(weights, dtype, table.label)  # each weight fits the dtype it is stored in
    table.release()  # the columns are read: only the rows' labels are needed from here on
    out_names, in_names, rows, cols = _resolve(
        src, dst, table, nodes, in_names, out_names, shared_nodes
    )
    del src, dst
    bar.step("nodes")
    names = (out_names, in_names)
    merged_rows, merged_cols, merged, origin = merge_duplicates(
        rows, cols, (len(out_names), len(in_names)), weights, table, names, duplicates
    )
    del weights
    bar.step("edges")
    if merged is not None:  # a sum of repeats may overflow where each weight fits
        merged = _in_dtype(merged, dtype, lambda i: (
            f"{table.label(origin(i))}: the repeats of edge "
            f"{str(in_names[cols[origin(i)]])!r} -> {str(out_names[rows[origin(i)]])!r} "
            f"merged with duplicates={duplicates!r}"))
    return Edges(torch.from_numpy(merged_rows), torch.from_numpy(merged_cols), out_names,
                 in_names, merged, attributes, attributes)


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

    Examples:
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
        data = np.asarray(adj.data, dtype=np.float64)[order.numpy()]
        values = _in_dtype(data, torch.get_default_dtype(), lambda i: (
            f"graph edge {nodelist[int(indices[1, order[i]])]!r} -> "
            f"{nodelist[int(indices[0, order[i]])]!r}"))
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

    Examples:
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
