"""The :class:`SparseLinear` module."""

from __future__ import annotations

from typing import Any

import scipy.sparse
import torch
from torch import nn

from . import _dense
from .connectivity import Connectivity
from .errors import ShapeError, WiringMismatchError
from .functional import sparse_linear

__all__ = ["SparseLinear"]

_PATTERN_BUFFERS = ("crow_indices", "col_indices")
_DERIVED_BUFFERS = ("crow_indices_t", "row_indices_t", "transpose_perm")


class SparseLinear(nn.Module):
    r"""A linear layer ``y = x Wᵀ + b`` whose weight ``W`` exists only on a sparse pattern.

    The trainable :attr:`weight` is a 1-D parameter with one value per edge, so every optimizer
    works and entries off the pattern are zero by construction. Forward and backward run through
    sparse kernels and never allocate anything of size ``out_features x in_features``.

    Args:
        in_features: size of each input sample.
        out_features: size of each output sample.
        connectivity: the pattern, shape ``(out_features, in_features)``: rows are outputs,
            columns are inputs. A :class:`Connectivity` or anything it accepts (a scipy sparse
            matrix, a ``(2, nnz)`` index tensor ``[output, input]``, a boolean mask, a torch
            sparse tensor).
        bias: if ``False``, the layer has no additive bias. Default: ``True``.
        device, dtype: of the parameters, as for ``nn.Linear``.
        mode: ``"auto"``, ``"sparse"`` or ``"dense"``: how forward and backward compute (see
            :func:`~sparselinear.functional.sparse_linear`); the attribute :attr:`mode` can be
            changed later. Default: ``"auto"``.

    Shape:
        - Input: ``(*, in_features)``
        - Output: ``(*, out_features)``

    Attributes:
        weight: the edge values, shape ``(nnz,)``, aligned with ``connectivity.indices()``;
            initialised from :math:`\mathcal{U}(-1/\sqrt{k_i}, 1/\sqrt{k_i})` where :math:`k_i`
            is the real fan-in of the edge's output.
        bias: shape ``(out_features,)``, initialised the same way per output.
        connectivity: the :class:`Connectivity`.

    The pattern is stored as buffers, so ``.to()``, ``.double()`` and ``state_dict()`` carry it;
    loading a state dict made for a different pattern raises
    :class:`~sparselinear.errors.WiringMismatchError`.

    Examples::

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
        self.mode = _dense.check_mode(mode)
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
        for name, tensor in zip(_PATTERN_BUFFERS + _DERIVED_BUFFERS, connectivity._fields()):
            self.register_buffer(name, tensor, persistent=name in _PATTERN_BUFFERS)
        self.weight = nn.Parameter(torch.empty(connectivity.nnz, **factory))
        if bias:
            self.bias = nn.Parameter(torch.empty(out_features, **factory))
        else:
            self.register_parameter("bias", None)
        self._digest: str | None = connectivity._digest
        self.reset_parameters()

    @property
    def connectivity(self) -> Connectivity:
        """The layer's pattern, on the layer's device."""
        fields = [getattr(self, name) for name in _PATTERN_BUFFERS + _DERIVED_BUFFERS]
        c = Connectivity._from_fields((self.out_features, self.in_features), *fields, self._digest)
        if self._digest is None:
            self._digest = c.digest
        return c

    @property
    def nnz(self) -> int:
        return self.col_indices.numel()

    def reset_parameters(self) -> None:
        """Draw weights and bias from ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` of each output."""
        fan_in = self.crow_indices.diff().to(self.weight.dtype if self.weight.is_floating_point() else torch.float32)
        bound = torch.where(fan_in > 0, fan_in.clamp(min=1).rsqrt(), torch.zeros_like(fan_in))
        with torch.no_grad():
            edge_bound = torch.repeat_interleave(bound, self.crow_indices.diff().to(torch.int64))
            self.weight.uniform_(-1.0, 1.0).mul_(edge_bound.to(self.weight.dtype))
            if self.bias is not None:
                self.bias.uniform_(-1.0, 1.0).mul_(bound.to(self.bias.dtype))

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return sparse_linear(input, self.weight, self.connectivity, self.bias, mode=self.mode)

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
        plan = _dense.plan_for(
            self.crow_indices, self.col_indices, "auto", self.weight.dtype, self.weight.device
        )
        return f"auto({'sparse' if plan is None else 'dense'})"

    # ------------------------------------------------------------------ exports
    def to_dense(self) -> torch.Tensor:
        """The ``(out_features, in_features)`` weight with zeros off the pattern (differentiable).

        Allocates ``out x in`` values: meant for small layers, inspection and tests.
        """
        dense = self.weight.new_zeros(self.out_features, self.in_features)
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
        # land on the wrong edges. An identical pattern loads as usual.
        incoming = {n: state_dict.get(prefix + n) for n in _PATTERN_BUFFERS}
        if all(t is not None for t in incoming.values()):
            mine = (self.crow_indices, self.col_indices)
            same = all(
                t.shape == m.shape and torch.equal(t.cpu().to(torch.int64), m.cpu().to(torch.int64))
                for t, m in zip(incoming.values(), mine)
            )
            if not same:
                theirs = _digest_of(incoming["crow_indices"], incoming["col_indices"], self.in_features)
                raise WiringMismatchError(
                    f"The checkpoint for '{prefix or 'layer'}' was made for different wiring: its "
                    f"pattern has nnz={incoming['col_indices'].numel()} and digest {theirs[:12]}, "
                    f"this layer has nnz={self.nnz} and digest {self.connectivity.digest[:12]}. "
                    "Build the layer with the checkpoint's pattern, e.g. "
                    "`Connectivity.from_csr(sd['crow_indices'], sd['col_indices'], shape)`."
                )
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing, unexpected, errors
        )


def _digest_of(crow: torch.Tensor, col: torch.Tensor, n_in: int) -> str:
    shape = (crow.numel() - 1, n_in)
    try:
        return Connectivity.from_csr(crow, col, shape).digest
    except ValueError:
        return "invalid"
