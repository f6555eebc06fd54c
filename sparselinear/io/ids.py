"""Node ids of an edge list mapped to indices, vectorised: integer ids (int64/uint64) with a
hash factorisation, text names with a sort; the order of given nodes; and repeated edges merged.

Integer ids stay integers: names are a sorted integer array, proportional to the nodes, never
a Python object per row.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

import numpy as np

from ..errors import MAX_LISTED, DataError, DuplicateEdgeError, listing
from .files import pyarrow_or_none
from .table import Table

__all__ = ["factorize", "index_of", "merge_duplicates", "positions", "shared_factorize"]

_DIGITS = re.compile(r"[0-9]+")


def _is_ids(values: np.ndarray) -> bool:
    return values.dtype.kind in "iu"


def _code_type(n: int) -> type:
    """The integer type of codes that index ``n`` names: int32 where it can (half the memory
    of int64 per row), else int64."""
    return np.int32 if n < 2**31 else np.int64


def _hash_codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct integer ids (sorted) and the index of each value among them."""
    pa = pyarrow_or_none()
    if pa is None or values.size < 1 << 16:
        uniq, codes = np.unique(values, return_inverse=True)
        return uniq, codes.reshape(-1).astype(_code_type(uniq.size))
    encoded = pa.array(values).dictionary_encode()
    uniq = encoded.dictionary.to_numpy()
    order = np.argsort(uniq, kind="stable")
    rank = np.empty(order.size, dtype=_code_type(order.size))
    rank[order] = np.arange(order.size)
    codes = rank[encoded.indices.to_numpy()]
    return uniq[order], codes


def _text_factorize(values: np.ndarray) -> tuple[tuple[str, ...], np.ndarray]:
    """Distinct names, sorted (numerically when all are non-negative ASCII integers, of any
    size), and the index of each value among them."""
    names, codes = np.unique(values.astype(str), return_inverse=True)
    if names.size and all(_DIGITS.fullmatch(n) for n in names.tolist()):
        digits = np.char.lstrip(names, "0")
        order = np.lexsort((names, digits, np.char.str_len(digits)))
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size)
        names, codes = names[order], rank[codes]
    return tuple(names.tolist()), codes.astype(_code_type(len(names))).reshape(-1)


def _as_text(values: np.ndarray) -> np.ndarray:
    return values.astype(str) if _is_ids(values) else values


def _read_only(ids: np.ndarray) -> np.ndarray:
    ids = np.ascontiguousarray(ids)
    ids.flags.writeable = False
    return ids


def factorize(values: np.ndarray) -> tuple[Any, np.ndarray]:
    """Sorted distinct names (an integer array for ids, else a tuple of strings) and codes."""
    if _is_ids(values):
        uniq, codes = _hash_codes(values)
        return _read_only(uniq), codes
    return _text_factorize(values)


