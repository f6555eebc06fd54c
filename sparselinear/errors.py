"""Exceptions raised by sparselinear.

Every error derives from :class:`SparseLinearError` and from the matching builtin
(:class:`ValueError` or :class:`TypeError`), so both ``except SparseLinearError`` and ordinary
``except ValueError`` clauses catch them.
"""

from __future__ import annotations

__all__ = [
    "DataError",
    "DeviceMismatchError",
    "DuplicateEdgeError",
    "PatternError",
    "ShapeError",
    "SparseLinearError",
    "SparseLinearTypeError",
    "WiringMismatchError",
]


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
    """Input data is malformed: NaN values, unknown names, unparsable fields."""


class InsufficientMemoryError(SparseLinearError, MemoryError):
    """The estimated memory of a step exceeds what the device has."""


class MissingDependencyError(SparseLinearError, ImportError):
    """An optional dependency needed for this feature is not installed."""
