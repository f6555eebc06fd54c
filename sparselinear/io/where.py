"""Row filters of the edge-list reader (``where=``): equality and membership on any column, and
thresholds (``>=``, ``>``, ``<=``, ``<``, ``!=``) on numeric ones, vectorised over typed columns.

``where`` is a mapping ``{column: value or list of values}`` or a list of
``(column, op, value)`` triples (the filter convention of ``pyarrow`` and
``pandas.read_parquet``), e.g. ``[("syn_count", ">=", 5), ("neuropil", "in", ["AL_L", "AL_R"])]``.
"""

from __future__ import annotations

import difflib
import operator
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

import numpy as np

from ..errors import DataError, SparseLinearTypeError, check_choice, describe
from .table import Column, Table, distinct, is_number

__all__ = ["OPS", "apply_where", "conditions", "strings"]

COMPARE = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt,
           "!=": operator.ne}
OPS = ("==", "=", "in", "not in", *COMPARE)


def strings(values: np.ndarray) -> np.ndarray:
    """Values as stripped text."""
    return np.char.strip(values.astype(str)) if values.size else np.zeros(0, dtype=str)


def conditions(where: Any) -> list[tuple[Column, str, Any]]:
    """``where`` as ``(column, op, value)`` triples, checked."""
    if isinstance(where, Mapping):
        return [(ref, "in", wanted) for ref, wanted in where.items()]
    if isinstance(where, (list, tuple)) and all(
            isinstance(c, (list, tuple)) and len(c) == 3 for c in where):
        out = []
        for ref, op, value in where:
            check_choice(op, OPS, "where operator", "e.g. ('syn_count', '>=', 5).")
            op = {"==": "in", "=": "in"}.get(op, op)
            if op in COMPARE and op != "!=" and not _is_number(value):
                raise DataError(f"'where' compares column {ref!r} with {op} {value!r}; a "
                                "threshold must be a number.")
            out.append((ref, op, value))
        return out
    raise SparseLinearTypeError(
        f"'where' must be a mapping {{column: value or list of values}}, e.g. "
        f"{{'type': 'chemical'}}, or a list of (column, op, value) triples, e.g. "
        f"[('syn_count', '>=', 5)]; got {describe(where)}."
    )


def _is_number(value: Any) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, (int, float, np.integer, np.floating, Decimal)):
        return True
    return isinstance(value, str) and is_number(value)


def apply_where(table: Table, where: Any) -> Table:
    """The rows of ``table`` that meet every condition of ``where``."""
    if where is None:
        return table
    triples = conditions(where)
    keep = np.ones(table.size, dtype=bool)
    for ref, op, wanted in triples:
        keep &= _condition(table, ref, op, wanted)
    if triples and not keep.any():
        shown = dict(where) if isinstance(where, Mapping) else list(where)
        raise DataError(
            f"No row of {table.origin} matches every condition of where={shown!r}; each "
            "matches rows on its own. Conditions on different columns must all hold."
        )
    return table.subset(keep)


def _condition(table: Table, ref: Column, op: str, wanted: Any) -> np.ndarray:
    column = table.column(ref, "where")
    if op in COMPARE:
        return _compare(table, column, ref, op, wanted)
    hit = _members(table, column, ref, wanted)
    return ~hit if op == "not in" else hit


def _compare(table: Table, column: np.ndarray, ref: Column, op: str, value: Any) -> np.ndarray:
    """Rows whose number in column ``ref`` compares with ``value`` as ``op`` says."""
    if column.dtype.kind not in "iuf":
        text, inverse = np.unique(strings(column), return_inverse=True)
        numbers = [float(t) if is_number(t) else None for t in text.tolist()]
        if op != "!=" and any(n is None for n in numbers):
            bad = next(t for t, n in zip(text.tolist(), numbers) if n is None)
            raise DataError(f"'where' compares column {ref!r} of {table.origin} with {op}, but "
                            f"it holds {bad!r}, which is not a number.")
        column = np.array([np.nan if n is None else n for n in numbers])[inverse.reshape(-1)]
    if op == "!=" and not _is_number(value):
        return np.ones(column.size, dtype=bool)
    return np.asarray(COMPARE[op](column, float(value) if column.dtype.kind == "f" or not
                                  float(value).is_integer() else int(float(value))), dtype=bool)


def _members(table: Table, column: np.ndarray, ref: Column, wanted: Any) -> np.ndarray:
    """Rows whose column ``ref`` holds one of ``wanted``; a value no row holds raises."""
    wanted = [wanted] if isinstance(wanted, str) or not isinstance(wanted, Iterable) else wanted
    wanted = list(wanted)
    if not wanted:
        raise DataError(f"'where' gives no value for column {ref!r}; give one value or a list.")
    if column.dtype.kind in "iufb":
        uniq, inverse = np.unique(column, return_inverse=True)
        text = uniq.astype(str)
        numbers: list = [Decimal(str(u)) if column.dtype.kind != "b" else None
                         for u in uniq.tolist()]
    else:
        text, inverse = np.unique(strings(column), return_inverse=True)
        numbers = [Decimal(t) if is_number(t) else None for t in text.tolist()]
    hit = np.zeros(text.size, dtype=bool)
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


def _matches(text: np.ndarray, values: list, wanted: Any) -> np.ndarray:
    """Which of the distinct ``text`` (``values``: their numbers) equal ``wanted``: the same
    text, or numbers of the same value (``5`` selects ``'5'`` and ``'5.0'``)."""
    key = str(wanted).strip()
    hit = text == key
    if is_number(key):
        number = Decimal(key)
        hit |= np.array([v is not None and v == number for v in values], dtype=bool)
    return hit
