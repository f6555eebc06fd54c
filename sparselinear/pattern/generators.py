"""Generators of structured and random sparsity patterns, as plain index arrays.

Each returns ``Coordinates`` or ``CSRArrays`` (int64 tensors and a shape) that
[`Connectivity`][sparselinear.Connectivity] validates and wraps (``Connectivity.tril(...)`` and the
other classmethods); none allocates a dense ``out x in`` array, only arrays proportional to nnz.
Random generators take a ``seed`` and give the same pattern for the same seed.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

from ..errors import ShapeError, SparseLinearTypeError, describe
from .sources import Shape, check_shape

__all__ = [
    "CSRArrays",
    "Coordinates",
    "band",
    "block_diagonal",
    "diagonal",
    "fixed_fan_in",
    "random_pattern",
    "resolve_nnz",
    "small_world",
    "tril",
    "triu",
]


class Coordinates(NamedTuple):
    """Edges as int64 ``rows`` (outputs) and ``cols`` (inputs), in any order, and the shape."""

    rows: torch.Tensor
    cols: torch.Tensor
    shape: Shape


class CSRArrays(NamedTuple):
    """Edges as int64 CSR arrays ``crow (out + 1,)`` and ``col (nnz,)``, and the shape."""

    crow: torch.Tensor
    col: torch.Tensor
    shape: Shape


def resolve_nnz(total: int, nnz: int | None, density: float | None) -> int:
    """The number of edges asked for by exactly one of ``nnz`` or ``density`` (a fraction of
    ``total`` positions), checked to lie in ``[0, total]``.

    Examples:
        >>> resolve_nnz(100, None, 0.25)
        25
    """
    if (nnz is None) == (density is None):
        raise ShapeError("Pass exactly one of 'nnz' or 'density'.")
    if density is not None:
        if not 0.0 <= float(density) <= 1.0:
            raise ShapeError(f"'density' must lie in [0, 1]; got {density}.")
        return round(float(density) * total)
    if int(nnz) != nnz or not 0 <= nnz <= total:
        raise ShapeError(f"'nnz' must be an integer in [0, {total}] for this shape; got {nnz}.")
    return int(nnz)


def _check_int(value: Any, name: str, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise SparseLinearTypeError(f"'{name}' must be an int; got {describe(value)}.")
    if minimum is not None and value < minimum:
        raise ShapeError(f"'{name}' must be >= {minimum}; got {value}.")
    return int(value)


def random_pattern(
    n_out: int,
    n_in: int,
    *,
    nnz: int | None = None,
    density: float | None = None,
    seed: int | None = None,
) -> Coordinates:
    """Edges drawn uniformly without replacement. See
    [`Connectivity.random`][sparselinear.Connectivity.random]."""
    n_out, n_in = check_shape((n_out, n_in))
    total = n_out * n_in
    k = resolve_nnz(total, nnz, density)
    rng = np.random.default_rng(seed)
    keys = rng.choice(total, size=k, replace=False) if k else np.zeros(0, dtype=np.int64)
    keys = np.sort(keys.astype(np.int64, copy=False))
    keys_t = torch.from_numpy(keys)
    rows, cols = keys_t // n_in, keys_t % n_in
    del keys, keys_t
    return Coordinates(rows, cols, (n_out, n_in))


# ---------------------------------------------------------------------- structured patterns
def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + n)`` for every ``(s, n)``, without a Python loop."""
    ptr = np.zeros(lengths.size + 1, dtype=np.int64)
    np.cumsum(lengths, out=ptr[1:])
    return np.arange(ptr[-1], dtype=np.int64) + np.repeat(starts - ptr[:-1], lengths)


def _from_row_ranges(n_out: int, n_in: int, lo: np.ndarray, hi: np.ndarray) -> CSRArrays:
    """Pattern where output ``i`` sees inputs ``[lo[i], hi[i])`` (clipped to ``[0, n_in)``)."""
    lo = np.clip(lo, 0, n_in)
    hi = np.clip(hi, 0, n_in)
    counts = np.maximum(hi - lo, 0)
    crow = np.zeros(n_out + 1, dtype=np.int64)
    np.cumsum(counts, out=crow[1:])
    cols = _ranges(lo, counts)
    return CSRArrays(torch.from_numpy(crow), torch.from_numpy(cols), (n_out, n_in))


