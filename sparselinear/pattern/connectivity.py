"""The immutable sparsity pattern of a sparse layer.

A [`Connectivity`][sparselinear.Connectivity] holds a pattern of shape
``(out_features, in_features)`` in canonical CSR order (rows sorted, columns sorted inside each
row). The transposed pattern and the permutation between the two orders, which some backward passes
need, are built on first use and cached (``sparselinear.pattern.caches``).

Everything below it in the house hands it plain arrays: the pattern generators, the set
operations on edge keys and the edge-list readers ([`sparselinear.io`][sparselinear.io]); this class
validates and wraps them, so none of them imports it.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import (
    MAX_LISTED,
    DuplicateEdgeError,
    PatternError,
    ShapeError,
    SparseLinearTypeError,
    describe,
    listing,
)
from ..io import edgelist
from ..io.attributes import Attributes, check_attributes, merge_attributes
from ..io.names import check_names, lookup
from ..io.writer import write_edges
from . import generators, setops
from .caches import PatternCaches, transpose_order, transposed_cache
from .csr import canonical_csr, check_canonical
from .sources import Shape, as_indices, check_shape, from_indices, to_coordinates

if TYPE_CHECKING:
    import scipy.sparse

__all__ = ["Connectivity", "index_dtype_for", "pattern_digest", "validate_csr"]

#: Index tensors checked by ``validate_csr``, per crow tensor, while unchanged.
_validated: PatternCaches[bool] = PatternCaches()


def validate_csr(crow: torch.Tensor, col: torch.Tensor, shape: Shape) -> None:
    """Raise unless ``(crow, col)`` is still a canonical CSR pattern of ``shape``
    (``check_canonical``); the result is kept while the tensors
    are unchanged (same storage and version counter), so repeated calls cost nothing."""
    _validated.for_tensor(crow).get(crow, col, lambda: check_canonical(crow, col, shape) or True)

_INT32_MAX = 2**31 - 1


def index_dtype_for(shape: Shape, nnz: int) -> torch.dtype:
    """The index dtype a pattern of this size uses: int32 where it fits, else int64."""
    return torch.int32 if max(shape[0], shape[1], nnz) < _INT32_MAX else torch.int64


def pattern_digest(shape: Shape, crow: torch.Tensor, col: torch.Tensor) -> str:
    """SHA-256 hex digest of a CSR pattern's shape and indices (index dtype and device ignored)."""
    h = hashlib.sha256(f"{shape[0]}x{shape[1]}:".encode())
    for t in (crow, col):
        h.update(t.detach().to("cpu", torch.int64).contiguous().numpy().tobytes())
    return h.hexdigest()


def _check_range(values: torch.Tensor, bound: int, what: str) -> None:
    if values.numel() == 0:
        return
    bad = (values < 0) | (values >= bound)
    if bool(bad.any()):
        pos = int(torch.nonzero(bad)[0, 0])
        value = int(values[pos])
        kind = "negative" if value < 0 else "out of range"
        raise PatternError(
            f"Edge {pos} has {kind} {what} index {value}; {what} indices must lie in "
            f"[0, {bound}). Check the orientation (rows are outputs, columns are inputs) and "
            "the shape you passed."
        )


def _raise_duplicates(rows: torch.Tensor, cols: torch.Tensor, repeated: torch.Tensor) -> None:
    where = torch.nonzero(repeated).flatten()
    listed = listing((f"({int(rows[i])}, {int(cols[i])})" for i in where[:MAX_LISTED].tolist()),
                     where.numel())
    raise DuplicateEdgeError(
        f"The pattern lists {where.numel()} edge(s) more than once: (output, input) = "
        f"{listed}. Each edge may appear once. Merge repeats first: keep one of each with "
        "`torch.unique(indices, dim=1)` / `coo.coalesce()`, or add their values with scipy's "
        "`matrix.sum_duplicates()`."
    )


