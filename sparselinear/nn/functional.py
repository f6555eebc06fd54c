"""Functional form of the sparse linear layer."""

from __future__ import annotations

import math

import torch

from ..errors import DeviceMismatchError, ShapeError, SparseLinearTypeError, describe
from ..ops import dense
from ..ops.autograd import SparseLinearFunction
from ..pattern.connectivity import Connectivity

__all__ = ["sparse_linear"]


def _check_inputs(
    input: torch.Tensor, weight: torch.Tensor, connectivity: Connectivity, bias: torch.Tensor | None
) -> None:
    if not isinstance(input, torch.Tensor):
        raise SparseLinearTypeError(f"'input' must be a torch.Tensor; got {describe(input)}.")
    if not isinstance(connectivity, Connectivity):
        raise SparseLinearTypeError(
            f"'connectivity' must be a Connectivity; got {describe(connectivity)}. "
            "Wrap your pattern with `Connectivity(...)`."
        )
    n_out, n_in = connectivity.shape
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
    if weight.dim() != 1 or weight.numel() != connectivity.nnz:
        raise ShapeError(
            f"'weight' must have shape ({connectivity.nnz},), one value per edge; got "
            f"{describe(weight)}."
        )
    if bias is not None and (bias.dim() != 1 or bias.numel() != n_out):
        raise ShapeError(f"'bias' must have shape ({n_out},); got {describe(bias)}.")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and t.dtype != input.dtype:
            raise SparseLinearTypeError(
                f"'input' has dtype {input.dtype} but '{name}' has dtype {t.dtype}. Cast one "
                f"of them, e.g. `layer.to({input.dtype})` or `input.to({t.dtype})`."
            )
    devices = {
        "input": input.device,
        "weight": weight.device,
        "connectivity": connectivity.device,
    }
    if bias is not None:
        devices["bias"] = bias.device
    if len(set(devices.values())) > 1:
        where = ", ".join(f"{k} on {v}" for k, v in devices.items())
        raise DeviceMismatchError(
            f"All tensors must be on one device; got {where}. Move them with `.to(device)`."
        )


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
            :mod:`sparselinear.ops.dense`, :mod:`sparselinear.ops.policy`). Default: ``"auto"``.

    Shape:
        - Input: ``(*, in_features)``
        - Output: ``(*, out_features)``

    Examples::

        >>> import torch
        >>> from sparselinear import Connectivity
        >>> from sparselinear.functional import sparse_linear
        >>> c = Connectivity(torch.tensor([[0, 1], [1, 0]]), shape=(2, 3))
        >>> sparse_linear(torch.ones(4, 3), torch.tensor([2.0, 3.0]), c).shape
        torch.Size([4, 2])
    """
    _check_inputs(input, weight, connectivity, bias)
    connectivity.validate()  # no kernel reads indices that changed since they were checked
    lead = input.shape[:-1]
    x = input.reshape(math.prod(lead), connectivity.in_features)
    crow, col = connectivity.crow_indices(), connectivity.col_indices()
    plan = dense.plan_for(crow, col, mode, input.dtype, input.device)
    # Dense tiles would multiply their zeros into a non-finite input (0 x inf is NaN) and spread
    # it to outputs not wired to it: such an input takes the sparse kernels.
    if plan is not None and bool(torch.isfinite(x).all()):
        where = plan.positions(crow, col)
        y = dense.DenseBandFunction.apply(x, weight, bias, plan, where, crow, col,
                                          connectivity.transposed_csr)
    else:
        y = SparseLinearFunction.apply(x, weight, bias, crow, col, connectivity.transposed_csr)
    return y.reshape(*lead, connectivity.out_features)