def tril(n_out: int, n_in: int, diagonal: int = 0) -> CSRArrays:
    """Lower triangle ``j <= i + diagonal``. See
    [`Connectivity.tril`][sparselinear.Connectivity.tril]."""
    n_out, n_in = check_shape((n_out, n_in))
    i = np.arange(n_out, dtype=np.int64)
    return _from_row_ranges(n_out, n_in, np.zeros_like(i), i + _check_int(diagonal, "diagonal") + 1)


def triu(n_out: int, n_in: int, diagonal: int = 0) -> CSRArrays:
    """Upper triangle ``j >= i + diagonal``. See
    [`Connectivity.triu`][sparselinear.Connectivity.triu]."""
    n_out, n_in = check_shape((n_out, n_in))
    i = np.arange(n_out, dtype=np.int64)
    start = i + _check_int(diagonal, "diagonal")
    return _from_row_ranges(n_out, n_in, start, np.full_like(i, n_in))


def diagonal(n_out: int, n_in: int, offset: int = 0) -> CSRArrays:
    """Edges ``(i, i + offset)``. See
    [`Connectivity.diagonal`][sparselinear.Connectivity.diagonal]."""
    n_out, n_in = check_shape((n_out, n_in))
    start = np.arange(n_out, dtype=np.int64) + _check_int(offset, "offset")
    return _from_row_ranges(n_out, n_in, start, start + 1)


def band(n_out: int, n_in: int, lower: int, upper: int) -> CSRArrays:
    """Edges ``(i, j)`` with ``i - lower <= j <= i + upper``.

    Args:
        n_out: the number of outputs (rows).
        n_in: the number of inputs (columns).
        lower: number of sub-diagonals kept (below the main diagonal), ``>= 0``.
        upper: number of super-diagonals kept, ``>= 0``.

    Examples:
        >>> from sparselinear import Connectivity
        >>> Connectivity.band(4, 4, lower=1, upper=0).to_dense().int()
        tensor([[1, 0, 0, 0],
                [1, 1, 0, 0],
                [0, 1, 1, 0],
                [0, 0, 1, 1]], dtype=torch.int32)
    """
    n_out, n_in = check_shape((n_out, n_in))
    lower, upper = _check_int(lower, "lower", 0), _check_int(upper, "upper", 0)
    i = np.arange(n_out, dtype=np.int64)
    return _from_row_ranges(n_out, n_in, i - lower, i + upper + 1)


def _is_pattern(block: Any) -> bool:
    """Whether ``block`` is a pattern object (a ``Connectivity``: a shape and ``indices()``)."""
    return not isinstance(block, (torch.Tensor, tuple, list)) and callable(
        getattr(block, "indices", None)
    )


def block_diagonal(sizes: Sequence[Any]) -> Coordinates:
    """Blocks placed along the diagonal, each below and right of the previous one.

    Args:
        sizes: a list whose entries are ``(rows, cols)`` (a dense block), an int ``n`` (a dense
            ``n x n`` block) or a [`Connectivity`][sparselinear.Connectivity] (placed with its own
            pattern).

    Examples:
        >>> from sparselinear import Connectivity
        >>> Connectivity.block_diagonal([(1, 2), 2]).to_dense().int()
        tensor([[1, 1, 0, 0],
                [0, 0, 1, 1],
                [0, 0, 1, 1]], dtype=torch.int32)
    """
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence):
        raise SparseLinearTypeError(
            f"'sizes' must be a list of (rows, cols) pairs, ints or Connectivity objects; got "
            f"{describe(sizes)}."
        )
    rows, cols = [], []
    r0 = c0 = 0
    for b, block in enumerate(sizes):
        if _is_pattern(block):
            idx = block.indices().cpu()
            r, c = block.shape
        else:
            if isinstance(block, numbers.Integral) and not isinstance(block, bool):
                block = (block, block)
            try:
                r, c = check_shape(block, f"sizes[{b}]")
            except ShapeError:
                raise ShapeError(
                    f"'sizes[{b}]' must be a (rows, cols) pair of non-negative ints, an int or a "
                    f"Connectivity; got {block!r}."
                ) from None
            idx = torch.stack([
                torch.arange(r, dtype=torch.int64).repeat_interleave(c),
                torch.arange(c, dtype=torch.int64).repeat(r),
            ])
        rows.append(idx[0] + r0)
        cols.append(idx[1] + c0)
        r0, c0 = r0 + r, c0 + c
    empty = torch.zeros(0, dtype=torch.int64)
    indices = torch.stack([torch.cat(rows or [empty]), torch.cat(cols or [empty])])
    return Coordinates(indices[0], indices[1], (r0, c0))


