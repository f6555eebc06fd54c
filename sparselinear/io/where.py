"""Row filters of the edge-list reader (``where=``): equality and membership on any column, and
thresholds (``>=``, ``>``, ``<=``, ``<``, ``!=``) on numeric ones.

``where`` is a mapping ``{column: value or list of values}`` or a list of
``(column, op, value)`` triples (the filter convention of ``pyarrow`` and
``pandas.read_parquet``), e.g. ``[("syn_count", ">=", 5), ("neuropil", "in", ["AL_L", "AL_R"])]``.

A ``RowFilter`` applies them to a whole table or to a file block by block as it is read,
vectorised: numbers compare as numpy arrays; text is matched through each column's distinct
values (pyarrow's dictionary encoding where pyarrow is installed), never one Python object per
row.
"""

from __future__ import annotations

import difflib
import operator
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

import numpy as np

from ..errors import DataError, SparseLinearTypeError, check_choice, describe
from .files import pyarrow_or_none
from .table import NUMBER, Column, Table, distinct, is_number

__all__ = ["OPS", "RowFilter", "apply_where", "conditions", "strings"]

COMPARE = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt,
           "!=": operator.ne}
OPS = ("==", "=", "in", "not in", *COMPARE)
#: ``sparselinear.io.table.NUMBER`` for pyarrow's regular expressions (RE2).
_ARROW_NUMBER = f"^(?i:{NUMBER.pattern})$"


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


def _values(wanted: Any, ref: Column) -> list:
    """The values a membership condition selects, as a list."""
    values = [wanted] if isinstance(wanted, str) or not isinstance(wanted, Iterable) else wanted
    values = list(values)
    if not values:
        raise DataError(f"'where' gives no value for column {ref!r}; give one value or a list.")
    return values


class RowFilter:
    """The conditions of ``where``, applied to the blocks of one source in turn.

    ``mask`` gives the rows of a block that meet every condition; ``finish``, called
    once every block has been seen, raises where a selected value is held by no row of the
    source, or where no row meets every condition (a filter never empties the pattern).

    Args:
        where: a mapping ``{column: value or list of values}``, a list of ``(column, op,
            value)`` triples, or ``None`` (every row is kept).

    Examples:
        >>> f = RowFilter([("count", ">=", 5)])
        >>> f.mask(Table(["count"], [np.array([3, 7, 5])], None, "row", "the table",
        ...              rows=3)).tolist()
        [False, True, True]
        >>> f.finish("the table")
    """

    def __init__(self, where: Any) -> None:
        self.where = where
        self.triples = [] if where is None else conditions(where)
        self._values = [_values(w, ref) if op in ("in", "not in") else None
                        for ref, op, w in self.triples]
        self._found = [None if v is None else np.zeros(len(v), dtype=bool) for v in self._values]
        self._seen: list[np.ndarray | None] = [None] * len(self.triples)
        self.kept = 0

    @property
    def refs(self) -> list[Column]:
        """The columns the conditions read."""
        return [ref for ref, _, _ in self.triples]

    def mask(self, table: Table) -> np.ndarray | None:
        """The rows of ``table`` that meet every condition (``None``: no condition)."""
        if not self.triples:
            return None
        keep = np.ones(table.size, dtype=bool)
        for k, (ref, op, wanted) in enumerate(self.triples):
            column = table.column(ref, "where")
            if op in COMPARE:
                keep &= _compare(table, column, ref, op, wanted)
            else:
                hit = self._members(k, column)
                keep &= ~hit if op == "not in" else hit
        self.kept += int(np.count_nonzero(keep))
        return keep

    def _members(self, k: int, column: Any) -> np.ndarray:
        """Rows whose column holds one of the values of condition ``k``."""
        text, numeric, values, inverse = _distinct(column)
        hit = np.zeros(text.size, dtype=bool)
        for j, wanted in enumerate(self._values[k]):
            found = _matches(text, numeric, values, wanted)
            self._found[k][j] |= bool(found.any())
            hit |= found
        seen = text.astype(str)
        self._seen[k] = np.unique(seen if self._seen[k] is None else
                                  np.concatenate([self._seen[k], seen]))
        return hit[inverse]

    def finish(self, origin: str) -> None:
        """Raise where a selected value is held by no row, or where no row was kept."""
        for k, (ref, _, _) in enumerate(self.triples):
            if self._values[k] is None or self._found[k].all():
                continue
            value = self._values[k][int(np.argmin(self._found[k]))]
            text = self._seen[k] if self._seen[k] is not None else np.zeros(0, dtype=str)
            close = difflib.get_close_matches(str(value).strip(), text.tolist(), n=1)
            close = close or [t for t in text.tolist() if t.lower() == str(value).strip().lower()]
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise DataError(
                f"'where' selects {value!r} in column {ref!r}, but no row of {origin} holds "
                f"it; the column has {distinct(text)}.{hint}"
            )
        if self.triples and not self.kept:
            shown = dict(self.where) if isinstance(self.where, Mapping) else list(self.where)
            raise DataError(
                f"No row of {origin} matches every condition of where={shown!r}; each "
                "matches rows on its own. Conditions on different columns must all hold."
            )


