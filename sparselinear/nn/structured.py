"""Structured linear maps built on sparse factors: triangular and positive definite layers.

Both are ordinary modules (usable in ``nn.Sequential``, trained by autograd) whose weights live on
a sparse pattern, so large ``n`` works when the pattern is banded or random; ``to_dense()``
exports the ``n x n`` matrix for small ``n``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ..constraints import Diagonal, constrain
from ..errors import (
    MAX_LISTED,
    DataError,
    PatternError,
    ShapeError,
    check_choice,
    describe,
    listing,
)
from ..pattern.caches import DerivedCache
from ..pattern.connectivity import Connectivity
from .functional import sparse_linear
from .linear import SparseLinear

__all__ = ["PositiveDefiniteLinear", "TriangularLinear", "triangular_pattern"]

_DIAGONALS = ("free", "unit", "positive", "negative")


def _check_n(n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ShapeError(f"'n' must be a non-negative int; got {n!r} ({type(n).__name__}).")
    return int(n)


def triangular_pattern(
    n: int,
    lower: bool = True,
    *,
    bandwidth: int | None = None,
    density: float | None = None,
    seed: int | None = None,
    diagonal: bool = True,
) -> Connectivity:
    r"""A lower (or upper) triangular pattern of shape ``(n, n)``.

    Args:
        n: the size.
        lower: lower (``i >= j``) or upper (``i <= j``) triangle. Default: ``True``.
        bandwidth: keep only ``|i - j| <= bandwidth`` (a band of ``bandwidth`` sub-diagonals).
        density: keep a uniformly random fraction ``density`` of the strictly triangular
            positions (drawn with ``seed``); the diagonal is kept whole.
        diagonal: include the ``n`` diagonal entries. Default: ``True``.

    With neither ``bandwidth`` nor ``density`` the whole triangle is kept (``n (n + 1) / 2``
    edges). Memory is proportional to the number of edges.

    Examples:
        >>> from sparselinear.structured import triangular_pattern
        >>> triangular_pattern(4).to_dense().int()
        tensor([[1, 0, 0, 0],
                [1, 1, 0, 0],
                [1, 1, 1, 0],
                [1, 1, 1, 1]], dtype=torch.int32)
        >>> triangular_pattern(1000, bandwidth=2)
        Connectivity(shape=(1000, 1000), nnz=2997, density=0.002997)
    """
    n = _check_n(n)
    if bandwidth is not None and density is not None:
        raise DataError("Pass at most one of 'bandwidth' and 'density'.")
    first = 0 if diagonal else 1
    if density is not None:
        if not 0.0 <= float(density) <= 1.0:
            raise DataError(f"'density' must lie in [0, 1]; got {density!r}.")
        rows, cols = _random_strict_lower(n, float(density), seed)
        if diagonal:
            d = torch.arange(n)
            rows, cols = torch.cat([rows, d]), torch.cat([cols, d])
    else:
        band = n - 1 if bandwidth is None else int(bandwidth)
        if bandwidth is not None and (int(bandwidth) != bandwidth or bandwidth < 0):
            raise DataError(f"'bandwidth' must be a non-negative int; got {bandwidth!r}.")
        rows, cols = _band(n, first, band)
    if not lower:
        rows, cols = cols, rows
    return Connectivity.from_indices(torch.stack([rows, cols]), (n, n))


def _band(n: int, first: int, last: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Entries ``(i, i - d)`` for ``first <= d <= last``, row by row."""
    i = torch.arange(n)
    width = (torch.clamp(i, max=last) - first + 1).clamp(min=0)  # entries in row i
    rows = torch.repeat_interleave(i, width)
    starts = torch.cumsum(width, 0) - width
    offset = torch.arange(rows.numel()) - torch.repeat_interleave(starts, width)
    cols = rows - torch.clamp(rows, max=last) + offset
    return rows, cols


