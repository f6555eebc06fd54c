"""Node ids written as text, read as integers: a column of names becomes an int64 (or uint64)
array where every name is an integer written canonically (``7``, ``-3``; not ``007``, ``+7`` or
``7.0``), so that ids stay integers and no two names become one id."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from .files import pyarrow_or_none

__all__ = ["id_array", "ids_of_text", "text_ids"]

_CANONICAL = r"^-?(0|[1-9][0-9]*)$"  # integers written without sign, padding or blanks
_THREADED_IDS = 1 << 22  # ids parsed on one thread below this many (a block of a file)


def text_ids(values: np.ndarray) -> np.ndarray:
    """Node names read as text (an object array of stripped strings) as an int64 (or uint64)
    array when every one is an integer in canonical form (``7``, ``-3``; not ``007``, ``+7``
    or ``7.0``), so that no two names become one id; else unchanged."""
    if values.size == 0 or values.dtype.kind in "iu":
        return values
    uniq, inverse = np.unique(values.astype(str), return_inverse=True)
    pa = pyarrow_or_none()
    if pa is None:  # pragma: no cover - depends on the environment
        import re

        canonical = re.compile(_CANONICAL)
        if not all(canonical.match(u) for u in uniq.tolist()):
            return values
        big = [int(u) for u in uniq.tolist()]
        dtype = np.uint64 if max(big) >= 2**63 else np.int64
        try:
            return np.array(big, dtype=dtype)[inverse.reshape(-1)]
        except OverflowError:
            return values
    ids = id_array(pa.array(uniq.tolist(), type=pa.string()))
    return values if ids is None else ids[inverse.reshape(-1)]


def id_array(strings: Any) -> np.ndarray | None:
    """A pyarrow string array of node ids as int64 (or uint64) when every one is a canonical
    integer that fits; ``None`` where any is not. Each value is parsed, then its text length
    checked against its digits: a sign, padding or blanks make the text longer. The chunks of
    a large column (of ``_THREADED_IDS`` or more) are parsed on several threads."""
    pa = pyarrow_or_none()
    if len(strings) == 0:
        return None
    chunks = strings.chunks if hasattr(strings, "chunks") else [strings]
    for dtype in (pa.int64(), pa.uint64()):
        if len(chunks) > 1 and len(strings) >= _THREADED_IDS:
            with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
                parts = list(pool.map(lambda c, d=dtype: _parse_ids(pa, c, d), chunks))
        else:
            parts = [_parse_ids(pa, c, dtype) for c in chunks]
        if any(p is False for p in parts):
            return None  # parsed, but written with a sign, padding or blanks
        if any(p is None for p in parts):
            continue
        return np.concatenate(parts) if len(parts) > 1 else parts[0]
    return None


def _parse_ids(pa: Any, chunk: Any, dtype: Any) -> np.ndarray | bool | None:
    """The chunk parsed (``None``: not integers of ``dtype``; ``False``: not canonical)."""
    try:
        ids = pa.compute.cast(chunk, dtype).to_numpy()
    except (pa.ArrowInvalid, OverflowError):
        return None
    length = pa.compute.binary_length(chunk).to_numpy()
    return ids if np.array_equal(length, _digits(ids)) else False


def _digits(ids: np.ndarray) -> np.ndarray:
    """The length of each integer written canonically (``-`` included)."""
    powers = np.array([10**k for k in range(1, 20)], dtype=np.uint64)
    magnitude = ids.astype(np.uint64) if ids.dtype.kind == "u" else np.abs(ids).astype(np.uint64)
    if ids.dtype.kind == "i":
        magnitude[ids == np.iinfo(np.int64).min] = np.uint64(2**63)
    length = np.searchsorted(powers, magnitude, side="right").astype(np.int32) + 1
    if ids.dtype.kind == "i":
        length += ids < 0
    return length


def ids_of_text(column: Any) -> np.ndarray:
    """A pyarrow text column of node ids as int64/uint64 where every id is a canonical integer
    (blanks around it allowed), else as an object array of its text."""
    pa = pyarrow_or_none()
    ids = id_array(column) if len(column) else None
    if ids is None and len(column):
        ids = id_array(pa.compute.utf8_trim_whitespace(column))
    return ids if ids is not None else column.to_numpy(zero_copy_only=False)
