"""The autograd function behind every sparse linear layer.

``y = x Wᵀ + b`` with ``W`` given by its nnz values and a CSR pattern. Forward and both input
gradients are sparse x dense products; the weight gradient is computed only at the nnz positions
(a sampled dense-dense product). Nothing of size ``out x in`` is ever allocated.

Dense operands are handled transposed, ``(features, batch)``, so that each edge reads one
contiguous batch vector. Which kernels run is :func:`.policy.plan_step`'s decision, made once per
forward pass and kept for its backward pass: on CPU the compiled kernels
(:mod:`~sparselinear.ops._ext`) compute the forward pass in one sweep over the rows and both
gradients in one fused sweep (per-thread input-gradient buffers), or in one sweep over the
transposed pattern (gathering rows of the output gradient, each of which meets its edge's input
there too), the fused sweep in column blocks (:mod:`~sparselinear.ops.blocks`) once its gathered
tables outgrow the cache. Elsewhere, or when they are unavailable, torch's CSR kernels run in
bounded chunks (:mod:`~sparselinear.ops.torch_kernels`), the input gradient over the transposed
pattern.

The transposed pattern is asked for (through a callable, so that it can be built lazily and
cached by its owner) only in the branches that read it.

Double backward (gradient penalties, Hessian-vector products, MAML): the gradients of a sparse
product are sparse products on the same pattern — ``grad_x = grad_y W`` over the transposed
pattern, ``grad_w = SDDMM(grad_y, x)`` at the edges — so a backward pass asked to build a graph
(``create_graph=True``) computes them with differentiable functions of their own
(:func:`sparse_gradients`, :class:`SampledProductFunction`), to any order.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from . import _ext, blocks, policy, torch_kernels

__all__ = ["SampledProductFunction", "SparseLinearFunction", "sparse_gradients"]

#: A zero-argument callable returning the transposed pattern ``(crow_t, row_t, perm)``.
Transposed = Callable[[], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


def _compiled_forward(plan, x, w, bias, crow, col):
    """``(y (batch, out), x_t (in, batch))``: ``x_t`` is the gathered copy saved for backward."""
    batch = x.shape[0]
    x_t = _ext.transposed(x, w.dtype)
    b = None if bias is None else bias.to(w.dtype).contiguous()
    if plan.in_place:
        y = torch.empty(batch, crow.numel() - 1, dtype=w.dtype)
        _ext.spmm(crow, col, w, x_t, b, out=y.t())  # written batch-major, bias included
    else:
        y = _ext.transposed(_ext.spmm(crow, col, w, x_t, b), hugepages=False)
    return y, x_t


def _in_blocks(crow, col, n_in, n_blocks):
    """``(crow, col, run)`` for a backward sweep: the pattern as it is (``run`` ``None``), or in
    the plan's column blocks (:mod:`~sparselinear.ops.blocks`)."""
    if n_blocks == 1:
        blocks.forget(col)
        return crow, col, None
    layout = blocks.layout(crow, col, n_in, n_blocks)
    return layout.crow, layout.col, layout.run


