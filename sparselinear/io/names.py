"""Node names carried by a :class:`~sparselinear.Connectivity`: validation and lookup."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..errors import DataError, ShapeError, SparseLinearTypeError, describe

Names = tuple[str, ...]


def check_names(names: Any, size: int, name: str) -> Names | None:
    """Return ``names`` as a tuple of ``size`` distinct non-empty strings (or ``None``)."""
    if names is None:
        return None
    if isinstance(names, str) or not isinstance(names, (Sequence, np.ndarray)):
        raise SparseLinearTypeError(
            f"'{name}' must be a sequence of strings (one per node) or None; got "
            f"{describe(names)}."
        )
    out = tuple(names)
    bad = next((i for i, n in enumerate(out) if not isinstance(n, str)), None)
    if bad is not None:
        raise SparseLinearTypeError(
            f"'{name}' must hold strings; entry {bad} is {describe(out[bad])}. Convert node ids "
            "with `[str(n) for n in nodes]`."
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


def lookup(
    names: Names | None, index: dict[str, int], query: str | Sequence[str], axis: str
) -> int | torch.Tensor:
    """Index of one name (an ``int``) or of several (an int64 tensor) along ``axis``."""
    if names is None:
        raise DataError(
            f"This pattern has no {axis} names. Build it with `Connectivity.from_edgelist(...)` "
            "or attach names with `.with_names(out_names, in_names)`."
        )
    single = isinstance(query, str)
    queries = [query] if single else list(query)
    try:
        found = [index[q] for q in queries]
    except (KeyError, TypeError):
        missing = next(q for q in queries if not isinstance(q, str) or q not in index)
        close = difflib.get_close_matches(str(missing), names, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise DataError(f"Unknown {axis} name {missing!r}.{hint}") from None
    return found[0] if single else torch.tensor(found, dtype=torch.int64)
