"""The [`SparseLinear`][sparselinear.SparseLinear] module."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize, prune

from ..errors import (
    DataError,
    InsufficientMemoryError,
    PatternError,
    ShapeError,
    WiringMismatchError,
    describe,
)
from ..io.names import check_names, decode_names, encode_names
from ..ops import dense, policy
from ..pattern.caches import DerivedCache, transposed_cache
from ..pattern.connectivity import Connectivity, pattern_digest
from .convert import linear_to_pattern, scipy_to_pattern
from .functional import sparse_linear_csr

if TYPE_CHECKING:
    import scipy.sparse

__all__ = ["SparseLinear"]

_PATTERN_BUFFERS = ("crow_indices", "col_indices")
_WEIGHT_KEYS = ("weight", "parametrizations.weight.original")


class SparseLinear(nn.Module):
    r"""A linear layer ``y = x Wᵀ + b`` whose weight ``W`` exists only on a sparse pattern.

    The trainable ``weight`` is a 1-D parameter with one value per edge, so every optimizer works
    and entries off the pattern are zero by construction. In sparse mode, forward and backward run
    through sparse kernels and never allocate anything of size ``out_features x in_features``;
    ``mode="auto"`` may instead choose dense tiles covering the pattern's bands when the pattern
    fills them densely and they fit a fixed memory budget (see ``sparselinear.ops.dense``,
    [`sparselinear.kernels`][sparselinear.kernels]).

    Args:
        in_features: size of each input sample.
        out_features: size of each output sample.
        connectivity: the pattern, shape ``(out_features, in_features)``: rows are outputs,
            columns are inputs. A [`Connectivity`][sparselinear.Connectivity] or anything it accepts
            (a scipy sparse matrix, a ``(2, nnz)`` index tensor ``[output, input]``, a boolean mask,
            a torch sparse tensor).
        bias: if ``False``, the layer has no additive bias. Default: ``True``.
        device: of the parameters, as for ``nn.Linear``.
        dtype: of the parameters, as for ``nn.Linear``.
        mode: ``"auto"``, ``"sparse"`` or ``"dense"``: how forward and backward compute (see
            [`sparse_linear`][sparselinear.functional.sparse_linear]); the attribute ``mode`` can
            be changed later. Default: ``"auto"``.

    Shape:
        - Input: ``(*, in_features)``
        - Output: ``(*, out_features)``

    Attributes:
        weight: the edge values, shape ``(nnz,)``, aligned with ``connectivity.indices()``;
            initialised from ``U(-1/√k_i, 1/√k_i)`` (uniform) where ``k_i`` is the real fan-in
            of the edge's output.
        bias: shape ``(out_features,)``, initialised the same way per output.
        connectivity: the [`Connectivity`][sparselinear.Connectivity].

    The pattern is stored as two buffers, ``crow_indices`` and ``col_indices`` (the CSR), so
    ``.to()``, ``.double()`` and ``state_dict()`` carry it; loading a state dict made for a
    different pattern raises [`WiringMismatchError`][sparselinear.errors.WiringMismatchError]. The
    transposed pattern (``crow_indices_t``, ``row_indices_t``, ``transpose_perm``:
    ``in + 1 + 2 · nnz`` more indices) is built from them only when a computation needs it, on their
    device, and rebuilt after they move or change. So is, on CPU, a copy of the column indices in
    column blocks (``nnz + blocks · (2 · out + 1)`` more indices), used by the backward pass once
    its tables outgrow the CPU's cache (``kernels.CACHE_BYTES``).

    Examples:
        >>> import torch
        >>> from sparselinear import SparseLinear, Connectivity
        >>> layer = SparseLinear(20, 30, Connectivity.random(30, 20, density=0.1, seed=0))
        >>> layer  # doctest: +ELLIPSIS
        SparseLinear(in_features=20, out_features=30, nnz=60, density=0.1, bias=True, ...)
        >>> layer.mode, SparseLinear(20, 30, layer.connectivity, mode="dense").mode
        ('auto', 'dense')
        >>> layer(torch.randn(128, 20)).shape
        torch.Size([128, 30])
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        connectivity: Any,
        bias: bool = True,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        mode: str = "auto",
    ) -> None:
        super().__init__()
        self.mode = policy.check_mode(mode)
        expected = (int(out_features), int(in_features))
        if isinstance(connectivity, Connectivity):
            if connectivity.shape != expected:
                raise ShapeError(
                    f"The connectivity has shape {connectivity.shape} (out, in) but the layer is "
                    f"(out_features={out_features}, in_features={in_features}). If your matrix is "
                    "(input, output), pass `connectivity.T`."
                )
        else:
            connectivity = Connectivity(connectivity, shape=expected)
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        factory = {"device": device, "dtype": dtype}
        if device is not None:
            connectivity = connectivity.to(device)
        self.register_buffer("crow_indices", connectivity.crow_indices())
        self.register_buffer("col_indices", connectivity.col_indices())
        # Built on the meta device (or moved there), the buffers hold no indices: the pattern
        # is known only once a checkpoint is loaded (`to_empty()`, then `load_state_dict()`).
        self._pattern_pending = self.crow_indices.is_meta
        self.weight = nn.Parameter(torch.empty(connectivity.nnz, **factory))
        if bias:
            self.bias = nn.Parameter(torch.empty(out_features, **factory))
        else:
            self.register_parameter("bias", None)
        self._out_names, self._in_names = connectivity.out_names, connectivity.in_names
        # per-node attributes (a neuron table's columns) travel with the pattern, not in the
        # state dict
        self._attributes = connectivity.out_attributes, connectivity.in_attributes
        self.register_load_state_dict_pre_hook(_names_are_optional)
        self.reset_parameters()

    @property
    def connectivity(self) -> Connectivity:
        """The layer's pattern, on the layer's device."""
        return Connectivity.from_canonical_csr(
            (self.out_features, self.in_features),
            self.crow_indices,
            self.col_indices,
            out_names=self._out_names,
            in_names=self._in_names,
            out_attributes=self._attributes[0],
            in_attributes=self._attributes[1],
        )

    @property
    def _transpose_cache(self) -> DerivedCache:
        # The transposed pattern, built on first need, shared by every view of the buffers and
        # valid only for them as they are (see DerivedCache).
        return transposed_cache(self.col_indices)

    @property
    def crow_indices_t(self) -> torch.Tensor:
        """Row pointers of the transposed pattern, shape ``(in_features + 1,)`` (built on first
        use)."""
        return self.connectivity.transposed_csr()[0]

    @property
    def row_indices_t(self) -> torch.Tensor:
        """Output index of every edge in the transposed pattern's order, shape ``(nnz,)`` (built
        on first use)."""
        return self.connectivity.transposed_csr()[1]

    @property
    def transpose_perm(self) -> torch.Tensor:
        """``weight[transpose_perm]`` lists the values in the transposed pattern's order, shape
        ``(nnz,)`` (built on first use)."""
        return self.connectivity.transposed_csr()[2]

    @property
    def nnz(self) -> int:
        return self.col_indices.numel()

    def reset_parameters(self) -> None:
        """Draw weights and bias from ``U(-1/sqrt(k), 1/sqrt(k))``, ``k`` the output's fan-in.

        Outputs with no inputs get a zero bias, as ``nn.Linear`` does for ``in_features=0``. With
        constraints registered on ``weight``
        ([`sparselinear.constraints`][sparselinear.constraints]), the drawn values are moved into
        each constraint's allowed set and written to the free parameter.
        """
        fan_in = self.crow_indices.diff()
        bound = torch.where(fan_in > 0, fan_in.clamp(min=1).double().rsqrt(), 0.0)
        edge_bound = torch.repeat_interleave(bound, fan_in.long(), output_size=self.nnz)
        with torch.no_grad():
            if not parametrize.is_parametrized(self, "weight"):
                self.weight.uniform_(-1.0, 1.0).mul_(edge_bound.to(self.weight.dtype))
            else:
                chain = self.parametrizations.weight
                values = torch.empty_like(chain.original).uniform_(-1.0, 1.0)
                values.mul_(edge_bound.to(values.dtype))
                for constraint in reversed(list(chain)):  # right_inverse runs outermost first
                    if hasattr(constraint, "project"):
                        values = constraint.project(values)
                    values = constraint.right_inverse(values)
                chain.original.copy_(values)
            if self.bias is not None:
                self.bias.uniform_(-1.0, 1.0).mul_(bound.to(self.bias.dtype))

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if self._pattern_pending and input.is_meta and input.shape[-1:] == (self.in_features,):
            # shape propagation on the meta device: no indices are read
            return input.new_empty(*input.shape[:-1], self.out_features)
        if self._pattern_pending:
            raise PatternError(
                "This layer was built on the meta device, so its pattern buffers hold no "
                "indices yet. Allocate it with `layer.to_empty(device=...)` and load a checkpoint "
                "with `layer.load_state_dict(...)`; the checkpoint's pattern fills them."
            )
        return sparse_linear_csr(input, self.weight, self.bias, self.crow_indices,
                                 self.col_indices, (self.out_features, self.in_features),
                                 mode=self.mode)

    def extra_repr(self) -> str:
        density = self.nnz / max(1, self.in_features * self.out_features)
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"nnz={self.nnz}, density={density:.4g}, bias={self.bias is not None}, "
            f"mode={self._mode_repr()}"
        )

    def _mode_repr(self) -> str:
        if self.mode != "auto":
            return self.mode
        plan = dense.plan_for(
            self.crow_indices, self.col_indices, "auto", self.weight.dtype, self.weight.device
        )
        return f"auto({'sparse' if plan is None else 'dense'})"

    # ------------------------------------------------------------------ exports
    def to_dense(self) -> torch.Tensor:
        """The ``(out_features, in_features)`` weight with zeros off the pattern (differentiable).

        Allocates ``out x in`` values: meant for small layers, inspection and tests.
        """
        size = self.out_features * self.in_features * self.weight.element_size()
        try:
            dense = self.weight.new_zeros(self.out_features, self.in_features)
        except (RuntimeError, MemoryError) as exc:  # torch.OutOfMemoryError is a RuntimeError
            raise InsufficientMemoryError(
                f"to_dense() needs {self.out_features} x {self.in_features} values = "
                f"{size / 2**30:,.1f} GiB of {self.weight.device} memory, which could not be "
                "allocated. A layer this large exists only sparsely: use `to_scipy()` or "
                "`connectivity.indices()` with `weight` instead."
            ) from exc
        rows = self.connectivity.row_indices().to(torch.int64)
        return dense.index_put((rows, self.col_indices.to(torch.int64)), self.weight)

    def to_scipy(self) -> scipy.sparse.csr_array:
        """The weight as a ``scipy.sparse.csr_array`` of shape ``(out_features, in_features)``."""
        return self.connectivity.to_scipy(self.weight)

    # ------------------------------------------------------------------ checkpoints
    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing, unexpected, errors
    ) -> None:
        # Refuse a checkpoint made for other wiring before any weight is copied: its values would
        # land on the wrong edges. An identical pattern loads as usual, in the layer's index
        # dtype (a checkpoint's int32/int64 mix is cast, so the kernels read one dtype).
        where = f"'{prefix or 'layer'}'"
        incoming = {n: state_dict.get(prefix + n) for n in _PATTERN_BUFFERS}
        if all(t is not None for t in incoming.values()):
            for name, t in incoming.items():
                if not isinstance(t, torch.Tensor) or t.is_floating_point() or t.is_complex() \
                        or t.dtype == torch.bool:
                    raise WiringMismatchError(
                        f"The checkpoint for {where} holds '{name}' as {describe(t)}; pattern "
                        "indices are integer tensors. The checkpoint was edited or damaged: save "
                        "it again with `layer.state_dict()`."
                    )
                state_dict[prefix + name] = t.to(self.col_indices.dtype)
            self._check_wiring(where, state_dict[prefix + "crow_indices"],
                               state_dict[prefix + "col_indices"])
        elif any(prefix + k in state_dict for k in _WEIGHT_KEYS):
            missing_keys = [prefix + n for n, t in incoming.items() if t is None]
            raise WiringMismatchError(
                f"The checkpoint for {where} holds weights but not the pattern they belong to "
                f"(missing {', '.join(missing_keys)}), so it cannot be checked against this "
                "layer's wiring. Save it with `layer.state_dict()`, which carries the pattern."
            )
        self._check_names(where, state_dict.get(prefix + "_extra_state"))
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing, unexpected, errors
        )
        if self._pattern_pending and not self.crow_indices.is_meta:
            self._pattern_pending = False  # the checkpoint's pattern fills the buffers
            self.connectivity.validate()

    def _check_wiring(self, where: str, crow: torch.Tensor, col: torch.Tensor) -> None:
        if self._pattern_pending:
            # Built on the meta device: the layer knows its pattern's size, not its indices.
            same = crow.shape == self.crow_indices.shape and col.shape == self.col_indices.shape
        else:
            same = all(
                t.shape == m.shape and torch.equal(t.cpu().to(torch.int64), m.cpu().to(torch.int64))
                for t, m in ((crow, self.crow_indices), (col, self.col_indices))
            )
        if same:
            return
        theirs = pattern_digest((crow.numel() - 1, self.in_features), crow, col)
        mine = "unknown" if self._pattern_pending else self.connectivity.digest[:12]
        raise WiringMismatchError(
            f"The checkpoint for {where} was made for different wiring: its pattern has "
            f"nnz={col.numel()} and digest {theirs[:12]}, this layer has nnz={self.nnz} and "
            f"digest {mine}. Build the layer with the checkpoint's pattern, e.g. "
            "`Connectivity.from_csr(sd['crow_indices'], sd['col_indices'], shape)`."
        )

    def _check_names(self, where: str, state: Any) -> None:
        # Names are part of the wiring: a checkpoint for other neurons is refused even when the
        # indices coincide. A checkpoint without names (or a layer without them) loads as is.
        state = decode_names(state)
        if state is None:
            return
        for axis, mine in (("out_names", self._out_names), ("in_names", self._in_names)):
            theirs = state.get(axis)
            if mine is None or theirs is None or tuple(theirs) == tuple(mine):
                continue
            differ = [i for i, (a, b) in enumerate(zip(mine, theirs)) if a != b]
            first = differ[0] if differ else min(len(mine), len(theirs))
            shown = theirs[first] if first < len(theirs) else "(none)"
            raise WiringMismatchError(
                f"The checkpoint for {where} was made for differently named nodes: {axis}[{first}] "
                f"is {shown!r} there and {mine[first]!r} here. Names are part of the wiring; "
                "load it into a layer built with the checkpoint's names, or drop them from the "
                "checkpoint (`sd[prefix + '_extra_state'] = None`) to load the values by index."
            )

    def _apply(self, fn, recurse: bool = True):
        module = super()._apply(fn, recurse)
        if self.crow_indices.is_meta:
            self._pattern_pending = True  # no indices on the meta device: load a checkpoint
        return module

    # ------------------------------------------------------------------ names and conversions
    @property
    def in_names(self) -> tuple[str, ...] | None:
        """Names of the inputs, or ``None``; kept in ``state_dict()`` (extra state)."""
        return self._in_names

    @property
    def out_names(self) -> tuple[str, ...] | None:
        """Names of the outputs, or ``None``; kept in ``state_dict()`` (extra state)."""
        return self._out_names

    def get_extra_state(self) -> torch.Tensor:
        # A tensor, so that state_dict() holds tensors only (safetensors, cloning a state dict):
        # the names as UTF-8 JSON bytes.
        return encode_names({"in_names": self._in_names, "out_names": self._out_names})

    def set_extra_state(self, state: Any) -> None:
        # Names travel with the checkpoint; one without names leaves the layer's own in place.
        state = decode_names(state)
        if state is None:
            return
        if state.get("out_names") is not None:
            self._out_names = check_names(state["out_names"], self.out_features, "out_names")
        if state.get("in_names") is not None:
            self._in_names = check_names(state["in_names"], self.in_features, "in_names")

    @classmethod
    def from_scipy(
        cls,
        adj: Any,
        *,
        orientation: str,
        use_values: bool = False,
        explicit_zeros: str = "edge",
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> SparseLinear:
        """A layer on the pattern of a scipy sparse matrix.

        Args:
            adj: a ``scipy.sparse`` matrix or array.
            orientation: ``"source_target"`` if ``adj[i, j]`` is an edge from input ``i`` to
                output ``j`` (the adjacency convention of networkx and most connectome files);
                ``"target_source"`` if rows are outputs, as in ``nn.Linear.weight``. Required:
                the two are easy to confuse and a square matrix cannot tell.
            use_values: start from the stored values as weights (else the usual random init).
            explicit_zeros: a stored zero is an ``"edge"`` (default) or ``"drop"``-ped.
            bias: as for the constructor.
            device: as for the constructor.
            dtype: as for the constructor.

        Examples:
            >>> import scipy.sparse
            >>> adj = scipy.sparse.csr_array([[0, 2.0, 0], [0, 0, 3.0], [0, 0, 0]])  # 0->1, 1->2
            >>> layer = SparseLinear.from_scipy(adj, orientation="source_target", use_values=True)
            >>> layer.connectivity.indices().tolist(), layer.weight.tolist()
            ([[1, 2], [0, 1]], [2.0, 3.0])
        """
        conn, values = scipy_to_pattern(adj, orientation=orientation,
                                        explicit_zeros=explicit_zeros)
        layer = cls(conn.in_features, conn.out_features, conn, bias, device=device, dtype=dtype)
        if use_values:
            if not np.isfinite(values).all():
                raise DataError(
                    "'adj' holds NaN or infinite values; they cannot be initial weights."
                )
            with torch.no_grad():
                layer.weight.copy_(torch.from_numpy(values))
        return layer

    @classmethod
    def from_edgelist(
        cls,
        data: Any,
        *,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        **options: Any,
    ) -> SparseLinear:
        """A layer from an edge list; edge ``source -> target`` feeds input ``source`` into output
        ``target``. With ``weight=`` a column, its values are the initial weights. ``options``
        are those of [`Connectivity.from_edgelist`][sparselinear.Connectivity.from_edgelist].

        Examples:
            >>> layer = SparseLinear.from_edgelist([("a", "b", 0.5), ("b", "c", 2.0)], weight=2)
            >>> layer.in_names, layer.weight.tolist()
            (('a', 'b', 'c'), [0.5, 2.0])
        """
        result = Connectivity.from_edgelist(data, **options)
        conn, values = result if isinstance(result, tuple) else (result, None)
        layer = cls(conn.in_features, conn.out_features, conn, bias, device=device, dtype=dtype)
        if values is not None:
            with torch.no_grad():
                layer.weight.copy_(values)
        return layer

    @classmethod
    def from_linear(
        cls,
        linear: nn.Linear,
        mask: Any = None,
        *,
        threshold: float | None = None,
        topk: int | None = None,
    ) -> SparseLinear:
        """The same function as ``linear`` on a sparse pattern: its prune mask, ``mask``, its
        nonzeros, or a magnitude ``threshold``/``topk`` (see
        ``sparselinear.nn.convert.linear_to_pattern``). The values, bias, dtype and device
        are copied; on its pattern the new layer gives the same output.

        Examples:
            >>> from torch.nn.utils import prune
            >>> linear = nn.Linear(64, 32)
            >>> _ = prune.l1_unstructured(linear, "weight", amount=0.9)
            >>> sparse = SparseLinear.from_linear(linear)
            >>> sparse.nnz
            205
            >>> x = torch.randn(8, 64)
            >>> torch.allclose(sparse(x), linear(x), atol=1e-6)
            True
        """
        pattern, values = linear_to_pattern(linear, mask, threshold=threshold, topk=topk)
        weight = linear.weight
        layer = cls(linear.in_features, linear.out_features, pattern,
                    bias=linear.bias is not None, device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            layer.weight.copy_(values)
            if linear.bias is not None:
                layer.bias.copy_(linear.bias.detach())
        return layer

    def to_linear(self, *, keep_mask: bool = False) -> nn.Linear:
        """A dense ``nn.Linear`` with the same weights (zeros off the pattern), bias, dtype and
        device.

        With ``keep_mask=True`` the pattern is attached as a ``torch.nn.utils.prune`` mask, so
        training the dense layer keeps zeros off the pattern and
        [`from_linear`][sparselinear.SparseLinear.from_linear] recovers the exact pattern
        (zero-valued edges included). Allocates ``out x in`` values.

        Examples:
            >>> layer = SparseLinear(4, 3, Connectivity.tril(3, 4))
            >>> dense = layer.to_linear()
            >>> x = torch.randn(2, 4)
            >>> torch.allclose(dense(x), layer(x))
            True
        """
        weight = self.weight
        linear = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None,
                           device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            linear.weight.copy_(self.to_dense())
            if self.bias is not None:
                linear.bias.copy_(self.bias)
        if keep_mask:
            prune.custom_from_mask(linear, "weight", self.connectivity.to_dense())
        return linear

    def to_edgelist(self) -> list[tuple[Any, Any, float]]:
        """``(source, target, weight)`` rows, one per edge, named when the layer has names.

        Examples:
            >>> layer = SparseLinear.from_edgelist([("a", "b", 0.5)], weight=2, bias=False)
            >>> layer.to_edgelist()
            [('a', 'b', 0.5)]
        """
        return self.connectivity.to_edgelist(self.weight)


def _names_are_optional(module, state_dict, prefix, *args) -> None:
    # Checkpoints without names (made before layers had them) load strictly as before.
    state_dict.setdefault(prefix + "_extra_state", None)