def _build(
    rows: torch.Tensor, cols: torch.Tensor, shape: Shape, index_dtype: torch.dtype | None = None
) -> tuple[torch.Tensor, ...]:
    """Validate coordinates and return ``(crow, col)`` in canonical order.

    Works in O(nnz) memory: a few int64 temporaries of length nnz, released as it goes.
    """
    n_out, n_in = shape
    if rows.numel() != cols.numel():
        raise ShapeError(f"Got {rows.numel()} output indices but {cols.numel()} input indices.")
    _check_range(rows, n_out, "output")
    _check_range(cols, n_in, "input")
    if n_out * n_in >= 2**63:
        raise ShapeError(f"Shape {shape} is too large to index with int64.")
    dtype = index_dtype or index_dtype_for(shape, rows.numel())
    key = rows.to(torch.int64) * n_in
    key += cols
    if key.numel() > 1 and not bool((key[1:] >= key[:-1]).all()):
        key, order = torch.sort(key, stable=True)
        rows, cols = rows[order], cols[order]
        del order
    if key.numel() > 1:
        repeated = key[1:] == key[:-1]
        if bool(repeated.any()):
            _raise_duplicates(rows[1:], cols[1:], repeated)
    del key
    rows, cols = rows.to(dtype), cols.to(dtype)
    crow = torch.zeros(n_out + 1, dtype=dtype, device=rows.device)
    torch.cumsum(torch.bincount(rows, minlength=n_out), 0, out=crow[1:])
    return crow, cols