def apply_where(table: Table, where: Any) -> Table:
    """The rows of ``table`` that meet every condition of ``where``."""
    if where is None:
        return table
    rows = RowFilter(where)
    keep = rows.mask(table)
    rows.finish(table.origin)
    return table if keep is None else table.subset(keep)


# ---------------------------------------------------------------------- thresholds
def _compare(table: Table, column: Any, ref: Column, op: str, value: Any) -> np.ndarray:
    """Rows whose number in column ``ref`` compares with ``value`` as ``op`` says."""
    if isinstance(column, np.ndarray) and column.dtype.kind in "iuf":
        if op == "!=" and not _is_number(value):
            return np.ones(column.size, dtype=bool)
        return np.asarray(COMPARE[op](column, _threshold(value, column.dtype)), dtype=bool)
    text, numeric, values, inverse = _distinct(column)
    if op != "!=" and not numeric.all():
        bad = min(text[~numeric].tolist())
        row = int(np.argmax(inverse == int(np.flatnonzero(text == bad)[0])))
        raise DataError(f"'where' compares column {ref!r} of {table.origin} with {op}, but it "
                        f"holds {bad!r} ({table.label(row)}), which is not a number.")
    if op == "!=" and not _is_number(value):
        return np.ones(inverse.size, dtype=bool)
    return np.asarray(COMPARE[op](values, float(Decimal(str(value).strip()))),
                      dtype=bool)[inverse]


def _threshold(value: Any, dtype: np.dtype) -> int | float:
    """``value`` as a number to compare a column of ``dtype`` with: an exact integer for an
    integer column where the value is a whole number it can hold."""
    number = Decimal(str(value).strip())
    if dtype.kind in "iu" and number.is_finite() and number == number.to_integral_value():
        whole = int(number)
        info = np.iinfo(dtype)
        if info.min <= whole <= info.max:
            return whole
    return float(number)


# ---------------------------------------------------------------------- distinct values
def _distinct(column: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(text, numeric, values, inverse)``: the distinct values of a column as stripped text,
    whether each reads as a number and its value (NaN where not), and the index of each row's
    value among them."""
    pa = pyarrow_or_none()
    if isinstance(column, np.ndarray) and column.dtype.kind in "iufb":
        if pa is not None and column.size:
            encoded = pa.array(column).dictionary_encode()
            uniq = encoded.dictionary.to_numpy(zero_copy_only=False)
            inverse = encoded.indices.to_numpy()
        else:
            uniq, inverse = np.unique(column, return_inverse=True)
        numeric = np.full(uniq.size, column.dtype.kind != "b")
        values = uniq.astype(np.float64) if column.dtype.kind != "b" else np.full(uniq.size,
                                                                                 np.nan)
        return uniq.astype(str), numeric, values, inverse.reshape(-1)
    arrow = _arrow_text(pa, column)
    if arrow is not None:
        encoded = pa.compute.utf8_trim_whitespace(arrow).dictionary_encode()
        text = encoded.dictionary.to_numpy(zero_copy_only=False).astype(str)
        inverse = encoded.indices.to_numpy()
    else:
        values = column if isinstance(column, np.ndarray) else column.to_numpy(
            zero_copy_only=False)
        text, inverse = np.unique(strings(values), return_inverse=True)
    numeric, values = _numbers(pa, text)
    return text, numeric, values, inverse.reshape(-1)


def _arrow_text(pa: Any, column: Any) -> Any:
    """A column as a pyarrow string array (nulls read ``'None'``), or ``None`` where it is not
    text (or pyarrow is not installed)."""
    if pa is None:
        return None
    try:
        if isinstance(column, np.ndarray):
            if column.dtype.kind not in "OUS":
                return None
            column = pa.array(column, type=pa.string())
        elif isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            column = column.cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return None
    return column.fill_null("None") if column.null_count else column


def _numbers(pa: Any, text: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which of the distinct ``text`` read as numbers, and their values (NaN where not)."""
    values = np.full(text.size, np.nan)
    if pa is not None and text.size:
        arrow = pa.array(text.astype(object), type=pa.string())
        numeric = pa.compute.match_substring_regex(arrow, _ARROW_NUMBER).to_numpy(
            zero_copy_only=False)
        try:
            values[numeric] = pa.compute.cast(arrow.filter(numeric), pa.float64()).to_numpy()
            return numeric, values
        except pa.ArrowInvalid:  # a number pyarrow does not parse: Python's float() does
            pass
    numeric = np.array([is_number(t) for t in text.tolist()], dtype=bool)
    values[numeric] = [float(t) for t in text[numeric].tolist()]
    return numeric, values


def _matches(text: np.ndarray, numeric: np.ndarray, values: np.ndarray,
             wanted: Any) -> np.ndarray:
    """Which of the distinct ``text`` equal ``wanted``: the same text, or numbers of the same
    value (``5`` selects ``'5'`` and ``'5.0'``)."""
    key = str(wanted).strip()
    hit = text == key
    if is_number(key):
        number = Decimal(key)
        candidates = np.flatnonzero(numeric & (values == float(number)))
        for c in candidates.tolist():  # equal as floats: compare the exact decimal values
            try:
                hit[c] |= Decimal(str(text[c])) == number
            except InvalidOperation:  # pragma: no cover - numeric text is a decimal
                pass
    return hit
