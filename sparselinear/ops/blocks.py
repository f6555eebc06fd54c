"""Column blocks for the compiled fused backward pass of large layers.

The fused backward pass gathers one row of the saved input ``(in, batch)`` and scatters into one
row of a per-thread input-gradient buffer for every edge, at random. Once those tables outgrow
the last-level cache, each edge costs a trip to memory and the time per edge doubles or more
(measured: 7-10 ns per edge while they fit, 18-24 ns at 3e7-1e8 edges). Cutting the columns
into blocks, each small enough for its slices of the tables to stay in cache, and sweeping the
pattern once per block brings part of it back (on the 2-core test machine, 48 MB cache, in a full
training step: the backward pass at 3e7 edges 368-484 ms -> 317-352 ms with 4 blocks, at 1e8
1.54 s -> 1.36 s with 11).

A sweep reads its block's column indices from a block-ordered copy of them (``col_blk``: one
index per edge, kept beside the pattern), and the values and weight gradients in place, in the
CSR order, through each row's run position (``run``). The copy is built on first use and kept
for as long as the pattern's index tensors live unchanged (see :class:`PatternCaches`): it costs
``index_itemsize · (nnz + n_blocks · (2 · out + 1))`` bytes, which is why blocks are used only
when the tables outgrow the cache (``torch_kernels.CACHE_BYTES``); a backward pass that runs without
blocks (a narrower batch, ``torch_kernels.CACHE_BYTES = 0``) drops it. Like the transposed pattern,
it follows changes to the pattern's index tensors through their version counters: writing into
them behind autograd's back (``.data``, ``.numpy()``) leaves it stale.
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path
from typing import NamedTuple

import torch

from ..errors import SparseLinearError
from ..pattern.caches import PatternCaches
from . import _ext, torch_kernels

__all__ = [
    "BlockLayout",
    "backward_blocks",
    "cache_bytes",
    "column_blocks",
    "forget",
    "layout",
    "layout_bytes",
]

#: Each block's share of the tables: this fraction of the cache (at 3e7 edges, 4 blocks of a
#: third beat 2 of two thirds and 8 of a sixth).
_BLOCK_SHARE = 3
#: Smallest share per block: on a CPU with a small last-level cache, many blocks of a few MB
#: would cost more in repeated passes over the output gradient than they save (at fly on the
#: 48 MB machine, 2-4 blocks of 7-13 MB took the backward pass from 106-132 ms to 85-105 ms,
#: 10 blocks of 2.7 MB to 134-146 ms).
_MIN_BLOCK_BYTES = 8 << 20
#: Fewest edges per row and block, on average: a guard against runs too short to pay for the
#: per-row work of a sweep (not tuned; 1e8 edges at fly's fan-in stay under it with 11 blocks).
_MIN_RUN = 8
_FALLBACK_CACHE = 32 << 20


def _from_environment() -> int | None:
    text = os.environ.get("SPARSELINEAR_CACHE_BYTES", "").strip()
    if not text:
        return None
    if not text.isdigit():
        raise SparseLinearError(
            f"SPARSELINEAR_CACHE_BYTES must be a number of bytes (0 disables column blocks); "
            f"got {text!r}. Unset it to use the CPU's last-level cache size."
        )
    return int(text)


@functools.lru_cache(maxsize=1)
def _detected_cache_bytes() -> int:
    sizes = []
    for entry in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        try:
            text = entry.read_text().strip().upper()
        except OSError:
            continue
        scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
        digits = text.rstrip("KMG")
        if digits.isdigit():
            sizes.append(int(digits) * scale)
    return max(sizes, default=_FALLBACK_CACHE)


def cache_bytes() -> int:
    """``torch_kernels.CACHE_BYTES``, else ``$SPARSELINEAR_CACHE_BYTES``, else the CPU's last-level
    cache size (32 MiB where unknown)."""
    if torch_kernels.CACHE_BYTES is not None:
        return int(torch_kernels.CACHE_BYTES)
    configured = _from_environment()
    return _detected_cache_bytes() if configured is None else configured


def column_blocks(n_in: int, n_out: int, nnz: int, batch: int, itemsize: int,
                  tables: int) -> int:
    """Column blocks for a backward sweep over ``tables`` gathered ``(in, batch)`` tables (the
    saved input, plus one input-gradient buffer per thread when the input needs a gradient):
    1 while they fit :func:`cache_bytes`, else enough for each block's slices to fill a third
    of it (at least :data:`_MIN_BLOCK_BYTES`, or the whole cache if smaller), at most one per
    :data:`_MIN_RUN` edges of a row and at most 64."""
    limit = cache_bytes()
    row = max(64, batch * itemsize)  # a gathered row costs at least one cache line
    footprint = n_in * row * tables
    if limit <= 0 or footprint <= limit or n_out == 0:
        return 1
    share = max(limit / _BLOCK_SHARE, min(_MIN_BLOCK_BYTES, limit))
    wanted = math.ceil(footprint / share)
    return max(1, min(wanted, nnz // (n_out * _MIN_RUN), 64, n_in))


def backward_blocks(n_in: int, n_out: int, nnz: int, batch: int, itemsize: int, threads: int,
                    input_grad: bool) -> int:
    """Column blocks of the compiled fused backward pass: sized for the saved input and one
    input-gradient buffer per thread (:func:`column_blocks`), so that a pattern keeps one layout
    whether or not its input needs a gradient; without it, blocks are used only if the saved
    input alone outgrows the cache."""
    if not input_grad and column_blocks(n_in, n_out, nnz, batch, itemsize, 1) == 1:
        return 1
    return column_blocks(n_in, n_out, nnz, batch, itemsize, 1 + threads)


class BlockLayout(NamedTuple):
    """The pattern in column blocks (see :func:`sparselinear._ext.block_layout`)."""

    n_blocks: int
    crow: torch.Tensor  # (n_blocks, out + 1)
    col: torch.Tensor  # (nnz,) block after block
    run: torch.Tensor  # (n_blocks, out)


_caches: PatternCaches[BlockLayout] = PatternCaches()  # per col tensor, freed with it


def layout(crow: torch.Tensor, col: torch.Tensor, n_in: int, n_blocks: int) -> BlockLayout:
    """The CSR pattern ``(crow, col)`` (contiguous, on CPU) in ``n_blocks`` column blocks, built
    once and kept while ``crow`` and ``col`` live unchanged; a different ``n_blocks`` (a batch
    of another width) replaces it, the old one dropped first."""
    cache = _caches.for_tensor(col)
    entry = cache.peek(crow, col)
    if entry is None or entry.n_blocks != n_blocks:
        cache.clear()
        entry = BlockLayout(n_blocks, *_ext.block_layout(crow, col, n_in, n_blocks))
        cache.put(crow, col, entry)
    return entry


def forget(col: torch.Tensor) -> None:
    """Drop the layout kept for ``col``, if any (a backward pass that no longer uses blocks)."""
    cache = _caches.existing(col)
    if cache is not None:
        cache.clear()


def layout_bytes(n_out: int, nnz: int, n_blocks: int, index_itemsize: int) -> int:
    """Memory of a :class:`BlockLayout` (0 for one block: none is built)."""
    if n_blocks <= 1:
        return 0
    return index_itemsize * (nnz + n_blocks * (2 * n_out + 1))