# ---------------------------------------------------------------------- random structured
def _group_of(keys: np.ndarray, start: np.ndarray) -> np.ndarray:
    return np.searchsorted(start, keys, side="right") - 1


def _distinct_keys(draw: np.ndarray, sizes: np.ndarray, start: np.ndarray, rng) -> np.ndarray:
    """Sorted global keys: ``draw[g]`` distinct values from ``[start[g], start[g] + sizes[g])``.

    Rejection sampling: duplicates are redrawn until none remain; callers keep
    ``draw <= sizes / 2`` so each redraw succeeds with probability at least one half.
    """
    groups = np.repeat(np.arange(draw.size, dtype=np.int64), draw)
    keys = start[groups]
    keys += rng.integers(0, sizes[groups])
    keys.sort()
    del groups
    repeated = np.zeros(keys.size, dtype=bool)
    repeated[1:] = keys[1:] == keys[:-1]
    pending = _group_of(keys[repeated], start)
    accepted = keys[~repeated]
    del keys, repeated
    while pending.size:
        cand = start[pending] + rng.integers(0, sizes[pending])
        order = np.argsort(cand, kind="stable")
        cand, pending = cand[order], pending[order]
        ok = np.ones(cand.size, dtype=bool)
        ok[1:] = cand[1:] != cand[:-1]
        pos = np.searchsorted(accepted, cand)
        hit = pos < accepted.size
        hit[hit] = accepted[pos[hit]] == cand[hit]
        ok &= ~hit
        accepted = np.sort(np.concatenate([accepted, cand[ok]]), kind="stable")
        pending = pending[~ok]
    return accepted


def _distinct_per_group(
    sizes: np.ndarray, counts: np.ndarray, rng
) -> tuple[np.ndarray, np.ndarray]:
    """For every group ``g``: ``counts[g]`` distinct values in ``[0, sizes[g])``, uniformly.

    Returns ``(group, value)`` sorted by group then value. Work and memory are proportional to
    ``sum(counts)``: groups more than half full are drawn as their complement.
    """
    start = np.zeros(sizes.size, dtype=np.int64)
    np.cumsum(sizes[:-1], out=start[1:])
    dense = 2 * counts > sizes
    draw = np.where(dense, sizes - counts, counts)
    keys = _distinct_keys(draw, sizes, start, rng)
    if dense.any():
        in_dense = np.repeat(dense, draw)  # keys are sorted by group, draw[g] of each
        excluded, chosen = keys[in_dense], keys[~in_dense]
        full = _ranges(start[dense], sizes[dense])
        pos = np.searchsorted(excluded, full)
        drop = pos < excluded.size
        drop[drop] = excluded[pos[drop]] == full[drop]
        keys = np.sort(np.concatenate([chosen, full[~drop]]))
    group = np.repeat(np.arange(sizes.size, dtype=np.int64), counts)
    return group, keys - start[group]


