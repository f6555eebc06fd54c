"""Host memory for the compiled kernels: huge-page gather tables and recycled gradients.

Large buffers are mapped on their own (anonymous ``mmap``) instead of coming from the heap:

* ``empty`` gives gather tables on 2 MB transparent huge pages where that pays, and freeing
  one returns its memory to the OS at once instead of leaving a hole in the heap that inflates
  the resident set;
* ``recycled_empty`` gives weight-gradient buffers whose memory is kept when the tensor is
  freed (``optimizer.zero_grad()``) and handed to the next request of the same size (the next
  backward pass), as PyTorch's CUDA caching allocator does. Memory fresh from the OS costs a page
  fault and a page clear for every 4 KB on first touch; a recycled buffer costs none.
  ``release_idle`` returns the kept memory; at most ``RECYCLE_IDLE_BYTES`` of it is
  kept. Like any tensor over memory it
  does not own, such a gradient cannot be resized in place (``resize_``); every other tensor
  operation works on it.
"""

from __future__ import annotations

import mmap
import threading
import weakref

import numpy as np
import torch

__all__ = ["empty", "idle_bytes", "recycled_empty", "release_idle"]

#: Tables of at least this many bytes whose rows (the last dimension: one batch vector) take at
#: most ``HUGEPAGE_MAX_ROW_BYTES`` are mapped on their own on 2 MB transparent huge pages.
#: The kernels gather such rows at random, which on 4 KB pages misses the TLB once the table
#: passes a few MB (the figures: BENCHMARKS.md, "Tuning constants").
HUGEPAGE_MIN_BYTES = 4 << 20
#: Wider rows amortise a TLB miss over more bytes, and faulting in fresh huge pages every step
#: then costs more than it saves.
HUGEPAGE_MAX_ROW_BYTES = 256
_HUGEPAGE = 2 << 20

#: Buffers of at least this many bytes are recycled by ``recycled_empty``; smaller ones come
#: from the heap, which reuses freed memory by itself.
RECYCLE_MIN_BYTES = 4 << 20
#: At most this many bytes of freed buffers are kept for reuse (the oldest go first).
RECYCLE_IDLE_BYTES = 1 << 30

_CAN_MAP = hasattr(mmap, "MAP_ANONYMOUS") and hasattr(mmap, "MADV_HUGEPAGE")
_lock = threading.RLock()  # a finalizer may run inside a locked section (garbage collection)
_idle: list[tuple[int, mmap.mmap]] = []  # (bytes asked for, mapping), oldest first


def _map(nbytes: int) -> mmap.mmap:
    """An anonymous private mapping of ``nbytes`` plus one huge page of slack for alignment,
    advised to be backed by huge pages from its first 2 MB boundary on."""
    region = mmap.mmap(-1, nbytes + _HUGEPAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    start = _aligned_start(region)
    region.madvise(mmap.MADV_HUGEPAGE, start, nbytes // _HUGEPAGE * _HUGEPAGE)
    return region


def _aligned_start(region: mmap.mmap) -> int:
    address = np.frombuffer(region, dtype=np.uint8, count=1).ctypes.data
    return (-address) % _HUGEPAGE


def _view(region: mmap.mmap, nbytes: int) -> np.ndarray:
    """The ``nbytes`` of ``region`` from its first huge-page boundary, as a uint8 array."""
    return np.frombuffer(region, dtype=np.uint8, count=nbytes, offset=_aligned_start(region))


def _as_tensor(array: np.ndarray, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    return torch.from_numpy(array).view(dtype).view(shape)


def _itemsize(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def empty(*shape: int, dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised contiguous CPU tensor for the kernels to gather rows of ``shape[-1]``
    values from, backed by huge pages where that pays (see ``HUGEPAGE_MIN_BYTES``)."""
    numel = 1
    for n in shape:
        numel *= n
    itemsize = _itemsize(dtype)
    nbytes = numel * itemsize
    narrow_rows = bool(shape) and shape[-1] * itemsize <= HUGEPAGE_MAX_ROW_BYTES
    if nbytes < HUGEPAGE_MIN_BYTES or not narrow_rows or not _CAN_MAP:
        return torch.empty(shape, dtype=dtype)
    return _as_tensor(_view(_map(nbytes), nbytes), shape, dtype)


def recycled_empty(numel: int, dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised 1-D CPU tensor of ``numel`` values whose memory, once the tensor and
    every view of it are freed, is kept for the next request of the same size (see the module
    docstring). Small requests, or where anonymous mappings are unavailable, use ``torch.empty``.
    """
    nbytes = numel * _itemsize(dtype)
    if nbytes < RECYCLE_MIN_BYTES or not _CAN_MAP:
        return torch.empty(numel, dtype=dtype)
    region = None
    with _lock:
        for i, (size, kept) in enumerate(_idle):
            if size == nbytes:
                region = kept
                del _idle[i]
                break
    if region is None:
        region = _map(nbytes)
    array = _view(region, nbytes)
    # Runs when the last tensor sharing the array's memory is freed, in whichever thread.
    weakref.finalize(array, _keep, nbytes, region).atexit = False
    return _as_tensor(array, (numel,), dtype)


def _keep(nbytes: int, region: mmap.mmap) -> None:
    with _lock:
        _idle.append((nbytes, region))
        total = sum(size for size, _ in _idle)
        while _idle and total > RECYCLE_IDLE_BYTES:
            total -= _idle.pop(0)[0]  # dropped: unmapped once collected


def idle_bytes() -> int:
    """Bytes of freed buffers kept for reuse by ``recycled_empty``."""
    with _lock:
        return sum(size for size, _ in _idle)


def release_idle() -> int:
    """Return the memory of every kept buffer to the OS; the number of bytes released."""
    with _lock:
        released = sum(size for size, _ in _idle)
        _idle.clear()
    return released
