"""Turn the inputs users hold (scipy matrices, index arrays, masks, torch sparse tensors) into
coordinate lists ``(rows, cols, shape)``.

Rows are outputs and columns are inputs, as in ``nn.Linear.weight``. Nothing here validates the
coordinates: [`Connectivity`][sparselinear.Connectivity] does that once for every source.
"""

from __future__ import annotations

import numbers
import sys
from typing import Any

import numpy as np
import torch

from ..errors import PatternError, ShapeError, SparseLinearTypeError, describe

Shape = tuple[int, int]

ACCEPTED = (
    "a scipy.sparse matrix or array, a (2, nnz) integer tensor or array "
    "[output_index, input_index], a dense boolean mask (torch or numpy), a torch sparse COO or "
    "CSR tensor, or a Connectivity"
)



def check_shape(shape: Any, name: str = "shape") -> Shape:
    """Return ``shape`` as a pair of non-negative ints, or raise
    [`ShapeError`][sparselinear.errors.ShapeError] (a non-integer such as ``2.7`` is refused, not
    truncated)."""
    try:
        pair = tuple(shape)
    except TypeError:
        pair = ()
    if len(pair) != 2 or not all(
        (isinstance(v, numbers.Integral) and not isinstance(v, bool))
        or (isinstance(v, torch.Tensor) and v.dim() == 0 and not v.is_floating_point())
        for v in pair
    ):
        raise ShapeError(
            f"'{name}' must be a pair of ints (out_features, in_features); got {shape!r}."
        )
    n_out, n_in = (int(v) for v in pair)
    if n_out < 0 or n_in < 0:
        raise ShapeError(f"'{name}' must be non-negative; got {(n_out, n_in)}.")
    return n_out, n_in


_INT64_MAX = 2**63 - 1


def as_indices(t: Any, name: str) -> torch.Tensor:
    """``t`` (a tensor, array or nested list of integers of any width, signed or unsigned) as
    an int64 tensor on its device; non-integers raise
    [`SparseLinearTypeError`][sparselinear.errors.SparseLinearTypeError] and unsigned values above
    the int64 range [`PatternError`][sparselinear.errors.PatternError], never a wrapped-around
    negative."""
    if not isinstance(t, torch.Tensor):
        array = np.asarray(t)
        if array.size == 0 and array.dtype.kind == "f":
            array = array.astype(np.int64)  # an empty list reads as float
        if array.dtype.kind == "u" and array.size and int(array.max()) > _INT64_MAX:
            raise PatternError(
                f"'{name}' holds the index {int(array.max())}, beyond the int64 range; indices "
                "count outputs or inputs from 0."
            )
        if array.dtype.kind not in "iub":
            raise SparseLinearTypeError(f"'{name}' must hold integers; got {describe(array)}.")
        if array.dtype.kind == "b":
            raise SparseLinearTypeError(f"'{name}' must hold integers; got {describe(array)}.")
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.int64))
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise SparseLinearTypeError(f"'{name}' must hold integers; got {describe(t)}.")
    if t.dtype in (torch.uint16, torch.uint32, torch.uint64):
        return as_indices(t.cpu().numpy(), name).to(t.device)
    return t.to(torch.int64)


def _merge_shape(inherent: Shape, requested: Shape | None, what: str) -> Shape:
    if requested is not None and tuple(requested) != inherent:
        raise ShapeError(
            f"The {what} has shape {inherent} (out_features, in_features) but shape "
            f"{tuple(requested)} was requested. If your matrix is (source, target), i.e. "
            "(input, output), transpose it first."
        )
    return inherent


def is_scipy_sparse(obj: Any) -> bool:
    """Whether ``obj`` is a scipy sparse matrix or array, without importing scipy: such an
    object exists only once ``scipy.sparse`` has been imported."""
    module = sys.modules.get("scipy.sparse")
    return module is not None and bool(module.issparse(obj))


def scipy_coordinates(
    matrix: Any, *, transpose: bool = False, drop_zeros: bool = False, name: str = "matrix"
) -> tuple[torch.Tensor, torch.Tensor, Shape, np.ndarray]:
    """The one reader of scipy sparse matrices: ``(rows, cols, shape, values)`` of the stored
    entries (explicit zeros included unless ``drop_zeros``), int64 coordinates in CSR order and
    float64 values; ``transpose`` reads ``matrix[i, j]`` as the edge ``(j, i)`` (a
    ``(source, target)`` adjacency). ``name`` is the argument's name in error messages."""
    if not is_scipy_sparse(matrix):
        raise SparseLinearTypeError(
            f"'{name}' must be a scipy.sparse matrix or array; got {describe(matrix)}. For a dense "
            "matrix pass `scipy.sparse.coo_array(matrix)`."
        )
    import scipy.sparse

    coo = scipy.sparse.coo_array(matrix)
    if not (np.issubdtype(coo.dtype, np.number) or coo.dtype == np.bool_) or np.iscomplexobj(
        coo.data
    ):
        raise SparseLinearTypeError(
            f"'{name}' must hold real numbers; got {describe(matrix)}."
        )
    values = np.asarray(coo.data, dtype=np.float64)
    rows, cols = np.asarray(coo.row, np.int64), np.asarray(coo.col, np.int64)
    shape = check_shape(coo.shape)
    if transpose:
        rows, cols, shape = cols, rows, (shape[1], shape[0])
    if drop_zeros:
        keep = values != 0
        rows, cols, values = rows[keep], cols[keep], values[keep]
    order = np.argsort(rows * shape[1] + cols, kind="stable")
    return (torch.from_numpy(rows[order]), torch.from_numpy(cols[order]), shape,
            values[order])


