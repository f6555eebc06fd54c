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

import difflib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
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
from .table import Column, Table, check_header, distinct, is_number, read_table

__all__ = ["Edges", "edge_rows", "networkx_edges", "read_edges"]

DUPLICATES = ("error", "sum", "max", "first")
_DIGITS = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class Edges:
    """An edge list read into index arrays: edge ``k`` feeds input ``cols[k]`` into output
    ``rows[k]`` (int64 tensors, sorted by ``(row, col)``, no repeats), the node names of each
    side (a ``range(n)`` for a side without names), and the weights (``None`` unless a weight
    column was read)."""

    rows: torch.Tensor
    cols: torch.Tensor
    out_names: tuple | range
    in_names: tuple | range
    weights: torch.Tensor | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """``(len(out_names), len(in_names))``."""
        return len(self.out_names), len(self.in_names)


# ---------------------------------------------------------------------- parsing the columns
def _strings(values: np.ndarray) -> np.ndarray:
    return np.char.strip(values.astype(str)) if values.size else np.zeros(0, dtype=str)


def _is_missing(value: Any) -> bool:
    """``None``, NaN, ``pandas.NA`` / ``NaT``: a cell without a value."""
    if value is None:
        return True
    try:
        return bool(value != value)
    except (TypeError, ValueError):  # pandas.NA refuses bool()
        return True


def _names_of(values: np.ndarray, table: Table, role: str) -> np.ndarray:
    missing = np.frompyfunc(_is_missing, 1, 1)(values).astype(bool) if values.size else values
    if missing.any():
        i = int(np.argmax(missing))
        raise DataError(f"{table.label(i)}: empty {role} name (a missing value, "
                        f"{values[i]!r}). Every edge needs both endpoints.")
    text = _strings(values)
    empty = text == ""
    if empty.any():
        i = int(np.argmax(empty))
        raise DataError(f"{table.label(i)}: empty {role} name. Every edge needs both endpoints.")
    return text


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
    bad = np.frompyfunc(_not_number, 1, 1)(values).astype(bool) if values.size else values
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"{table.label(i)}: weight column {column!r} holds {values[i]!r}, which "
                        "is not a number.")
    out = np.fromiter((float(v) for v in values), dtype=np.float64, count=values.size)
    bad = ~np.isfinite(out)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"{table.label(i)}: weight column {column!r} holds {values[i]!r}; weights "
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


def _numeric(text: np.ndarray) -> list[Decimal | None]:
    """Each text's exact value if it reads as a number, else ``None``."""
    return [Decimal(t) if is_number(t) else None for t in text.tolist()]


def _matches(text: np.ndarray, values: list, wanted: Any) -> np.ndarray:
    """Which of the distinct ``text`` (``values``: their numbers) equal ``wanted``: the same
    text, or numbers of the same value (``5`` selects ``'5'`` and ``'5.0'``)."""
    key = str(wanted).strip()
    hit = text == key
    if is_number(key):
        number = Decimal(key)
        hit |= np.array([v is not None and v == number for v in values], dtype=bool)
    return hit


def _filter(table: Table, where: Mapping | None) -> Table:
    if where is None:
        return table
    if not isinstance(where, Mapping):
        raise SparseLinearTypeError(
            f"'where' must be a mapping {{column: value or list of values}}, e.g. "
            f"{{'type': 'chemical'}}; got {describe(where)}."
        )
    keep = np.ones(table.size, dtype=bool)
    for ref, wanted in where.items():
        keep &= _condition(table, ref, wanted)
    if where and not keep.any():
        raise DataError(
            f"No row of {table.origin} matches every condition of where={dict(where)!r}; each "
            "matches rows on its own. Conditions on different columns must all hold."
        )
    return table.subset(keep)


def _condition(table: Table, ref: Column, wanted: Any) -> np.ndarray:
    """Rows whose column ``ref`` holds one of ``wanted``; a value no row holds raises."""
    text, inverse = np.unique(_strings(table.column(ref, "where")), return_inverse=True)
    wanted = [wanted] if isinstance(wanted, str) or not isinstance(wanted, Iterable) else wanted
    wanted = list(wanted)
    if not wanted:
        raise DataError(f"'where' gives no value for column {ref!r}; give one value or a list.")
    numbers, hit = _numeric(text), np.zeros(text.size, dtype=bool)
    for value in wanted:
        found = _matches(text, numbers, value)
        if not found.any():
            close = difflib.get_close_matches(str(value).strip(), text.tolist(), n=1)
            close = close or [t for t in text.tolist() if t.lower() == str(value).strip().lower()]
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise DataError(
                f"'where' selects {value!r} in column {ref!r}, but no row of {table.origin} "
                f"holds it; the column has {distinct(text)}.{hint}"
            )
        hit |= found
    return hit[inverse.reshape(-1)]


