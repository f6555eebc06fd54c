"""Exceptions raised by sparselinear, and the helpers that write their messages.

Every error derives from [`SparseLinearError`][sparselinear.errors.SparseLinearError] and from the
matching builtin (``ValueError``, ``TypeError``, ``MemoryError`` or ``ImportError``), so both
``except SparseLinearError`` and ordinary ``except ValueError`` clauses catch them.

Messages follow one form: what was expected, what was given
([`describe`][sparselinear.errors.describe]: type, shape and dtype, never values), and how to fix
it. Lists of offending items stop after [`MAX_LISTED`][sparselinear.errors.MAX_LISTED] entries
([`listing`][sparselinear.errors.listing]).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = [
    "MAX_LISTED",
    "DataError",
    "DeviceMismatchError",
    "DuplicateEdgeError",
    "InsufficientMemoryError",
    "MissingDependencyError",
    "PatternError",
    "ShapeError",
    "SparseLinearError",
    "SparseLinearTypeError",
    "WiringMismatchError",
    "check_choice",
    "describe",
    "listing",
]

#: Offending items named in one message; the rest are counted ("and 12 more").
MAX_LISTED = 5


class SparseLinearError(Exception):
    """Base class of every error raised by sparselinear."""


class PatternError(SparseLinearError, ValueError):
    """A sparsity pattern is invalid: negative or out-of-range indices, a bad layout."""


class DuplicateEdgeError(PatternError):
    """The same (output, input) edge appears more than once."""


class ShapeError(SparseLinearError, ValueError):
    """A shape disagrees with what the layer or pattern expects."""


class SparseLinearTypeError(SparseLinearError, TypeError):
    """An argument has the wrong type or dtype."""


class DeviceMismatchError(SparseLinearError, ValueError):
    """Tensors that must share a device do not."""


class WiringMismatchError(SparseLinearError, ValueError):
    """A checkpoint was made for a layer with a different connectivity."""


class DataError(SparseLinearError, ValueError):
    """Input data is malformed: NaN values, unknown names, unparsable fields, a bad option."""


class InsufficientMemoryError(SparseLinearError, MemoryError):
    """The estimated memory of a step exceeds what the device has."""


class MissingDependencyError(SparseLinearError, ImportError):
    """An optional dependency needed for this feature is not installed."""


def describe(obj: Any) -> str:
    """A short description of ``obj`` for error messages: type, shape and dtype, never values.

    Examples:
        >>> import torch
        >>> describe(torch.zeros(2, 3))
        'Tensor, shape (2, 3), dtype torch.float32'
    """
    parts = [type(obj).__name__]
    shape = getattr(obj, "shape", None)
    if shape is not None:
        parts.append(f"shape {tuple(shape)}")
    dtype = getattr(obj, "dtype", None)
    if dtype is not None:
        parts.append(f"dtype {dtype}")
    return ", ".join(parts)


def listing(items: Iterable[Any], total: int | None = None, sep: str = ", ") -> str:
    """The first [`MAX_LISTED`][sparselinear.errors.MAX_LISTED] of ``items`` joined by ``sep``, then
    ``" and N more"`` when ``total`` (default: the number of items) exceeds the number shown. Pass
    only the first items and the ``total`` when there are many.

    Examples:
        >>> listing(range(8))
        '0, 1, 2, 3, 4 and 3 more'
        >>> listing(["(0, 1)", "(2, 2)"], total=9, sep="; ")
        '(0, 1); (2, 2) and 7 more'
    """
    items = list(items)
    shown = [str(item) for item in items[:MAX_LISTED]]
    rest = (len(items) if total is None else total) - len(shown)
    return sep.join(shown) + (f" and {rest} more" if rest > 0 else "")


def check_choice(value: Any, choices: Iterable[str], name: str, hint: str = "",
                 error: type[SparseLinearError] = DataError) -> str:
    """Return ``value`` if it is one of ``choices``, else raise ``error`` (a ``ValueError``
    subclass by default) naming the argument, the choices, what was given and ``hint``.

    Examples:
        >>> check_choice("sum", ("sum", "max"), "duplicates")
        'sum'
    """
    choices = tuple(choices)
    if not isinstance(value, str) or value not in choices:
        raise error(
            f"'{name}' must be one of {', '.join(map(repr, choices))}; got {value!r}."
            + (f" {hint}" if hint else "")
        )
    return value
