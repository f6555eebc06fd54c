"""Node names carried by a [`Connectivity`][sparselinear.Connectivity]: validation, lookup, and
their encoding in checkpoints (a uint8 tensor of UTF-8 JSON, ``encode_names``).

Names are either a tuple of strings or, for integer node ids (connectome root ids, body ids), a
read-only 1-D integer array (int64 or uint64): ids stay integers, never turned into text.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..errors import (
    DataError,
    ShapeError,
    SparseLinearTypeError,
    WiringMismatchError,
    describe,
)

Names = tuple[str, ...] | np.ndarray

__all__ = ["Names", "check_names", "decode_names", "encode_names", "is_id_array", "lookup",
           "same_names"]


def is_id_array(names: Any) -> bool:
    """Whether ``names`` is an integer id array (rather than a tuple of strings)."""
    return isinstance(names, np.ndarray) and names.dtype.kind in "iu"


def _integer_ids(names: Any) -> np.ndarray | None:
    """``names`` as an int64/uint64 array when every entry is an integer (not a bool)."""
    if isinstance(names, torch.Tensor):
        names = names.detach().cpu().numpy()
    if isinstance(names, np.ndarray):
        return names if names.dtype.kind in "iu" else None
    if len(names) and all(isinstance(n, (int, np.integer)) and not isinstance(n, (bool, np.bool_))
                          for n in names):
        try:
            return np.asarray(names, dtype=np.int64)
        except OverflowError:
            try:
                return np.asarray(names, dtype=np.uint64)
            except OverflowError:
                return None
    return None


def _check_ids(ids: np.ndarray, size: int, name: str) -> np.ndarray:
    if ids.ndim != 1:
        raise ShapeError(f"'{name}' must be 1-D, one id per node; got shape {tuple(ids.shape)}.")
    if ids.size != size:
        raise ShapeError(f"'{name}' must have {size} entries, one per node; got {ids.size}.")
    ordered = np.sort(ids)
    same = np.flatnonzero(ordered[1:] == ordered[:-1])
    if same.size:
        raise DataError(f"'{name}' must be distinct; {int(ordered[same[0]])!r} appears more than "
                        "once.")
    out = np.array(ids, dtype=np.uint64 if ids.dtype.kind == "u" else np.int64)
    out.flags.writeable = False
    return out


def check_names(names: Any, size: int, name: str) -> Names | None:
    """Return ``names`` as a tuple of ``size`` distinct non-empty strings, or as a read-only
    integer id array when they are integers (or ``None``)."""
    if names is None:
        return None
    if isinstance(names, str) or not isinstance(names, (Sequence, np.ndarray, torch.Tensor)):
        raise SparseLinearTypeError(
            f"'{name}' must be a sequence of strings or integer ids (one per node) or None; got "
            f"{describe(names)}."
        )
    ids = _integer_ids(names)
    if ids is not None:
        return _check_ids(ids, size, name)
    out = tuple(names.tolist() if isinstance(names, (np.ndarray, torch.Tensor)) else names)
    bad = next((i for i, n in enumerate(out) if not isinstance(n, str)), None)
    if bad is not None:
        raise SparseLinearTypeError(
            f"'{name}' must hold strings or integer ids; entry {bad} is {describe(out[bad])}. "
            "Convert node ids with `[str(n) for n in nodes]`."
        )
    if len(out) != size:
        raise ShapeError(f"'{name}' must have {size} entries, one per node; got {len(out)}.")
    empty = next((i for i, n in enumerate(out) if not n.strip()), None)
    if empty is not None:
        raise DataError(f"'{name}' entry {empty} is empty; every node needs a name.")
    if len(set(out)) != len(out):
        seen: set[str] = set()
        dup = next(n for n in out if n in seen or seen.add(n))
        raise DataError(f"'{name}' must be distinct; {dup!r} appears more than once.")
    return out


def same_names(a: Names | None, b: Names | None) -> bool:
    """Whether two name lists are the same nodes in the same order (``None`` equals ``None``)."""
    if a is None or b is None:
        return a is b
    if is_id_array(a) != is_id_array(b):
        return False
    if is_id_array(a):
        return a.shape == b.shape and bool(np.array_equal(a, b))
    return tuple(a) == tuple(b)


def _is_scalar(query: Any) -> bool:
    return isinstance(query, (str, int, np.integer)) and not isinstance(query, bool)


def lookup(
    names: Names | None, index: dict[Any, int], query: Any, axis: str
) -> int | torch.Tensor:
    """Index of one name or id (an ``int``) or of several (an int64 tensor) along ``axis``."""
    if names is None:
        raise DataError(
            f"This pattern has no {axis} names. Build it with `Connectivity.from_edgelist(...)` "
            "or attach names with `.with_names(out_names, in_names)`."
        )
    single = _is_scalar(query)
    queries = [query] if single else list(query)
    ids = is_id_array(names)
    try:
        found = [index[int(q) if ids and isinstance(q, np.integer) else q] for q in queries]
    except (KeyError, TypeError):
        missing = next(q for q in queries if q not in index)
        shown = [str(n) for n in names[:100_000]] if ids else names
        close = difflib.get_close_matches(str(missing), shown, n=3)
        hint = f" Did you mean {', '.join(close if ids else map(repr, close))}?" if close else ""
        kind = "id" if ids else "name"
        raise DataError(f"Unknown {axis} {kind} {missing!r}.{hint}") from None
    return found[0] if single else torch.tensor(found, dtype=torch.int64)


def encode_names(names: dict[str, Any]) -> torch.Tensor:
    """Node names as a uint8 tensor of UTF-8 JSON: text names as strings, integer ids (an
    integer array) with their dtype."""
    plain = {}
    for axis, value in names.items():
        if value is None:
            plain[axis] = None
        elif isinstance(value, np.ndarray):
            plain[axis] = {"ids": value.tolist(), "dtype": str(value.dtype)}
        else:
            plain[axis] = list(value)
    data = json.dumps(plain, ensure_ascii=False).encode()
    return torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else torch.zeros(0)


def decode_names(state: Any) -> dict[str, Any] | None:
    """The names of a checkpoint's extra state: a tensor from ``encode_names``, the dict
    that checkpoints of earlier versions hold, or ``None``."""
    if isinstance(state, torch.Tensor):
        try:
            plain = json.loads(bytes(state.detach().cpu().to(torch.uint8).tolist()).decode())
        except (UnicodeDecodeError, json.JSONDecodeError, ValueError):
            raise WiringMismatchError(
                f"The checkpoint's node names ('_extra_state', {describe(state)}) are not the "
                "UTF-8 JSON a layer saves; the checkpoint was edited or damaged."
            ) from None
        state = {
            axis: np.array(value["ids"], dtype=value["dtype"]) if isinstance(value, dict)
            else value
            for axis, value in plain.items()
        }
    return state if isinstance(state, dict) else None