def fixed_fan_in(n_out: int, n_in: int, k: int, *, seed: int | None = None) -> CSRArrays:
    """Each output gets exactly ``k`` distinct inputs, drawn uniformly without replacement.

    Args:
        n_out: the number of outputs (rows).
        n_in: the number of inputs (columns).
        k: inputs per output, ``0 <= k <= n_in``.
        seed: seed of the random generator; the same seed gives the same pattern.

    Examples:
        >>> from sparselinear import Connectivity
        >>> c = Connectivity.fixed_fan_in(1000, 500, 8, seed=0)
        >>> c.nnz, bool((c.fan_in() == 8).all())
        (8000, True)
    """
    n_out, n_in = check_shape((n_out, n_in))
    k = _check_int(k, "k", 0)
    if k > n_in:
        raise ShapeError(f"'k' must be at most n_in={n_in} (inputs are distinct); got {k}.")
    rng = np.random.default_rng(seed)
    rows, cols = _distinct_per_group(
        np.full(n_out, n_in, dtype=np.int64), np.full(n_out, k, dtype=np.int64), rng
    )
    crow = np.arange(n_out + 1, dtype=np.int64) * k
    del rows
    return CSRArrays(torch.from_numpy(crow), torch.from_numpy(cols), (n_out, n_in))


def _diagonal_counts(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray]:
    """Offsets ``k = i - j`` of every diagonal and the number of positions on each."""
    k = np.arange(-(n_out - 1), n_in, dtype=np.int64)
    counts = np.minimum(n_out, n_in - k) - np.maximum(0, -k)
    return k, np.maximum(counts, 0)


def _solve_exponent(distance: np.ndarray, counts: np.ndarray, target: float) -> float:
    """``lam`` with ``sum(counts * (distance + 1) ** -lam) == target`` by bisection."""

    def expected(lam: float) -> float:
        return float(np.dot(counts, (distance + 1.0) ** -lam))

    lo, hi = 0.0, 1.0
    while expected(hi) > target:
        lo, hi = hi, 2.0 * hi
        if hi > 1e4:
            floor = int(counts[distance == 0].sum())
            raise ShapeError(
                f"'nnz' is too small for the small-world pattern: at least about {floor + 1} "
                f"edges are needed for this shape; got {target:.0f}. Use a larger nnz or density."
            )
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if expected(mid) > target else (lo, mid)
    return 0.5 * (lo + hi)


def small_world(
    n_out: int,
    n_in: int,
    *,
    nnz: int | None = None,
    density: float | None = None,
    seed: int | None = None,
) -> Coordinates:
    r"""Bipartite small-world pattern, as ``small_world=True`` in ``sparselinear`` 0.0.5 (PyPI).

    Inputs and outputs are laid out on a line, the shorter layer centred on the longer one, so
    input ``j`` and output ``i`` lie ``d = |j - i + (n_out - n_in) / 2|`` apart. Each edge is
    present independently with probability ``(d + 1)^(-λ)``, with ``λ`` solved so that the
    expected number of edges is ``nnz``: mostly local connections plus a heavy tail of long-range
    ones. The number of edges is therefore random, close to ``nnz`` (within a few standard
    deviations, ``≤ √nnz``). Work and memory are proportional to nnz plus ``n_out + n_in``.

    Args:
        n_out: the number of outputs (rows).
        n_in: the number of inputs (columns).
        nnz: the expected number of edges (pass ``nnz`` or ``density``).
        density: the expected fraction of edges.
        seed: seed of the random generator; the same seed gives the same pattern.

    Examples:
        >>> from sparselinear import Connectivity
        >>> c = Connectivity.small_world(1000, 1000, density=0.01, seed=0)
        >>> abs(c.nnz - 10_000) < 400
        True
    """
    n_out, n_in = check_shape((n_out, n_in))
    total = n_out * n_in
    target = resolve_nnz(total, nnz, density)
    if target == 0:
        empty = torch.zeros(0, dtype=torch.int64)
        return Coordinates(empty, empty, (n_out, n_in))
    k, counts = _diagonal_counts(n_out, n_in)
    distance = np.abs(k + (n_out - n_in) / 2.0)
    lam = 0.0 if target == total else _solve_exponent(distance, counts, target)
    rng = np.random.default_rng(seed)
    taken = rng.binomial(counts, np.minimum((distance + 1.0) ** -lam, 1.0))
    diag, pos = _distinct_per_group(counts, taken, rng)
    rows = np.maximum(0, -k[diag]) + pos
    cols = rows + k[diag]
    return Coordinates(torch.from_numpy(rows), torch.from_numpy(cols), (n_out, n_in))