def _index(values: np.ndarray, names: tuple[str, ...], table: Table, role: str) -> np.ndarray:
    """Position of each value in ``names`` (compared without surrounding whitespace, as the
    values are read), vectorised; unknown names raise with their row."""
    keys = np.char.strip(np.array(names, dtype=str)) if names else np.zeros(0, dtype=str)
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    same = np.flatnonzero(ordered[1:] == ordered[:-1])
    if same.size:
        pair = [names[order[same[0]]], names[order[same[0] + 1]]]
        raise DataError(f"The {role} names {pair[0]!r} and {pair[1]!r} differ only in "
                        "surrounding whitespace, which the edge list reader strips.")
    pos = np.searchsorted(ordered, values) if values.size else np.zeros(0, np.int64)
    found = pos < ordered.size
    found[found] = ordered[pos[found]] == values[found]
    if not found.all():
        i = int(np.argmin(found))
        name = str(values[i])
        close = difflib.get_close_matches(name, names, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise DataError(f"{table.label(i)}: unknown {role} name {name!r}; it is not among the "
                        f"{len(names)} given nodes.{hint}")
    return order[pos].astype(np.int64) if values.size else np.zeros(0, np.int64)


def _positions(values: np.ndarray, nodes: range, table: Table, role: str) -> np.ndarray:
    """``values`` read as positions ``0 .. len(nodes) - 1`` (``nodes=range(n)``: unnamed)."""
    text, inverse = np.unique(values, return_inverse=True)
    ok = [_DIGITS.fullmatch(t) is not None and int(t) < len(nodes) for t in text.tolist()]
    if not all(ok):
        i = int(np.flatnonzero(~np.array(ok)[inverse.reshape(-1)])[0])
        raise DataError(
            f"{table.label(i)}: {role} {str(values[i])!r} is not a position 0..{len(nodes) - 1}; "
            f"with {role} names range({len(nodes)}) nodes are integer positions."
        )
    return np.array([int(t) for t in text.tolist()], dtype=np.int64)[inverse.reshape(-1)]


def _factorize(values: np.ndarray) -> tuple[tuple[str, ...], np.ndarray]:
    """Distinct names, sorted (numerically when all are non-negative ASCII integers, of any
    size), and the index of each value among them."""
    names, codes = np.unique(values, return_inverse=True)
    if names.size and all(_DIGITS.fullmatch(n) for n in names.tolist()):
        digits = np.char.lstrip(names, "0")
        order = np.lexsort((names, digits, np.char.str_len(digits)))
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size)
        names, codes = names[order], rank[codes]
    return tuple(names.tolist()), codes.astype(np.int64).reshape(-1)


def _given(names: Any, role: str) -> tuple[str, ...] | range:
    """Names given for one side, checked; ``range(n)`` stands for ``n`` unnamed positions."""
    if isinstance(names, range):
        if names.start != 0 or names.step != 1:
            raise DataError(f"'{role}' as a range must be range(n), positions 0..n-1; got "
                            f"{names!r}.")
        return names
    return check_names(names, len(names) if hasattr(names, "__len__") else -1, role)


def _side(values, given, table, role):
    if isinstance(given, range):
        return given, _positions(values, given, table, role)
    return given, _index(values, given, table, role)


def _resolve(src, dst, table, nodes, in_names, out_names, shared):
    """Node names of each side (``range(n)`` where unnamed) and the (row, col) index of every
    edge."""
    if nodes is not None:
        if in_names is not None or out_names is not None:
            raise DataError("Pass either 'nodes' (one list for both sides) or "
                            "'in_names'/'out_names', not both.")
        in_names = out_names = _given(nodes, "nodes")
    elif in_names is None and out_names is None and shared:
        names, codes = _factorize(np.concatenate([src, dst]))
        return names, names, codes[src.size:], codes[: src.size]
    if out_names is None:
        out_names, rows = _factorize(dst)
    else:
        out_names, rows = _side(dst, _given(out_names, "out_names"), table, "target")
    if in_names is None:
        in_names, cols = _factorize(src)
    else:
        in_names, cols = _side(src, _given(in_names, "in_names"), table, "source")
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
            ``{"type": "chemical"}`` or ``{"type": ["chemical", "electrical"]}`` (values of
            one column are alternatives, different columns must all match). A value matches a
            cell with the same text (whitespace stripped), or, when both read as numbers, the
            same value: ``5``, ``5.0`` and ``"5"`` all select cells ``"5"``, ``"5.0"``, ``5``.
            A value that no row holds raises (naming the column's distinct values), and so
            do conditions that no row meets together: a filter never empties the pattern.
        nodes: the node names, used for both inputs and outputs (an ``N x N`` pattern, e.g. a
            recurrent layer), in this order, nodes without edges included; names in the data
            that are not listed raise an error. ``range(n)``: the data holds integer positions
            ``0 .. n-1`` and the pattern has no names (what :meth:`Connectivity.to_edgelist
            <sparselinear.Connectivity.to_edgelist>` writes for an unnamed pattern).
        in_names, out_names: node names of each side, for a bipartite (feed-forward) pattern;
            ``range(n)`` as for ``nodes``. Given names are matched without their surrounding
            whitespace, as the data is read, and kept as given.
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
    table = read_table(data, sep, header, comment)
    check_header(table, source, target, weight, where)
    table = _filter(table, where)
    src = _names_of(table.column(0 if source is None else source, "source"), table, "source")
    dst = _names_of(table.column(1 if target is None else target, "target"), table, "target")
    weights, dtype = None, torch.get_default_dtype()
    if weight is not None:
        weights = _weights_of(table.column(weight, "weight"), table, weight)
        _in_dtype(weights, dtype, table.label)  # each weight fits the dtype it is stored in
    out_names, in_names, rows, cols = _resolve(
        src, dst, table, nodes, in_names, out_names, shared_nodes
    )
    keep, merged = _merge_duplicates(
        rows * len(in_names) + cols, weights, table, src, dst, duplicates
    )
    if merged is not None:  # a sum of repeats may overflow where each weight fits
        merged = _in_dtype(merged, dtype, lambda i: (
            f"{table.label(keep[i])}: the repeats of edge {str(src[keep[i]])!r} -> "
            f"{str(dst[keep[i]])!r} merged with duplicates={duplicates!r}"))
    return Edges(torch.from_numpy(rows[keep]), torch.from_numpy(cols[keep]), out_names, in_names,
                 merged)


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