def _compiled_backward(plan, x_t, w, grad_y, crow, col, transposed, want_gx, want_gw, recycle):
    """``(grad_w (nnz,) or None, grad_x (batch, in) or None)`` from ``grad_y (batch, out)``, in
    the plan's backward form.

    ``recycle``: whether ``grad_w`` becomes a leaf's gradient as it is (its buffer is then
    recycled between steps) rather than a temporary (cast, or passed on to a parametrization)."""
    n_in, batch = x_t.shape
    if plan.backward == "fused":
        # One pass over the pattern; grad_x is summed from the threads' buffers batch-major.
        g = grad_y.t() if plan.in_place else _ext.transposed(grad_y)
        grad_x = torch.empty(batch, n_in, dtype=x_t.dtype)
        crow, col, run = _in_blocks(crow, col, n_in, plan.column_blocks)
        grad_w, _ = _ext.backward(crow, col, w, x_t, g, n_in, want_gw=want_gw, want_gx=True,
                                  out=grad_x.t(), recycle=recycle, run=run)
        return grad_w, grad_x
    # The gather form reads rows of grad_y at random: it gets an (out, batch) copy. The weight
    # gradient alone reads each row once and takes grad_y in place when the batch is narrow.
    if plan.backward == "weight":
        g_t = grad_y.t() if plan.in_place else _ext.transposed(grad_y)
        crow, col, run = _in_blocks(crow, col, n_in, plan.column_blocks)
        grad_w, _ = _ext.backward(crow, col, w, x_t, g_t, n_in, want_gw=True, want_gx=False,
                                  recycle=recycle, run=run)
        return grad_w, None
    g_t = _ext.transposed(grad_y)
    crow_t, row_t, perm = (t.contiguous() for t in transposed())
    grad_x = torch.empty(batch, n_in, dtype=x_t.dtype) if plan.in_place else None
    out = None if grad_x is None else grad_x.t()
    if want_gw:
        # Both gradients in one sweep: each gathered row of grad_y also meets its edge's input.
        grad_w, gx_t = _ext.backward_transposed(crow_t, row_t, perm, w, x_t, g_t, out=out,
                                                recycle=recycle)
    else:
        # The values in transposed order once, instead of through perm in every batch tile.
        grad_w, gx_t = None, _ext.spmm(crow_t, row_t, w[perm], g_t, out=out)
    if grad_x is None:
        grad_x = _ext.transposed(gx_t, hugepages=False)
    return grad_w, grad_x


