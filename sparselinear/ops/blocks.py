"""Column blocks for the compiled fused backward pass of large layers.

The fused backward pass gathers one row of the saved input ``(in, batch)`` and scatters into one
row of a per-thread input-gradient buffer for every edge, at random. Once those tables outgrow
the last-level cache, each edge costs a trip to memory and the time per edge doubles or more.
Cutting the columns into blocks, each small enough for its slices of the tables to stay in
cache, and sweeping the pattern once per block brings part of it back (figures in
BENCHMARKS.md). How many blocks a backward pass uses is
[`policy.backward_blocks`][sparselinear.kernels.backward_blocks]'s decision; this module builds and
keeps the layout.

A sweep reads its block's column indices from a block-ordered copy of them (``col_blk``: one
index per edge, kept beside the pattern), and the values and weight gradients in place, in the
CSR order, through each row's run position (``run``). The copy is built on first use and kept
for as long as the pattern's index tensors live unchanged (see
[`PatternCaches`][sparselinear.pattern.PatternCaches]): it costs
``index_itemsize · (nnz + n_blocks · (2 · out + 1))`` bytes
([`policy.layout_bytes`][sparselinear.kernels.layout_bytes]), which is why blocks are used only when
the tables outgrow the cache (``policy.CACHE_BYTES``); a backward pass that runs without blocks (a
narrower batch, ``policy.CACHE_BYTES = 0``) drops it. Like the transposed pattern, it follows
changes to the pattern's index tensors through their version counters: writing into them behind
autograd's back (``.data``, ``.numpy()``) leaves it stale.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from ..pattern.caches import PatternCaches
from . import _ext

__all__ = ["BlockLayout", "forget", "layout"]


class BlockLayout(NamedTuple):
    """The pattern in column blocks (see ``sparselinear.ops._ext.block_layout``)."""

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