def _random_strict_lower(n: int, density: float, seed: int | None):
    total = n * (n - 1) // 2
    k = round(density * total)
    rng = np.random.default_rng(seed)
    t = torch.from_numpy(np.sort(rng.choice(total, size=k, replace=False)).astype(np.int64))
    # Position t of the strictly lower triangle, row-major: row i holds t in [i(i-1)/2, i(i+1)/2).
    i = torch.floor((1 + torch.sqrt(1 + 8 * t.double())) / 2).to(torch.int64)
    i = i - (i * (i - 1) // 2 > t).long() + ((i + 1) * i // 2 <= t).long()
    return i, t - i * (i - 1) // 2


def _check_triangular(pattern: Connectivity, lower: bool, diagonal: str) -> None:
    rows, cols = pattern.row_indices().to(torch.int64), pattern.col_indices().to(torch.int64)
    bad = cols > rows if lower else cols < rows
    if bool(bad.any()):
        where = torch.nonzero(bad).flatten()
        listed = listing((f"({int(rows[k])}, {int(cols[k])})" for k in where[:MAX_LISTED]),
                         where.numel())
        side = "above" if lower else "below"
        raise PatternError(
            f"A {'lower' if lower else 'upper'} triangular pattern must have no edge {side} the "
            f"diagonal; got {where.numel()} such (output, input) edge(s): {listed}. Use "
            f"`triangular_pattern(n, lower={lower}, ...)`, or pass lower={not lower}."
        )
    if diagonal != "free":
        n = pattern.out_features
        present = torch.zeros(n, dtype=torch.bool, device=rows.device)
        present[rows[rows == cols]] = True
        if not bool(present.all()):
            missing = torch.nonzero(~present).flatten()
            listed = listing((int(i) for i in missing[:MAX_LISTED]), missing.numel())
            raise PatternError(
                f"diagonal={diagonal!r} needs every diagonal entry in the pattern; "
                f"{missing.numel()} are missing (i = {listed}). Build the pattern with "
                "`triangular_pattern(n, diagonal=True, ...)` or use diagonal='free'."
            )


class TriangularLinear(SparseLinear):
    r"""A linear map ``y = x Wᵀ + b`` with ``W`` lower (or upper) triangular, stored sparsely.

    Args:
        n: in and out features.
        lower: ``W`` lower triangular (``W[i, j] = 0`` for ``j > i``) or upper. Default: ``True``.
        diagonal: ``"free"`` (trained like the rest), ``"unit"`` (held at 1), ``"positive"`` or
            ``"negative"`` (strictly, by a smooth map, see
            [`Diagonal`][sparselinear.constraints.Diagonal]). Default: ``"free"``.
        bias: learn an additive bias. Default: ``True``.
        pattern: optional triangular pattern, e.g. ``triangular_pattern(n, bandwidth=16)``;
            the full triangle when ``None``. Unless ``diagonal="free"`` it must hold the whole
            diagonal.
        device: of the parameters.
        dtype: of the parameters.

    Shape:
        - Input: ``(*, n)``
        - Output: ``(*, n)``

    Attributes:
        weight: the ``(nnz,)`` edge values (constrained on the diagonal when ``diagonal`` is not
            ``"free"``; the free parameter is then ``parametrizations.weight.original``).

    Examples:
        >>> import torch
        >>> from sparselinear.structured import TriangularLinear
        >>> layer = TriangularLinear(5, diagonal="unit", bias=False)
        >>> W = layer.to_dense()
        >>> bool(torch.equal(W, W.tril())) and bool((W.diagonal() == 1).all())
        True
        >>> layer(torch.randn(2, 5)).shape
        torch.Size([2, 5])
    """

    def __init__(
        self,
        n: int,
        lower: bool = True,
        diagonal: str = "free",
        bias: bool = True,
        *,
        pattern: Any = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        n = _check_n(n)
        check_choice(diagonal, _DIAGONALS, "diagonal")
        if pattern is None:
            pattern = triangular_pattern(n, lower)
        elif not isinstance(pattern, Connectivity):
            pattern = Connectivity(pattern, shape=(n, n))
        if pattern.shape != (n, n):
            raise ShapeError(f"'pattern' must have shape ({n}, {n}); got {pattern}.")
        _check_triangular(pattern, lower, diagonal)
        super().__init__(n, n, pattern, bias, device=device, dtype=dtype)
        self.lower = bool(lower)
        self.diagonal = diagonal
        if diagonal != "free":
            mode = "fixed" if diagonal == "unit" else diagonal
            value = 1.0 if diagonal == "unit" else None
            constrain(self, Diagonal(pattern, mode, value=value))

    def extra_repr(self) -> str:
        side = "lower" if self.lower else "upper"
        return (
            f"n={self.in_features}, {side}, diagonal={self.diagonal!r}, nnz={self.nnz}, "
            f"bias={self.bias is not None}"
        )


class PositiveDefiniteLinear(nn.Module):
    r"""``y = x (L Lᵀ + εI) + b``: a symmetric positive definite linear map with a sparse factor.

    ``L`` is lower triangular with a strictly positive diagonal (a smooth map, see
    [`Diagonal`][sparselinear.constraints.Diagonal]), stored on a sparse pattern. The map is applied
    as two sparse products, ``(x L) Lᵀ``, so ``L Lᵀ`` (generally much denser than ``L``) is
    never formed; cost and memory follow ``nnz(L)``. Every eigenvalue of the matrix is at least
    ``ε``, at every step of training.

    Args:
        n: in and out features.
        eps: the ``ε`` added to the diagonal, ``>= 0``. Default: ``1e-3``.
        bias: learn an additive bias. Default: ``False``.
        pattern: optional lower triangular pattern for ``L`` holding the whole diagonal, e.g.
            ``triangular_pattern(n, bandwidth=8)`` or ``triangular_pattern(n, density=1e-3)``;
            the full triangle when ``None``.
        device: of the parameters.
        dtype: of the parameters.

    Shape:
        - Input: ``(*, n)``
        - Output: ``(*, n)``

    Attributes:
        factor: the [`TriangularLinear`][sparselinear.TriangularLinear] holding ``L``
            (``factor.to_dense()`` is ``L``).
        bias: shape ``(n,)`` or ``None``.

    ``L`` starts as the identity, so the layer starts as ``(1 + ε) x``.

    Examples:
        >>> import torch
        >>> from sparselinear.structured import PositiveDefiniteLinear, triangular_pattern
        >>> pd = PositiveDefiniteLinear(6, pattern=triangular_pattern(6, bandwidth=1))
        >>> A = pd.to_dense()
        >>> bool(torch.allclose(A, A.T)) and bool((torch.linalg.eigvalsh(A) > 0).all())
        True
        >>> x = torch.randn(3, 6)
        >>> torch.allclose(pd(x), x @ A)
        True
    """

    def __init__(
        self,
        n: int,
        eps: float = 1e-3,
        bias: bool = False,
        *,
        pattern: Any = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        try:
            eps = float(eps)
        except (TypeError, ValueError):
            raise DataError(f"'eps' must be a number >= 0; got {describe(eps)}.") from None
        if not eps >= 0.0 or eps == float("inf"):
            raise DataError(f"'eps' must be a finite number >= 0; got {eps!r}.")
        self.eps = eps
        self.factor = TriangularLinear(
            n, True, "positive", False, pattern=pattern, device=device, dtype=dtype
        )
        # The pattern of Lᵀ, built from the factor's buffers on the first forward pass.
        self._lt_cache: DerivedCache[Connectivity] = DerivedCache()
        factory = {"device": device, "dtype": dtype}
        self.bias = nn.Parameter(torch.empty(n, **factory)) if bias else None
        self.reset_parameters()

    @property
    def n(self) -> int:
        return self.factor.in_features

    def reset_parameters(self) -> None:
        """Set ``L`` to the identity and the bias to zero."""
        f = self.factor
        with torch.no_grad():
            ones = (f.connectivity.row_indices() == f.col_indices).to(f.weight.dtype)
            f.parametrizations.weight.original.copy_(f.parametrizations.weight[0].right_inverse(
                f.parametrizations.weight[0].project(ones)))
            if self.bias is not None:
                self.bias.zero_()

    def _transposed_pattern(self) -> Connectivity:
        # The factor's transposed CSR (its transpose, L, comes with it for free); rebuilt when
        # the factor's buffers move or change.
        f = self.factor
        return self._lt_cache.get(f.crow_indices, f.col_indices, lambda: f.connectivity.T)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        f = self.factor
        values = f.weight  # L's values, diagonal constrained positive
        xl = sparse_linear(input, values[f.transpose_perm], self._transposed_pattern())  # x L
        y = sparse_linear(xl, values, f.connectivity)  # (x L) Lᵀ
        y = y + self.eps * input if self.eps else y
        return y if self.bias is None else y + self.bias

    def to_dense(self) -> torch.Tensor:
        """The ``(n, n)`` matrix ``L Lᵀ + εI`` (differentiable). Allocates ``n x n``: small n."""
        L = self.factor.to_dense()
        return L @ L.T + self.eps * torch.eye(self.n, dtype=L.dtype, device=L.device)

    def extra_repr(self) -> str:
        return (
            f"n={self.n}, nnz(L)={self.factor.nnz}, eps={self.eps:g}, "
            f"bias={self.bias is not None}"
        )