class SparseLinearFunction(torch.autograd.Function):
    """``y = x Wᵀ + b`` for a 2-D ``x`` of shape ``(batch, in)``.

    Inputs: ``x (batch, in)``, ``weight (nnz,)``, ``bias (out,)`` or ``None``, then the pattern:
    ``crow (out + 1,)``, ``col (nnz,)`` and ``transposed``, a zero-argument callable returning
    the transposed pattern ``(crow_t (in + 1,), row_t (nnz,), perm (nnz,))``, called only when the
    backward pass reads it (e.g. ``connectivity._transposed``). Returns ``(batch, out)``. Index
    inputs get no gradient.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, crow, col, transposed: Transposed):
        dtype = policy.compute_dtype(x.dtype, x.device)
        w = weight.to(dtype).contiguous()
        plan = policy.plan_step(
            crow.numel() - 1, x.shape[1], col.numel(), x.shape[0], x.dtype, x.device,
            needs_input_grad=ctx.needs_input_grad[0], needs_weight_grad=ctx.needs_input_grad[1],
            index_dtype=col.dtype, compiled=policy.extension_enabled(w),
        )
        if plan.compiled:
            y, x_t = _compiled_forward(plan, x, w, bias, crow.contiguous(), col.contiguous())
            y = y.to(x.dtype)
        else:
            x_t = x.t().to(dtype).contiguous()  # (in, batch): each input's batch vector contiguous
            y_t = torch_kernels.spmm(crow, col, w, x_t)  # (out, batch)
            y = y_t.t().to(x.dtype)
            y = y + bias if bias is not None else y.contiguous()
        # The input itself (not its gathered copy) for a backward pass that builds a graph: the
        # weight gradient depends on it. It is alive anyway when it requires a gradient.
        ctx.save_for_backward(x_t, weight, crow, col, x if x.requires_grad else None)
        ctx.transposed, ctx.plan = transposed, plan
        ctx.has_bias = bias is not None
        # The weight gradient's buffer is kept between steps only when it becomes a leaf's
        # .grad as it is: not cast, and not passed on through a constraint or a gather.
        ctx.recycle = weight.is_leaf and weight.dtype == dtype
        return y

    @staticmethod
    def backward(ctx, grad_y):
        x_t, weight, crow, col, x = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: gradients that can be differentiated
            x = x_t.t().to(grad_y.dtype) if x is None else x
            return (*sparse_gradients(grad_y, x, weight, crow, col, ctx.transposed,
                                      ctx.needs_input_grad[:3], ctx.has_bias), None, None, None)
        dtype = x_t.dtype
        want_gx, want_gw = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_x = grad_w = grad_b = None
        if (want_gx or want_gw) and ctx.plan.compiled:
            w = weight.to(dtype).contiguous()
            fields = (t.contiguous() for t in (crow, col))
            grad_w, grad_x = _compiled_backward(
                ctx.plan, x_t, w, grad_y.to(dtype), *fields, ctx.transposed, want_gx, want_gw,
                recycle=ctx.recycle,
            )
        elif want_gx or want_gw:
            g_t = grad_y.t().to(dtype).contiguous()  # (out, batch)
            if want_gx:
                crow_t, row_t, perm = ctx.transposed()
                w_t = weight.to(dtype)[perm]  # values in the transposed pattern's order
                grad_x = torch_kernels.spmm(crow_t, row_t, w_t, g_t).t()
            if want_gw:
                grad_w = torch_kernels.sddmm(crow, col, g_t, x_t)
        if grad_x is not None:
            grad_x = grad_x.to(grad_y.dtype)
        if grad_w is not None:
            grad_w = grad_w.to(weight.dtype)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad_y.sum(0)
        return grad_x, grad_w, grad_b, None, None, None


def _reversed(crow: torch.Tensor, col: torch.Tensor, perm: torch.Tensor) -> Transposed:
    """The transposed pattern of a transposed pattern ``(crow_t, row_t, perm)``: the forward
    pattern, with the inverse permutation (built when asked for)."""

    def build() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        inverse = torch.empty_like(perm)
        inverse[perm.to(torch.int64)] = torch.arange(perm.numel(), dtype=perm.dtype,
                                                      device=perm.device)
        return crow, col, inverse

    return build


def sparse_gradients(grad_y: torch.Tensor, x: torch.Tensor, weight: torch.Tensor,
                     crow: torch.Tensor, col: torch.Tensor, transposed: Transposed,
                     needs: tuple[bool, bool, bool], has_bias: bool = True):
    """``(grad_x, grad_w, grad_b)`` of ``y = x Wᵀ + b`` for ``grad_y (batch, out)``, each
    ``None`` unless ``needs`` asks for it, computed with differentiable sparse products:
    ``grad_x`` is ``grad_y`` times ``W`` over the transposed pattern and ``grad_w`` the sampled
    product of ``grad_y`` and ``x`` at the edges. Under ``torch.no_grad()`` they are plain
    results (the dense-band function uses them where its dense tiles cannot serve)."""
    grad_x = grad_w = grad_b = None
    if needs[0]:
        crow_t, row_t, perm = transposed()
        grad_x = SparseLinearFunction.apply(grad_y, weight[perm.to(torch.int64)], None, crow_t,
                                            row_t, _reversed(crow, col, perm))
    if needs[1]:
        grad_w = SampledProductFunction.apply(grad_y, x, crow, col, transposed)
    if has_bias and needs[2]:
        grad_b = grad_y.sum(0)
    return grad_x, grad_w, grad_b


class SampledProductFunction(torch.autograd.Function):
    """``out[k] = g[:, row_k] · x[:, col_k]`` at the edges ``k`` of a CSR pattern, for
    ``g (batch, out)`` and ``x (batch, in)``: the weight gradient of a sparse linear layer, as a
    differentiable function of the output gradient and the input. Its own gradients are sparse
    products on the same pattern. Inputs after ``x``: ``crow``, ``col`` and ``transposed`` as for
    :class:`SparseLinearFunction`. Returns ``(nnz,)`` in ``g``'s dtype."""

    @staticmethod
    def forward(ctx, g, x, crow, col, transposed: Transposed):
        dtype = policy.compute_dtype(g.dtype, g.device)
        g_t = g.t().to(dtype).contiguous()
        x_t = x.t().to(dtype).contiguous()
        out = torch_kernels.sddmm(crow, col, g_t, x_t)
        ctx.save_for_backward(g, x, crow, col)
        ctx.transposed = transposed
        return out.to(g.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        g, x, crow, col = ctx.saved_tensors
        grad_g = grad_x = None
        if ctx.needs_input_grad[0]:  # d/dg[b, r] = sum over row r of grad_out[k] x[b, col_k]
            grad_g = SparseLinearFunction.apply(x, grad_out, None, crow, col, ctx.transposed)
        if ctx.needs_input_grad[1]:  # d/dx[b, c] = sum over column c of grad_out[k] g[b, row_k]
            crow_t, row_t, perm = ctx.transposed()
            grad_x = SparseLinearFunction.apply(g, grad_out[perm.to(torch.int64)], None, crow_t,
                                                row_t, _reversed(crow, col, perm))
        return grad_g, grad_x, None, None, None
