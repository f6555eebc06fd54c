"""Generators of structured and random sparsity patterns.

Each returns a :class:`~sparselinear.Connectivity` and builds only index arrays whose size is
proportional to nnz; none allocates a dense ``out x in`` array.
"""

from __future__ import annotations

import numpy as np
import torch

from ._sources import check_shape
from .connectivity import Connectivity
from .errors import ShapeError

__all__ = ["random_pattern"]


def _resolve_nnz(total: int, nnz: int | None, density: float | None) -> int:
    if (nnz is None) == (density is None):
        raise ShapeError("Pass exactly one of 'nnz' or 'density'.")
    if density is not None:
        if not 0.0 <= float(density) <= 1.0:
            raise ShapeError(f"'density' must lie in [0, 1]; got {density}.")
        return int(round(float(density) * total))
    if int(nnz) != nnz or not 0 <= nnz <= total:
        raise ShapeError(f"'nnz' must be an integer in [0, {total}] for this shape; got {nnz}.")
    return int(nnz)


def random_pattern(
    n_out: int,
    n_in: int,
    *,
    nnz: int | None = None,
    density: float | None = None,
    seed: int | None = None,
) -> Connectivity:
    """Edges drawn uniformly without replacement. See :meth:`Connectivity.random`."""
    n_out, n_in = check_shape((n_out, n_in))
    total = n_out * n_in
    k = _resolve_nnz(total, nnz, density)
    rng = np.random.default_rng(seed)
    keys = rng.choice(total, size=k, replace=False) if k else np.zeros(0, dtype=np.int64)
    keys = np.sort(keys.astype(np.int64, copy=False))
    keys_t = torch.from_numpy(keys)
    rows, cols = keys_t // n_in, keys_t % n_in
    del keys, keys_t
    return Connectivity._from_coordinates(rows, cols, (n_out, n_in))
