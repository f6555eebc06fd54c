"""Turn the inputs users hold (scipy matrices, index arrays, masks, torch sparse tensors) into
coordinate lists ``(rows, cols, shape)``.

Rows are outputs and columns are inputs, as in ``nn.Linear.weight``. Nothing here validates the
coordinates: :class:`~sparselinear.Connectivity` does that once for every source.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse
import torch

from ..errors import ShapeError, SparseLinearTypeError, describe

Shape = tuple[int, int]

ACCEPTED = (
    "a scipy.sparse matrix or array, a (2, nnz) integer tensor or array "
    "[output_index, input_index], a dense boolean mask (torch or numpy), a torch sparse COO or "
    "CSR tensor, or a Connectivity"
)



def check_shape(shape: Any, name: str = "shape") -> Shape:
    """Return ``shape`` as a pair of non-negative ints, or raise :class:`ShapeError`."""
    try:
        n_out, n_in = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise ShapeError(
            f"'{name}' must be a pair (out_features, in_features); got {shape!r}."
        ) from None
    if n_out < 0 or n_in < 0:
        raise ShapeError(f"'{name}' must be non-negative; got {(n_out, n_in)}.")
    return n_out, n_in


def _merge_shape(inherent: Shape, requested: Shape | None, what: str) -> Shape:
    if requested is not None and tuple(requested) != inherent:
        raise ShapeError(
            f"The {what} has shape {inherent} (out_features, in_features) but shape "
            f"{tuple(requested)} was requested. If your matrix is (source, target), i.e. "
            "(input, output), transpose it first."
        )
    return inherent


def scipy_coordinates(
    matrix: Any, *, transpose: bool = False, drop_zeros: bool = False, name: str = "matrix"
) -> tuple[torch.Tensor, torch.Tensor, Shape, np.ndarray]:
    """The one reader of scipy sparse matrices: ``(rows, cols, shape, values)`` of the stored
    entries (explicit zeros included unless ``drop_zeros``), int64 coordinates in CSR order and
    float64 values; ``transpose`` reads ``matrix[i, j]`` as the edge ``(j, i)`` (a
    ``(source, target)`` adjacency). ``name`` is the argument's name in error messages."""
    if not scipy.sparse.issparse(matrix):
        raise SparseLinearTypeError(
            f"'{name}' must be a scipy.sparse matrix or array; got {describe(matrix)}. For a dense "
            "matrix pass `scipy.sparse.coo_array(matrix)`."
        )
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
        idx = t._indices() if not t.is_coalesced() else t.indices()
        rows, cols = idx[0], idx[1]
    elif t.layout == torch.sparse_csr:
        crow = t.crow_indices().to(torch.int64)
        cols = t.col_indices()
        rows = torch.repeat_interleave(torch.arange(inherent[0], device=t.device), crow.diff())
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
    if not isinstance(t, torch.Tensor):
        t = torch.as_tensor(np.asarray(t))
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise SparseLinearTypeError(
            f"Indices must be integers; got {describe(t)}. For a boolean mask use "
            "`Connectivity(mask)`."
        )
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
    if scipy.sparse.issparse(source):
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
        source = torch.from_numpy(np.ascontiguousarray(source))
    if isinstance(source, torch.Tensor):
        if source.layout != torch.strided:
            return _from_torch_sparse(source, shape)
        return _from_dense(source, shape)
    raise SparseLinearTypeError(
        f"Cannot build a Connectivity from {describe(source)}; expected {ACCEPTED}."
    )