def _from_scipy(matrix: Any, shape: Shape | None) -> tuple[torch.Tensor, torch.Tensor, Shape]:
    rows, cols, inherent, _ = scipy_coordinates(matrix)
    return rows, cols, _merge_shape(inherent, shape, "scipy matrix")


def _from_torch_sparse(t: torch.Tensor, shape: Shape | None):
    if t.dim() != 2:
        raise ShapeError(f"A sparse pattern tensor must be 2-D; got {describe(t)}.")
    inherent = check_shape(t.shape)
    if t.layout == torch.sparse_coo:
        if t.sparse_dim() != 2:
            raise ShapeError(
                f"A sparse COO pattern must have 2 sparse dimensions and no dense ones; got "
                f"{t.sparse_dim()} sparse and {t.dense_dim()} dense ({describe(t)})."
            )
        idx = t._indices() if not t.is_coalesced() else t.indices()
        rows, cols = idx[0], idx[1]
    elif t.layout == torch.sparse_csr:
        crow = t.crow_indices().to(torch.int64)
        cols = t.col_indices()
        counts = crow.diff()
        if int(crow[0]) != 0 or int(crow[-1]) != cols.numel() or bool((counts < 0).any()):
            raise PatternError(
                f"The CSR tensor's crow_indices must start at 0, never decrease and end at "
                f"nnz = {cols.numel()}; got an invalid CSR tensor ({describe(t)})."
            )
        rows = torch.repeat_interleave(torch.arange(inherent[0], device=t.device), counts)
    else:
        coo = t.to_sparse_coo().coalesce()
        rows, cols = coo.indices()
    return (
        rows.to(torch.int64),
        cols.to(torch.int64),
        _merge_shape(inherent, shape, "sparse tensor"),
    )


def _from_dense(t: torch.Tensor, shape: Shape | None):
    if t.dtype == torch.bool:
        if t.dim() != 2:
            raise ShapeError(
                f"A boolean mask must be 2-D (out_features, in_features); got {describe(t)}."
            )
        rows, cols = torch.nonzero(t, as_tuple=True)
        return rows, cols, _merge_shape(check_shape(t.shape), shape, "mask")
    if t.is_floating_point() or t.is_complex():
        raise SparseLinearTypeError(
            f"A dense pattern must be a boolean mask or (2, nnz) integer indices; got "
            f"{describe(t)}. For a 0/1 or weighted dense matrix pass `matrix != 0`."
        )
    if _looks_like_a_mask(t, shape):
        raise SparseLinearTypeError(
            f"An integer array of shape {tuple(t.shape)} holding only 0 and 1 is ambiguous: it "
            "may be a 0/1 mask of 2 outputs or a (2, nnz) list of [output, input] indices. Pass "
            "`mask.bool()` for a mask, or `Connectivity.from_indices(indices, shape)` for indices."
        )
    return from_indices(t, shape)


def _looks_like_a_mask(t: torch.Tensor, shape: Shape | None) -> bool:
    if t.dim() != 2 or t.shape[0] != 2 or t.numel() == 0:
        return False
    if shape is not None and tuple(shape) != tuple(t.shape):
        return False
    return bool(((t == 0) | (t == 1)).all())


def from_indices(t: Any, shape: Shape | None) -> tuple[torch.Tensor, torch.Tensor, Shape]:
    """Coordinates of a ``(2, nnz)`` integer index array ``[output_index, input_index]``."""
    given = t
    if not isinstance(t, torch.Tensor):
        t = np.asarray(t)
    if t.dtype in (torch.bool, np.bool_) or getattr(t, "is_floating_point", lambda: False)() \
            or (isinstance(t, np.ndarray) and t.dtype.kind not in "iu"):
        raise SparseLinearTypeError(
            f"Indices must be integers; got {describe(given)}. For a boolean mask use "
            "`Connectivity(mask)`."
        )
    t = as_indices(t, "indices")
    if t.dim() != 2 or t.shape[0] != 2:
        raise ShapeError(
            f"Integer indices must have shape (2, nnz) holding [output_index, input_index]; "
            f"got {describe(t)}. For a (nnz, 2) edge list pass its transpose; for a 0/1 mask "
            "pass `mask.bool()`."
        )
    rows, cols = t[0].to(torch.int64), t[1].to(torch.int64)
    if shape is None:
        if rows.numel() == 0:
            raise ShapeError("Cannot infer the shape of an empty index list; pass shape=(out, in).")
        shape = (int(rows.max()) + 1, int(cols.max()) + 1)
    return rows, cols, check_shape(shape)


def to_coordinates(source: Any, shape: Shape | None) -> tuple[torch.Tensor, torch.Tensor, Shape]:
    """Return ``(rows, cols, shape)`` with int64 ``rows``/``cols`` for any accepted source."""
    if is_scipy_sparse(source):
        return _from_scipy(source, shape)
    if isinstance(source, (list, tuple)):
        source = np.asarray(source)
    if isinstance(source, np.ndarray):
        if source.dtype == object or not (
            source.dtype == np.bool_ or np.issubdtype(source.dtype, np.number)
        ):
            raise SparseLinearTypeError(
                f"A pattern array must hold booleans or integers; got {describe(source)}."
            )
        if source.dtype.kind == "u" and source.dtype.itemsize == 8:
            source = as_indices(source, "source")  # beyond int64, or not
        else:
            source = torch.from_numpy(np.ascontiguousarray(source))
    if isinstance(source, torch.Tensor):
        if source.layout != torch.strided:
            return _from_torch_sparse(source, shape)
        return _from_dense(source, shape)
    raise SparseLinearTypeError(
        f"Cannot build a Connectivity from {describe(source)}; expected {ACCEPTED}."
    )