class Connectivity:
    r"""An immutable sparsity pattern of shape ``(out_features, in_features)``.

    Rows are outputs and columns are inputs, as in ``nn.Linear.weight``. Adjacency matrices from
    connectomes are often (source, target), i.e. (input, output): transpose those first.

    Args:
        source: the edges. One of: a ``scipy.sparse`` matrix or array of any format (its stored
            entries are the edges, explicit zeros included); a ``(2, nnz)`` integer tensor,
            array or nested list ``[output_index, input_index]``; a dense boolean mask (torch or
            numpy); a torch sparse COO or CSR tensor; another
            [`Connectivity`][sparselinear.Connectivity].
        shape: ``(out_features, in_features)``. Required for index lists with trailing empty rows
            or columns (otherwise inferred as max index + 1); checked against the source's own
            shape for the other sources.
        index_dtype: ``torch.int32`` or ``torch.int64`` to force the index dtype; by default
            int32 where the shape and nnz allow, int64 otherwise.

    Attributes:
        shape: ``(out_features, in_features)``.
        nnz: number of edges.
        density: ``nnz / (out_features * in_features)``.

    Indices are int32 where the shape and nnz allow, int64 otherwise. Duplicate edges, negative or
    out-of-range indices raise [`PatternError`][sparselinear.errors.PatternError].

    Examples:
        >>> import torch
        >>> from sparselinear import Connectivity
        >>> c = Connectivity(torch.tensor([[0, 2, 1], [1, 0, 3]]), shape=(3, 4))
        >>> c
        Connectivity(shape=(3, 4), nnz=3, density=0.25)
        >>> c.indices()
        tensor([[0, 1, 2],
                [1, 3, 0]])
    """

    __slots__ = (
        "_col",
        "_crow",
        "_digest",
        "_in_attributes",
        "_in_names",
        "_name_index",
        "_out_attributes",
        "_out_names",
        "_shape",
        "_transpose_cache",
    )

    def __init__(
        self, source: Any, shape: Shape | None = None, *, index_dtype: torch.dtype | None = None
    ) -> None:
        if shape is not None:
            shape = check_shape(shape)
        if index_dtype not in (None, torch.int32, torch.int64):
            raise SparseLinearTypeError(
                f"'index_dtype' must be torch.int32, torch.int64 or None; got {index_dtype}."
            )
        if isinstance(source, Connectivity):
            if shape is not None and shape != source.shape:
                raise ShapeError(f"The Connectivity has shape {source.shape}; got shape={shape}.")
            fields = source._fields()
            if index_dtype is not None:
                fields = tuple(t.to(index_dtype) for t in fields)
            self._set(source.shape, *fields, source._digest, source._out_names, source._in_names,
                      source._out_attributes, source._in_attributes)
            return
        rows, cols, shape = to_coordinates(source, shape)
        self._set(shape, *_build(rows, cols, shape, index_dtype))

    def _set(
        self,
        shape: Shape,
        crow: torch.Tensor,
        col: torch.Tensor,
        digest: str | None = None,
        out_names: tuple[str, ...] | None = None,
        in_names: tuple[str, ...] | None = None,
        out_attributes: Attributes | None = None,
        in_attributes: Attributes | None = None,
    ) -> None:
        self._shape = (int(shape[0]), int(shape[1]))
        self._crow, self._col = crow, col
        self._digest = digest
        self._out_names, self._in_names = out_names, in_names
        self._out_attributes, self._in_attributes = out_attributes, in_attributes
        self._name_index: dict[str, dict[str, int]] = {}
        # one cache per index tensor: views of the same tensors share the transposed pattern
        self._transpose_cache = transposed_cache(col)

    @classmethod
    def from_canonical_csr(
        cls,
        shape: Shape,
        crow: torch.Tensor,
        col: torch.Tensor,
        digest: str | None = None,
        out_names: tuple[str, ...] | None = None,
        in_names: tuple[str, ...] | None = None,
        *,
        out_attributes: Attributes | None = None,
        in_attributes: Attributes | None = None,
    ) -> Connectivity:
        """Wrap index tensors that are already canonical CSR, without copying or checking them.

        For owners of checked patterns (a layer wrapping its own buffers): the caller guarantees
        that ``crow`` and ``col`` are a canonical CSR pattern of ``shape`` with one index dtype;
        anything else is undefined. Use [`from_csr`][sparselinear.Connectivity.from_csr] for arrays
        from elsewhere. Every pattern over the same index tensors shares their transposed pattern
        (``transposed_cache``).
        """
        self = cls.__new__(cls)
        self._set(shape, crow, col, digest, out_names, in_names, out_attributes, in_attributes)
        return self

    @classmethod
    def _from_coordinates(
        cls, rows: torch.Tensor, cols: torch.Tensor, shape: Shape, *, index_dtype=None
    ) -> Connectivity:
        """Build from integer coordinate vectors without stacking them (internal, validated)."""
        shape = check_shape(shape)
        self = cls.__new__(cls)
        self._set(shape, *_build(rows, cols, shape, index_dtype))
        return self

    @classmethod
    def from_indices(cls, indices: Any, shape: Shape | None = None) -> Connectivity:
        """Build from a ``(2, nnz)`` integer array ``[output_index, input_index]``.

        Unlike ``Connectivity(indices)``, never reads the array as a 0/1 mask.

        Examples:
            >>> Connectivity.from_indices([[0, 1], [1, 0]], shape=(2, 2)).to_dense().int()
            tensor([[0, 1],
                    [1, 0]], dtype=torch.int32)
        """
        rows, cols, shape = from_indices(indices, None if shape is None else check_shape(shape))
        return cls._from_coordinates(rows, cols, shape)

    @classmethod
    def from_csr(cls, crow_indices: Any, col_indices: Any, shape: Shape) -> Connectivity:
        """Build from CSR arrays (e.g. ones saved in a checkpoint); validated like any source."""
        crow = as_indices(crow_indices, "crow_indices")
        col = as_indices(col_indices, "col_indices")
        n_out, n_in = check_shape(shape)
        if crow.dim() != 1 or crow.numel() != n_out + 1:
            raise ShapeError(
                f"crow_indices must have {n_out + 1} entries for shape {shape}; "
                f"got {describe(crow_indices)}."
            )
        if col.dim() != 1:
            raise ShapeError(f"col_indices must be 1-D, one per edge; got {describe(col_indices)}.")
        crow64 = crow
        counts = crow64.diff()
        if bool((counts < 0).any()) or int(crow[0]) != 0 or int(crow[-1]) != col.numel():
            raise PatternError(
                f"crow_indices must start at 0, never decrease and end at nnz={col.numel()}."
            )
        if col.dim() == 1 and col.device == crow.device:
            dtype = index_dtype_for((n_out, n_in), col.numel())
            fields = canonical_csr(crow64, col, n_in, dtype)
            if fields is not None:
                self = cls.__new__(cls)
                self._set((n_out, n_in), *fields)
                return self
        rows = torch.repeat_interleave(torch.arange(n_out, device=crow.device), counts)
        return cls._from_coordinates(rows, col.to(torch.int64), (n_out, n_in))

    @classmethod
    def random(
        cls,
        n_out: int,
        n_in: int,
        *,
        nnz: int | None = None,
        density: float | None = None,
        seed: int | None = None,
    ) -> Connectivity:
        """Edges drawn uniformly without replacement: exactly ``nnz``, or ``round(density·out·in)``.

        Memory and time are proportional to nnz, so a 1,000,000 x 1,000,000 pattern with 10 M
        edges takes seconds. The same ``seed`` gives the same pattern.

        Examples:
            >>> Connectivity.random(100, 50, density=0.1, seed=0)
            Connectivity(shape=(100, 50), nnz=500, density=0.1)
        """
        return cls._generated(
            generators.random_pattern(n_out, n_in, nnz=nnz, density=density, seed=seed)
        )

    @classmethod
    def _generated(cls, arrays: generators.Coordinates | generators.CSRArrays) -> Connectivity:
        """Validate and wrap what a generator returned."""
        if isinstance(arrays, generators.CSRArrays):
            return cls.from_csr(*arrays)
        return cls._from_coordinates(*arrays)

    # ------------------------------------------------------------------ properties
    @property
    def shape(self) -> Shape:
        """``(out_features, in_features)``."""
        return self._shape

    @property
    def out_features(self) -> int:
        return self._shape[0]

    @property
    def in_features(self) -> int:
        return self._shape[1]

    @property
    def nnz(self) -> int:
        """Number of edges."""
        return self._col.numel()

    @property
    def density(self) -> float:
        """Fraction of the ``out x in`` positions that are edges."""
        size = self._shape[0] * self._shape[1]
        return self.nnz / size if size else 0.0

    @property
    def device(self) -> torch.device:
        return self._col.device

    @property
    def index_dtype(self) -> torch.dtype:
        return self._col.dtype

    @property
    def digest(self) -> str:
        """A stable SHA-256 hex digest of the shape and the edges (index dtype, device ignored)."""
        if self._digest is None:
            self._digest = pattern_digest(self._shape, self._crow, self._col)
        return self._digest

    # ------------------------------------------------------------------ index views
    def crow_indices(self) -> torch.Tensor:
        """CSR row pointers, shape ``(out_features + 1,)``."""
        return self._crow

    def col_indices(self) -> torch.Tensor:
        """CSR column (input) indices in weight order, shape ``(nnz,)``."""
        return self._col

    def row_indices(self) -> torch.Tensor:
        """Output index of every edge in weight order, shape ``(nnz,)``."""
        counts = self._crow.diff()
        return torch.repeat_interleave(
            torch.arange(self._shape[0], device=self.device, dtype=self._col.dtype),
            counts,
            output_size=self.nnz,
        )

    def indices(self) -> torch.Tensor:
        """A ``(2, nnz)`` int64 tensor ``[output_index, input_index]`` in weight order."""
        return torch.stack([self.row_indices(), self._col]).to(torch.int64)

    def fan_in(self) -> torch.Tensor:
        """Number of inputs of each output, shape ``(out_features,)``."""
        return self._crow.diff()

    def fan_out(self) -> torch.Tensor:
        """Number of outputs of each input, shape ``(in_features,)``."""
        transposed = self._transpose_cache.peek(self._crow, self._col)
        if transposed is not None:
            return transposed[0].diff()
        return torch.bincount(self._col, minlength=self._shape[1]).to(self._col.dtype)

    def _fields(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The canonical CSR ``(crow, col)``."""
        return self._crow, self._col

    def transposed_csr(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(crow_t, row_t, perm)``: the CSR of the transposed pattern and ``perm`` with
        ``values_t = values[perm]``. Built on the first call (``in + 1 + 2 · nnz`` indices on the
        pattern's device) and cached."""
        return self._transpose_cache.get(
            self._crow, self._col, lambda: transpose_order(self._crow, self._col, self._shape[1])
        )

    # ------------------------------------------------------------------ conversions
    def to(self, device: torch.device | str) -> Connectivity:
        """The same pattern with its index tensors on ``device``."""
        fields = tuple(t.to(device) for t in self._fields())
        return Connectivity.from_canonical_csr(
            self._shape, *fields, self._digest, self._out_names, self._in_names,
            out_attributes=self._out_attributes, in_attributes=self._in_attributes,
        )

    def transpose(self) -> Connectivity:
        """The pattern of shape ``(in_features, out_features)`` with every edge reversed."""
        crow_t, row_t, perm = self.transposed_csr()
        inverse = torch.empty_like(perm)
        inverse[perm.to(torch.int64)] = torch.arange(self.nnz, dtype=perm.dtype, device=self.device)
        transposed = Connectivity.from_canonical_csr(
            (self._shape[1], self._shape[0]), crow_t, row_t, None, self._in_names, self._out_names,
            out_attributes=self._in_attributes, in_attributes=self._out_attributes,
        )
        # Its own transposed pattern is this one, read through the inverse permutation.
        transposed._transpose_cache.put(crow_t, row_t, (self._crow, self._col, inverse))
        return transposed

    @property
    def T(self) -> Connectivity:  # noqa: N802 - mirrors torch.Tensor.T
        return self.transpose()

    def to_scipy(self, values: torch.Tensor | None = None) -> scipy.sparse.csr_array:
        """A ``scipy.sparse.csr_array`` with ``values`` (ones when ``None``) at the edges."""
        import scipy.sparse

        data = (
            np.ones(self.nnz, dtype=np.float32) if values is None else values.detach().cpu().numpy()
        )
        return scipy.sparse.csr_array(
            (data, self._col.cpu().numpy(), self._crow.cpu().numpy()), shape=self._shape
        )

    def to_dense(self) -> torch.Tensor:
        """A dense ``(out, in)`` boolean mask. Allocates ``out x in``: for small patterns only."""
        mask = torch.zeros(self._shape, dtype=torch.bool, device=self.device)
        mask[self.row_indices().to(torch.int64), self._col.to(torch.int64)] = True
        return mask

    def validate(self) -> Connectivity:
        """Check that the index tensors still form this canonical pattern and return ``self``.

        A pattern is checked when it is built, but its tensors can be written in place later
        (a layer's ``crow_indices``/``col_indices`` buffers, ``load_state_dict(assign=True)``).
        The kernels call this before reading them; the result is kept while the tensors are
        unchanged (same storage and version counter), so repeated calls cost nothing.

        Raises:
            PatternError, ShapeError, SparseLinearTypeError: what is wrong, and how to rebuild.

        Examples:
            >>> c = Connectivity.tril(3, 3)
            >>> c.validate() is c
            True
        """
        validate_csr(self._crow, self._col, self._shape)
        return self

    # ------------------------------------------------------------------ comparisons
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Connectivity):
            return NotImplemented
        return (
            self._shape == other._shape
            and self.nnz == other.nnz
            and torch.equal(self._crow.cpu().to(torch.int64), other._crow.cpu().to(torch.int64))
            and torch.equal(self._col.cpu().to(torch.int64), other._col.cpu().to(torch.int64))
        )

    def __hash__(self) -> int:
        return hash(self.digest)

    def __repr__(self) -> str:
        return f"Connectivity(shape={self._shape}, nnz={self.nnz}, density={self.density:.4g})"

    # ------------------------------------------------------------------ names, data sources,
    # patterns and set operations (thin delegates to names/edgelist/patterns/setops modules)
    @property
    def out_names(self) -> tuple[str, ...] | np.ndarray | None:
        """Names of the outputs (rows): strings, an integer id array, or ``None``."""
        return self._out_names

    @property
    def in_names(self) -> tuple[str, ...] | np.ndarray | None:
        """Names of the inputs (columns): strings, an integer id array, or ``None``."""
        return self._in_names

    def with_names(self, out_names: Any = None, in_names: Any = None) -> Connectivity:
        """The same pattern with node names attached (``None`` leaves an axis unnamed).

        Examples:
            >>> c = Connectivity.diagonal(2, 2).with_names(["y0", "y1"], ["x0", "x1"])
            >>> c.in_index("x1"), c.out_names
            (1, ('y0', 'y1'))
        """
        out_names = check_names(out_names, self._shape[0], "out_names")
        in_names = check_names(in_names, self._shape[1], "in_names")
        return Connectivity.from_canonical_csr(
            self._shape, *self._fields(), self._digest, out_names, in_names,
            out_attributes=self._out_attributes, in_attributes=self._in_attributes,
        )

    @property
    def out_attributes(self) -> Attributes | None:
        """Per-node attributes of the outputs (rows): a read-only mapping ``{column: numpy
        array}`` aligned with the output order (e.g. the columns of a neuron table passed as
        ``nodes=`` to [`from_edgelist`][sparselinear.Connectivity.from_edgelist]), or
        ``None``."""
        return self._out_attributes

    @property
    def in_attributes(self) -> Attributes | None:
        """Per-node attributes of the inputs (columns), aligned with the input order, or
        ``None``; for an ``N x N`` pattern read with ``nodes=`` the same as
        [`out_attributes`][sparselinear.Connectivity.out_attributes].
        [`Dale.from_attribute`][sparselinear.constraints.Dale.from_attribute] reads the signs of
        the inputs here."""
        return self._in_attributes

    def with_attributes(self, out_attributes: Any = None, in_attributes: Any = None
                        ) -> Connectivity:
        """The same pattern with per-node attributes attached: mappings ``{column: values}``,
        one value per output (row) or input (column) node, in node order (``None`` leaves a
        side without attributes). They travel with the pattern: ``to()``, ``with_names()``
        and a layer built on it keep them, ``transpose()`` swaps the sides, and a set operation
        keeps those of its left operand (else its right one's).

        Examples:
            >>> c = Connectivity.diagonal(2, 2).with_attributes(
            ...     in_attributes={"nt_type": ["ACH", "GABA"]})
            >>> c.in_attributes["nt_type"].tolist(), c.T.out_attributes["nt_type"].tolist()
            (['ACH', 'GABA'], ['ACH', 'GABA'])
        """
        out_attributes = check_attributes(out_attributes, self._shape[0], "out_attributes")
        in_attributes = check_attributes(in_attributes, self._shape[1], "in_attributes")
        return Connectivity.from_canonical_csr(
            self._shape, *self._fields(), self._digest, self._out_names, self._in_names,
            out_attributes=out_attributes, in_attributes=in_attributes,
        )

    def _index_of(self, axis: str) -> dict[str, int]:
        names = self._out_names if axis == "output" else self._in_names
        if axis not in self._name_index and names is not None:
            self._name_index[axis] = {n: i for i, n in enumerate(names)}
        return self._name_index.get(axis, {})

    def out_index(self, names: str | Any) -> int | torch.Tensor:
        """Row index of an output name (an ``int``), or of several names (an int64 tensor)."""
        return lookup(self._out_names, self._index_of("output"), names, "output")

    def in_index(self, names: str | Any) -> int | torch.Tensor:
        """Column index of an input name (an ``int``), or of several names (an int64 tensor)."""
        return lookup(self._in_names, self._index_of("input"), names, "input")

    @classmethod
    def from_edgelist(
        cls,
        data: Any,
        *,
        source: str | int | None = None,
        target: str | int | None = None,
        weight: str | int | None = None,
        sep: str | None = None,
        **options: Any,
    ) -> Connectivity | tuple[Connectivity, torch.Tensor]:
        """Build from an edge list with named nodes; an edge ``source -> target`` feeds input
        ``source`` into output ``target``. Returns ``(connectivity, weights)`` when ``weight``
        names a column. See [`sparselinear.io.edgelist.read_edges`][sparselinear.io.read_edges] for
        every option.

        Examples:
            >>> c = Connectivity.from_edgelist([("a", "b"), ("b", "c")])
            >>> c.shape, c.in_names
            ((3, 3), ('a', 'b', 'c'))
            >>> c.out_index("b"), c.in_index("a")
            (1, 0)
        """
        edges = edgelist.read_edges(
            data, source=source, target=target, weight=weight, sep=sep, **options
        )
        return cls._from_edges(edges)

    @classmethod
    def from_networkx(
        cls, graph: Any, *, weight: str | None = None, nodes: Any = None
    ) -> Connectivity | tuple[Connectivity, torch.Tensor]:
        """Build from a networkx graph (edge ``u -> v``: input ``u``, output ``v``); returns
        ``(connectivity, weights)`` when ``weight`` names an edge attribute. See
        [`sparselinear.io.edgelist.networkx_edges`][sparselinear.io.networkx_edges].

        Examples:
            >>> import networkx as nx
            >>> c = Connectivity.from_networkx(nx.DiGraph([("x", "y"), ("y", "z")]))
            >>> c.out_names, c.indices().tolist()
            (('x', 'y', 'z'), [[1, 2], [0, 1]])
        """
        return cls._from_edges(edgelist.networkx_edges(graph, weight=weight, nodes=nodes))

    @classmethod
    def _from_edges(
        cls, edges: edgelist.Edges
    ) -> Connectivity | tuple[Connectivity, torch.Tensor]:
        conn = cls._from_coordinates(edges.rows, edges.cols, edges.shape)
        out_names, in_names = (None if isinstance(n, range) else n
                               for n in (edges.out_names, edges.in_names))
        conn = conn.with_names(out_names, in_names)
        if edges.out_attributes is not None or edges.in_attributes is not None:
            conn = conn.with_attributes(edges.out_attributes, edges.in_attributes)
        return conn if edges.weights is None else (conn, edges.weights)

    def to_edgelist(
        self, values: torch.Tensor | None = None, path: Any = None, **columns: Any
    ) -> list[tuple[Any, ...]] | Any:
        """``(source, target)`` or ``(source, target, weight)`` rows, one per edge in weight
        order: sources are inputs and targets outputs, named when the pattern has names (else
        integer positions). With ``path``, the edges are written to that file instead
        (``.csv``/``.tsv``, optionally ``.gz``/``.bz2``/``.xz``, or ``.parquet``) with their
        original ids, in chunks, and the path is returned; ``columns`` renames the columns
        (``source=``, ``target=``, ``weight=``; see
        [`sparselinear.io.write_edges`][sparselinear.io.write_edges]).

        The rows hold edges only: the shape and the node order travel in the names. Read
        them back into the same pattern (shape, node order and nodes without edges
        included) and weights by passing the names of each side, or ``range(n)`` for a side
        without names:

            out = c.out_names if c.out_names is not None else range(c.out_features)
            inp = c.in_names if c.in_names is not None else range(c.in_features)
            back, weights = Connectivity.from_edgelist(rows, weight=2, out_names=out,
                                                       in_names=inp)

        Examples:
            >>> c = Connectivity.from_edgelist([("a", "b"), ("b", "c")], nodes=["c", "b", "a", "z"])
            >>> rows = c.to_edgelist(torch.tensor([0.5, -1.0]))
            >>> rows
            [('b', 'c', 0.5), ('a', 'b', -1.0)]
            >>> back, w = Connectivity.from_edgelist(rows, weight=2, out_names=c.out_names,
            ...                                      in_names=c.in_names)
            >>> back == c, back.in_names, w.tolist()
            (True, ('c', 'b', 'a', 'z'), [0.5, -1.0])
            >>> d = Connectivity.diagonal(3, 2)
            >>> rows = d.to_edgelist()
            >>> rows
            [(0, 0), (1, 1)]
            >>> Connectivity.from_edgelist(rows, out_names=range(3), in_names=range(2)) == d
            True
        """
        rows, cols = self.indices()
        if path is not None:
            return write_edges(path, rows, cols, self._out_names, self._in_names, values,
                               **columns)
        return edgelist.edge_rows(rows, cols, self._out_names, self._in_names, values)

    @classmethod
    def tril(cls, n_out: int, n_in: int, diagonal: int = 0) -> Connectivity:
        """Lower triangle: edge ``(i, j)`` where ``j <= i + diagonal`` (as ``numpy.tril``).

        Examples:
            >>> Connectivity.tril(3, 3).to_dense().int()
            tensor([[1, 0, 0],
                    [1, 1, 0],
                    [1, 1, 1]], dtype=torch.int32)
        """
        return cls._generated(generators.tril(n_out, n_in, diagonal))

    @classmethod
    def triu(cls, n_out: int, n_in: int, diagonal: int = 0) -> Connectivity:
        """Upper triangle: edge ``(i, j)`` where ``j >= i + diagonal`` (as ``numpy.triu``)."""
        return cls._generated(generators.triu(n_out, n_in, diagonal))

    @classmethod
    def diagonal(cls, n_out: int, n_in: int, offset: int = 0) -> Connectivity:
        """Edges ``(i, i + offset)``: output ``i`` sees only input ``i + offset``."""
        return cls._generated(generators.diagonal(n_out, n_in, offset))

    @classmethod
    def band(cls, n_out: int, n_in: int, lower: int, upper: int) -> Connectivity:
        """Edges ``(i, j)`` with ``i - lower <= j <= i + upper``."""
        return cls._generated(generators.band(n_out, n_in, lower, upper))

    @classmethod
    def block_diagonal(cls, sizes: Any) -> Connectivity:
        """Dense blocks on the diagonal; ``sizes`` lists ``(rows, cols)`` pairs (an int ``n``
        means ``(n, n)``; a [`Connectivity`][sparselinear.Connectivity] is placed as it is)."""
        return cls._generated(generators.block_diagonal(sizes))

    @classmethod
    def fixed_fan_in(
        cls, n_out: int, n_in: int, k: int, *, seed: int | None = None
    ) -> Connectivity:
        """Each output gets exactly ``k`` distinct inputs, drawn uniformly at random."""
        return cls._generated(generators.fixed_fan_in(n_out, n_in, k, seed=seed))

    @classmethod
    def small_world(
        cls,
        n_out: int,
        n_in: int,
        *,
        nnz: int | None = None,
        density: float | None = None,
        seed: int | None = None,
    ) -> Connectivity:
        """Distance-dependent bipartite small-world pattern. See
        ``sparselinear.pattern.generators.small_world``."""
        return cls._generated(
            generators.small_world(n_out, n_in, nnz=nnz, density=density, seed=seed)
        )

    def union(self, other: Connectivity) -> Connectivity:
        """Edges in either pattern (also ``a | b``)."""
        return self._combine(other, setops.union, "union")

    def intersection(self, other: Connectivity) -> Connectivity:
        """Edges in both patterns (also ``a & b``)."""
        return self._combine(other, setops.intersection, "intersection")

    def difference(self, other: Connectivity) -> Connectivity:
        """Edges of ``self`` that are not in ``other`` (also ``a - b``)."""
        return self._combine(other, setops.difference, "difference")

    def _keys(self) -> torch.Tensor:
        """Each edge as the int64 key ``output * in_features + input``, sorted."""
        rows, cols = self.indices()
        return rows * self.in_features + cols

    def _combine(self, other: Connectivity, op, name: str) -> Connectivity:
        if not isinstance(other, Connectivity):
            raise SparseLinearTypeError(
                f"'other' of {name} must be a Connectivity; got {describe(other)}."
            )
        if self.shape != other.shape:
            raise ShapeError(
                f"{name} needs patterns of the same shape; got {self.shape} and {other.shape} "
                "(out, in)."
            )
        out_names = setops.merge_names(self.out_names, other.out_names, "out_names")
        in_names = setops.merge_names(self.in_names, other.in_names, "in_names")
        keys = op(self._keys(), other.to(self.device)._keys())
        n_in = self.in_features
        rows, cols = (keys // n_in, keys % n_in) if n_in else (keys, keys)
        result = Connectivity._from_coordinates(rows, cols, self.shape)
        if out_names is not None or in_names is not None:
            result = result.with_names(out_names, in_names)
        out_attributes = merge_attributes(self._out_attributes, other._out_attributes)
        in_attributes = merge_attributes(self._in_attributes, other._in_attributes)
        if out_attributes is None and in_attributes is None:
            return result
        return Connectivity.from_canonical_csr(
            self.shape, *result._fields(), result._digest, result._out_names,
            result._in_names, out_attributes=out_attributes, in_attributes=in_attributes,
        )

    def __or__(self, other: object) -> Connectivity:
        return self.union(other) if isinstance(other, Connectivity) else NotImplemented

    def __and__(self, other: object) -> Connectivity:
        return self.intersection(other) if isinstance(other, Connectivity) else NotImplemented

    def __sub__(self, other: object) -> Connectivity:
        return self.difference(other) if isinstance(other, Connectivity) else NotImplemented
