"""The transposed pattern of a CSR pattern, built only when something needs it.

The forward pass and, on CPU with the compiled kernels, the fused backward pass read only the
canonical CSR ``(crow, col)``. The transposed CSR ``(crow_t, row_t, perm)`` is needed by the
input gradient of torch's kernels, by the compiled backward over the transposed pattern (wide
batches), by [`Connectivity.transpose`][sparselinear.Connectivity.transpose] and by structured
layers that multiply by ``Wᵀ``. It costs ``in + 1 + 2 · nnz`` indices, so it is built on first use
and kept in a [`DerivedCache`][sparselinear.pattern.DerivedCache] that knows which index tensors it
was built from.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

import torch

__all__ = [
    "DerivedCache",
    "PatternCaches",
    "transpose_order",
    "transposed_cache",
    "transposed_pattern",
]

T = TypeVar("T")


def transpose_order(
    crow: torch.Tensor, col: torch.Tensor, n_in: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """CSR of the transposed pattern: ``(crow_t, row_t, perm)`` with ``values_t = values[perm]``.

    ``col`` is in CSR order, so a stable sort by column keeps rows sorted within each column.
    The results have the index dtype and device of ``col``. Building them peaks at about
    ``2 · (index_itemsize + 8) · nnz`` bytes on CPU (the stable sort's values, int64 indices and
    workspace), released on return but for the results.
    """
    perm = torch.sort(col, stable=True).indices.to(col.dtype)
    # The row of the edge at CSR position p is the last r with crow[r] <= p.
    row_t = torch.searchsorted(
        crow.to(col.dtype), perm, right=True, out_int32=col.dtype == torch.int32
    )
    row_t.sub_(1)
    crow_t = torch.zeros(n_in + 1, dtype=col.dtype, device=col.device)
    torch.cumsum(torch.bincount(col, minlength=n_in), 0, out=crow_t[1:])
    return crow_t, row_t, perm


def _version(t: torch.Tensor) -> int:
    # Inference tensors have no version counter (and cannot be changed outside inference mode).
    return -1 if t.is_inference() else t._version


def _key(crow: torch.Tensor, col: torch.Tensor) -> tuple:
    return (crow.data_ptr(), col.data_ptr(), _version(crow), _version(col), col.device)


class DerivedCache(Generic[T]):
    """One value derived from a pattern's ``(crow, col)`` index tensors, rebuilt when they change.

    The value is valid while ``crow`` and ``col`` are the very tensors it was built from (held by
    weak reference, so the cache never keeps them alive) with the same storage and the same
    version counter: moving them (``module.to(device)``) or copying into them in place
    (``load_state_dict``) makes the next [`get`][sparselinear.pattern.DerivedCache.get] rebuild. The
    entry is replaced as a whole, so a concurrent reader sees either the old entry or the new one;
    two threads may both build. Copies and pickles of a cache start empty.
    """

    __slots__ = ("_entry",)

    def __init__(self) -> None:
        self._entry: tuple | None = None

    def peek(self, crow: torch.Tensor, col: torch.Tensor) -> T | None:
        """The cached value if it was built from ``crow`` and ``col`` as they are now, else
        ``None``; never builds."""
        entry = self._entry
        if entry is None:
            return None
        crow_ref, col_ref, key, value = entry
        if crow_ref() is not crow or col_ref() is not col or key != _key(crow, col):
            return None
        return value

    def get(self, crow: torch.Tensor, col: torch.Tensor, build: Callable[[], T]) -> T:
        """The cached value for ``crow`` and ``col``, calling ``build()`` first if needed."""
        value = self.peek(crow, col)
        if value is None:
            value = build()
            self.put(crow, col, value)
        return value

    def put(self, crow: torch.Tensor, col: torch.Tensor, value: T) -> None:
        """Cache ``value`` as derived from ``crow`` and ``col``."""
        self._entry = (weakref.ref(crow), weakref.ref(col), _key(crow, col), value)

    def clear(self) -> None:
        """Drop the cached value."""
        self._entry = None

    def __reduce__(self):
        return (type(self), ())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({'empty' if self._entry is None else 'filled'})"


class PatternCaches(Generic[T]):
    """One [`DerivedCache`][sparselinear.pattern.DerivedCache] per live index tensor, for values
    derived from patterns that are not owned by an object that could hold them (e.g. a pattern
    passed to the functional form). An entry is dropped when its tensor is freed; ``key in caches``
    tests ``id(tensor)``.
    """

    __slots__ = ("_caches", "_lock")

    def __init__(self) -> None:
        self._caches: dict[int, DerivedCache[T]] = {}
        self._lock = threading.Lock()

    def for_tensor(self, tensor: torch.Tensor) -> DerivedCache[T]:
        """The cache of ``tensor``, created (empty) on first request."""
        key = id(tensor)
        with self._lock:
            cache = self._caches.get(key)
            if cache is None:
                cache = self._caches[key] = DerivedCache()
                weakref.finalize(tensor, self._caches.pop, key, None)
            return cache

    def existing(self, tensor: torch.Tensor) -> DerivedCache[T] | None:
        """The cache of ``tensor`` if one was created, else ``None``; never creates."""
        with self._lock:
            return self._caches.get(id(tensor))

    def __contains__(self, key: int) -> bool:
        return key in self._caches


_transposed: PatternCaches[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = PatternCaches()


def transposed_cache(col: torch.Tensor) -> DerivedCache:
    """The cache of the transposed pattern of the pattern whose column indices are ``col``: one
    per live index tensor, shared by everything that reads that pattern (a layer, the views of
    its connectivity, the kernels), freed with the tensor."""
    return _transposed.for_tensor(col)


def transposed_pattern(
    crow: torch.Tensor, col: torch.Tensor, n_in: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(crow_t, row_t, perm)`` of the pattern ``(crow, col)`` with ``n_in`` columns, built on
    first use ([`transpose_order`][sparselinear.pattern.transpose_order]) and kept while ``crow``
    and ``col`` are unchanged."""
    return transposed_cache(col).get(crow, col, lambda: transpose_order(crow, col, n_in))
