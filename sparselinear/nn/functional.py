"""Functional form of the sparse linear layer."""

from __future__ import annotations

import math

import torch

from ..errors import DeviceMismatchError, ShapeError, SparseLinearTypeError, describe
from ..ops.library import LinearFunction, autocast_dtype
from ..ops.policy import check_mode, compute_dtype
from ..pattern.connectivity import Connectivity

__all__ = ["sparse_linear", "sparse_linear_csr"]


def _check_inputs(
    input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, n_out: int, n_in: int,
    nnz: int, pattern_device: torch.device,
) -> None:
    if not isinstance(input, torch.Tensor):
        raise SparseLinearTypeError(f"'input' must be a torch.Tensor; got {describe(input)}.")
    if not input.is_floating_point():
        raise SparseLinearTypeError(
            f"'input' must be a floating-point tensor; got {describe(input)}. Convert it, e.g. "
            "`input.float()`."
        )
    if input.dim() == 0 or input.shape[-1] != n_in:
        raise ShapeError(
            f"'input' must have shape (..., {n_in}) (in_features = {n_in}); got last dimension "
            f"{input.shape[-1] if input.dim() else 'none'} ({describe(input)})."
        )
    if weight.dim() != 1 or weight.numel() != nnz:
        raise ShapeError(
            f"'weight' must have shape ({nnz},), one value per edge; got {describe(weight)}."
        )
    if bias is not None and (bias.dim() != 1 or bias.numel() != n_out):
        raise ShapeError(f"'bias' must have shape ({n_out},); got {describe(bias)}.")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and t.dtype != input.dtype:
            raise SparseLinearTypeError(
                f"'input' has dtype {input.dtype} but '{name}' has dtype {t.dtype}. Cast one "
                f"of them, e.g. `layer.to({input.dtype})` or `input.to({t.dtype})`."
            )
    devices = {"input": input.device, "weight": weight.device, "connectivity": pattern_device}
    if bias is not None:
        devices["bias"] = bias.device
    if len(set(devices.values())) > 1:
        where = ", ".join(f"{k} on {v}" for k, v in devices.items())
        raise DeviceMismatchError(
            f"All tensors must be on one device; got {where}. Move them with `.to(device)`."
        )


def sparse_linear_csr(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    crow: torch.Tensor,
    col: torch.Tensor,
    shape: tuple[int, int],
    *,
    mode: str = "auto",
    recycle: bool | None = None,
) -> torch.Tensor:
    """[`sparse_linear`][sparselinear.functional.sparse_linear] on CSR index tensors ``(crow, col)``
    of ``shape`` (a layer's own buffers), through the ``torch.ops.sparselinear.linear`` operator.
    The indices are checked before any kernel reads them (cached while they are unchanged).
    ``recycle``: whether the weight gradient may reuse a kept buffer; default: ``weight`` is a leaf
    (it becomes its ``.grad`` as it is)."""
    n_out, n_in = shape
    cast = autocast_dtype(input.device.type) if isinstance(input, torch.Tensor) else None
    if cast is not None and input.is_floating_point():  # as nn.Linear does under autocast
        input, weight = input.to(cast), weight.to(cast)
        bias = None if bias is None else bias.to(cast)
    _check_inputs(input, weight, bias, n_out, n_in, col.numel(), col.device)
    check_mode(mode)
    lead = input.shape[:-1]
    x = input.reshape(math.prod(lead), n_in) if input.dim() != 2 else input
    if recycle is None:
        recycle = weight.is_leaf and weight.dtype == compute_dtype(weight.dtype, weight.device)
    keep = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
    y = LinearFunction.apply(x, weight, bias, crow, col, n_in, mode, recycle, keep)
    return y.reshape(*lead, n_out)


def sparse_linear(
    input: torch.Tensor,
    weight: torch.Tensor,
    connectivity: Connectivity,
    bias: torch.Tensor | None = None,
    *,
    mode: str = "auto",
) -> torch.Tensor:
    r"""Apply ``y = x Wᵀ + b`` where ``W`` has ``connectivity``'s pattern and ``weight`` holds its
    nnz values in the order of ``connectivity.indices()``.

    Args:
        input: tensor of shape ``(*, in_features)``.
        weight: the edge values, shape ``(nnz,)``.
        connectivity: the pattern, shape ``(out_features, in_features)``.
        bias: optional, shape ``(out_features,)``.
        mode: ``"sparse"`` (sparse kernels), ``"dense"`` (dense tiles over the row bands the
            pattern touches, with the same parameters and results) or ``"auto"`` (dense when
            the pattern fills enough of its bands and they fit a memory budget; see
            ``sparselinear.ops.dense``, [`sparselinear.kernels`][sparselinear.kernels]). Default:
            ``"auto"``.

    Shape:
        - Input: ``(*, in_features)``
        - Output: ``(*, out_features)``

    Examples:
        >>> import torch
        >>> from sparselinear import Connectivity
        >>> from sparselinear.functional import sparse_linear
        >>> c = Connectivity(torch.tensor([[0, 1], [1, 0]]), shape=(2, 3))
        >>> sparse_linear(torch.ones(4, 3), torch.tensor([2.0, 3.0]), c).shape
        torch.Size([4, 2])
    """
    if not isinstance(connectivity, Connectivity):
        raise SparseLinearTypeError(
            f"'connectivity' must be a Connectivity; got {describe(connectivity)}. "
            "Wrap your pattern with `Connectivity(...)`."
        )
    return sparse_linear_csr(input, weight, bias, connectivity.crow_indices(),
                             connectivity.col_indices(), connectivity.shape, mode=mode)
