"""The autograd function behind every sparse linear layer.

``y = x Wᵀ + b`` with ``W`` given by its nnz values and a CSR pattern. Forward and both input
gradients are sparse x dense products; the weight gradient is computed only at the nnz positions
(a sampled dense-dense product). Nothing of size ``out x in`` is ever allocated, and the kernels
work in bounded chunks (:mod:`sparselinear.kernels`).
"""

from __future__ import annotations

import torch

from . import kernels

__all__ = ["SparseLinearFunction"]


class SparseLinearFunction(torch.autograd.Function):
    """``y = x Wᵀ + b`` for a 2-D ``x`` of shape ``(batch, in)``.

    Inputs: ``x (batch, in)``, ``weight (nnz,)``, ``bias (out,)`` or ``None``, then the pattern:
    ``crow (out + 1,)``, ``col (nnz,)``, ``crow_t (in + 1,)``, ``row_t (nnz,)``, ``perm (nnz,)``.
    Returns ``(batch, out)``. Index inputs get no gradient.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, crow, col, crow_t, row_t, perm):
        dtype = kernels.compute_dtype(x.dtype, x.device)
        x_t = x.t().to(dtype).contiguous()  # (in, batch): each input's batch vector contiguous
        w = weight.to(dtype)
        y_t = kernels.spmm(crow, col, w, x_t)  # (out, batch)
        y = y_t.t().to(x.dtype)
        if bias is not None:
            y = y + bias
        else:
            y = y.contiguous()
        ctx.save_for_backward(x_t, weight, crow, col, crow_t, row_t, perm)
        ctx.has_bias = bias is not None
        return y

    @staticmethod
    def backward(ctx, grad_y):
        x_t, weight, crow, col, crow_t, row_t, perm = ctx.saved_tensors
        dtype = x_t.dtype
        g_t = grad_y.t().to(dtype).contiguous()  # (out, batch)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            w_t = weight.to(dtype)[perm]  # values in the transposed pattern's order
            grad_x = kernels.spmm(crow_t, row_t, w_t, g_t).t().to(grad_y.dtype)
        if ctx.needs_input_grad[1]:
            grad_w = kernels.sddmm(crow, col, g_t, x_t).to(weight.dtype)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad_y.sum(0)
        return grad_x, grad_w, grad_b, None, None, None, None, None