def _common(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both sides as ids of one dtype, or both as text."""
    if _is_ids(src) and _is_ids(dst):
        if src.dtype != dst.dtype:
            if (src.dtype.kind == "i" and src.size and src.min() < 0) or (
                    dst.dtype.kind == "i" and dst.size and dst.min() < 0):
                return src.astype(str), dst.astype(str)
            return src.astype(np.uint64), dst.astype(np.uint64)
        return src, dst
    return _as_text(src), _as_text(dst)


def shared_factorize(src: np.ndarray, dst: np.ndarray) -> tuple[Any, np.ndarray, np.ndarray]:
    """One sorted node list for both sides, and the codes of sources and targets."""
    src, dst = _common(src, dst)
    if _is_ids(src):
        us, cs = _hash_codes(src)
        ud, cd = _hash_codes(dst)
        names = np.union1d(us, ud)
        code = _code_type(names.size)
        cs = np.searchsorted(names, us).astype(code)[cs]
        cd = np.searchsorted(names, ud).astype(code)[cd]
        return _read_only(names), cs, cd
    names, codes = _text_factorize(np.concatenate([src, dst]))
    return names, codes[: src.size], codes[src.size:]


def _unique_whitespace(keys: np.ndarray, names: Any, order: np.ndarray, role: str) -> None:
    ordered = keys[order]
    same = np.flatnonzero(ordered[1:] == ordered[:-1])
    if same.size:
        pair = [names[order[same[0]]], names[order[same[0] + 1]]]
        raise DataError(f"The {role} names {pair[0]!r} and {pair[1]!r} differ only in "
                        "surrounding whitespace, which the edge list reader strips.")


def index_of(values: np.ndarray, names: Any, table: Table, role: str) -> np.ndarray:
    """Position of each value in the given ``names`` (text compared without surrounding
    whitespace; ids as integers, or as their decimal text against text names); unknown names
    raise with their row."""
    if isinstance(names, np.ndarray) and _is_ids(values):
        keys = names
    elif isinstance(names, np.ndarray):
        keys = names.astype(str)
    else:
        keys = np.char.strip(np.array(names, dtype=str)) if names else np.zeros(0, dtype=str)
    order = np.argsort(keys, kind="stable")
    if not isinstance(names, np.ndarray):
        _unique_whitespace(keys, names, order, role)
    uniq, codes = factorize(values if keys.dtype.kind in "iu" else _as_text(values))
    uniq = np.asarray(uniq) if not isinstance(uniq, np.ndarray) else uniq
    if keys.dtype.kind in "iu" and uniq.dtype != keys.dtype:
        uniq = uniq.astype(keys.dtype) if (uniq.size == 0 or uniq.min() >= 0) else uniq
    ordered = keys[order]
    pos = np.searchsorted(ordered, uniq) if uniq.size else np.zeros(0, np.int64)
    found = pos < ordered.size
    found[found] = ordered[pos[found]] == uniq[found]
    if not found.all():
        code = int(np.argmin(found))
        i = int(np.argmax(codes == code))
        name = str(uniq[code])
        shown = [str(n) for n in (names[:100_000] if isinstance(names, np.ndarray) else names)]
        close = difflib.get_close_matches(name, shown, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise DataError(f"{table.label(i)}: unknown {role} name {name!r}; it is not among the "
                        f"{len(names)} given nodes.{hint}")
    return (order[pos].astype(_code_type(len(names)))[codes] if values.size
            else np.zeros(0, np.int64))


def positions(values: np.ndarray, n: int, table: Table, role: str) -> np.ndarray:
    """``values`` read as positions ``0 .. n - 1`` (``nodes=range(n)``: unnamed)."""
    if _is_ids(values):
        bad = (values < 0) | (values >= n) if values.dtype.kind == "i" else values >= n
        if bad.any():
            i = int(np.argmax(bad))
            raise DataError(
                f"{table.label(i)}: {role} {str(values[i])!r} is not a position 0..{n - 1}; "
                f"with {role} names range({n}) nodes are integer positions."
            )
        return values.astype(np.int64)
    text, inverse = np.unique(values.astype(str), return_inverse=True)
    ok = [_DIGITS.fullmatch(t) is not None and int(t) < n for t in text.tolist()]
    if not all(ok):
        i = int(np.flatnonzero(~np.array(ok)[inverse.reshape(-1)])[0])
        raise DataError(
            f"{table.label(i)}: {role} {str(values[i])!r} is not a position 0..{n - 1}; "
            f"with {role} names range({n}) nodes are integer positions."
        )
    return np.array([int(t) for t in text.tolist()], dtype=np.int64)[inverse.reshape(-1)]


def merge_duplicates(rows, cols, shape, weights, table, names, policy):
    """``(rows, cols, merged, origin)``: the distinct edges sorted by ``(row, col)``, their
    weights merged by ``policy`` (``"sum"``, ``"max"``, ``"first"``; ``"error"`` raises on a
    repeat, naming the edges by ``names``, the node names ``(outputs, inputs)``) and
    ``origin(i)``, the table row of edge ``i`` (its first)."""
    n_out, n_in = shape
    if policy in ("error", "sum") and rows.size:
        import scipy.sparse

        # a counting sort by row, then each row's columns (scipy's coo -> csr): no argsort
        data = np.arange(rows.size, dtype=np.int64) if policy == "error" else (
            weights if weights is not None else np.zeros(rows.size, dtype=np.int8))
        csr = scipy.sparse.coo_array((data, (rows, cols)), shape=(n_out, n_in)).tocsr()
        csr.sum_duplicates()
        out_rows = np.repeat(np.arange(n_out, dtype=np.int64), np.diff(csr.indptr))
        out_cols = csr.indices.astype(np.int64)
        if csr.nnz == rows.size and policy == "error":
            keep = csr.data.astype(np.int64)
            return out_rows, out_cols, None if weights is None else weights[keep], keep.__getitem__
        if policy == "sum":
            merged = np.asarray(csr.data, dtype=np.float64) if weights is not None else None

            def origin(i: int) -> int:
                return int(np.argmax((rows == out_rows[i]) & (cols == out_cols[i])))

            return out_rows, out_cols, merged, origin
    keys = rows.astype(np.int64) * n_in + cols
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    first = np.ones(keys.size, dtype=bool)
    first[1:] = keys[1:] != keys[:-1]
    if not first.all() and policy == "error":
        repeat = order[~first]
        where = np.searchsorted(keys, keys[~first])  # first occurrence of each repeat
        listed = listing(
            (f"{str(names[1][cols[r]])!r} -> {str(names[0][rows[r]])!r} "
             f"({table.label(order[w])} and {table.label(r)})"
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
        merged = reduce.reduceat(w, starts) if reduce is not None and w.size else w[starts]
    keep = order[starts]
    return rows[keep].astype(np.int64), cols[keep].astype(np.int64), merged, keep.__getitem__
