"""The sparse kernels of a sparse linear layer's step: forward, and both gradients.

``y = x Wᵀ + b`` with ``W`` given by its nnz values and a CSR pattern. Forward and both input
gradients are sparse x dense products; the weight gradient is computed only at the nnz positions
(a sampled dense-dense product). Nothing of size ``out x in`` is ever allocated.

Dense operands are handled transposed, ``(features, batch)``, so that each edge reads one
contiguous batch vector. Which kernels run is [`policy.plan_step`][sparselinear.kernels.plan_step]'s
decision, made once per forward pass and kept for its backward pass: on CPU the compiled kernels
(``_ext``) compute the forward pass in one sweep over the rows and both
gradients in one fused sweep (per-thread input-gradient buffers), or in one sweep over the
transposed pattern (gathering rows of the output gradient, each of which meets its edge's input
there too), the fused sweep in column blocks (``blocks``) once its gathered
tables outgrow the cache. Elsewhere, or when they are unavailable, torch's CSR kernels run in
bounded chunks (``torch_kernels``), the input gradient over the transposed
pattern.

The transposed pattern is asked for (through a callable, so that it can be built lazily and
cached by its owner) only in the branches that read it.

These are plain functions of tensors; the operators that autograd, ``torch.compile`` and
``torch.export`` see are in [`library`][sparselinear.ops.library].
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from . import _ext, blocks, policy, torch_kernels

__all__ = ["gathered_input", "plan_for_step", "sparse_backward", "sparse_backward_into",
           "sparse_forward", "sparse_product", "writes_in_place"]

#: A zero-argument callable returning the transposed pattern ``(crow_t, row_t, perm)``.
Transposed = Callable[[], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


def _compiled_product(plan, x_t, w, bias, crow, col):
    """``y (batch, out)`` from the gathered input ``x_t (in, batch)``."""
    batch = x_t.shape[1]
    b = None if bias is None else bias.to(w.dtype).contiguous()
    if plan.in_place:
        y = torch.empty(batch, crow.numel() - 1, dtype=w.dtype)
        _ext.spmm(crow, col, w, x_t, b, out=y.t())  # written batch-major, bias included
        return y
    return _ext.transposed(_ext.spmm(crow, col, w, x_t, b), hugepages=False)


def _in_blocks(crow, col, n_in, n_blocks):
    """``(crow, col, run)`` for a backward sweep: the pattern as it is (``run`` ``None``), or in
    the plan's column blocks (``blocks``)."""
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


def plan_for_step(x: torch.Tensor, weight: torch.Tensor, crow: torch.Tensor, col: torch.Tensor,
                  needs_input_grad: bool, needs_weight_grad: bool) -> policy.StepPlan:
    """The policy's plan for a sparse step of ``x (batch, in)`` over the pattern ``(crow, col)``
    (the compiled kernels where the backend allows them for ``weight``'s compute dtype)."""
    w_dtype = policy.compute_dtype(x.dtype, x.device)
    return policy.plan_step(
        crow.numel() - 1, x.shape[1], col.numel(), x.shape[0], x.dtype, x.device,
        needs_input_grad=needs_input_grad, needs_weight_grad=needs_weight_grad,
        index_dtype=col.dtype,
        compiled=policy.extension_enabled(weight.new_empty(0, dtype=w_dtype)),
    )


def sparse_forward(plan: policy.StepPlan, x: torch.Tensor, weight: torch.Tensor,
                   bias: torch.Tensor | None, crow: torch.Tensor, col: torch.Tensor):
    """``(y (batch, out), x_t (in, batch))`` by the plan's sparse kernels; ``x_t`` is the input
    in the compute dtype, gathered as the backward pass reads it."""
    x_t = gathered_input(plan, x)
    return sparse_product(plan, x_t, weight, bias, crow, col, x.dtype), x_t


def sparse_product(plan: policy.StepPlan, x_t: torch.Tensor, weight: torch.Tensor,
                   bias: torch.Tensor | None, crow: torch.Tensor, col: torch.Tensor,
                   dtype: torch.dtype) -> torch.Tensor:
    """``y (batch, out)`` in ``dtype`` by the plan's sparse kernels from an input already
    gathered as ``gathered_input`` makes it (``(in, batch)``, contiguous, in the compute
    dtype): for callers that hold the input in that layout (pieces of a row-sharded input)."""
    w = weight.to(x_t.dtype).contiguous()
    if plan.compiled:
        return _compiled_product(plan, x_t, w, bias, crow.contiguous(), col.contiguous()).to(dtype)
    y_t = torch_kernels.spmm(crow, col, w, x_t)  # (out, batch)
    y = y_t.t().to(dtype)
    return y + bias if bias is not None else y.contiguous()


def gathered_input(plan: policy.StepPlan, x: torch.Tensor) -> torch.Tensor:
    """``x_t (in, batch)`` in the compute dtype, as ``sparse_forward`` makes it."""
    dtype = policy.compute_dtype(x.dtype, x.device)
    if plan.compiled:
        return _ext.transposed(x, dtype)
    return x.t().to(dtype).contiguous()


def sparse_backward(plan: policy.StepPlan, x_t: torch.Tensor, weight: torch.Tensor,
                    grad_y: torch.Tensor, crow: torch.Tensor, col: torch.Tensor,
                    transposed: Transposed, want_gx: bool, want_gw: bool, recycle: bool):
    """``(grad_x or None, grad_w or None)`` of a sparse step by the plan's kernels, ``grad_x``
    in ``grad_y``'s dtype and ``grad_w`` in ``weight``'s."""
    dtype = x_t.dtype
    grad_x = grad_w = None
    if (want_gx or want_gw) and plan.compiled:
        w = weight.to(dtype).contiguous()
        fields = (t.contiguous() for t in (crow, col))
        grad_w, grad_x = _compiled_backward(
            plan, x_t, w, grad_y.to(dtype), *fields, transposed, want_gx, want_gw,
            recycle=recycle,
        )
    elif want_gx or want_gw:
        g_t = grad_y.t().to(dtype).contiguous()  # (out, batch)
        if want_gx:
            crow_t, row_t, perm = transposed()
            w_t = weight.to(dtype)[perm]  # values in the transposed pattern's order
            grad_x = torch_kernels.spmm(crow_t, row_t, w_t, g_t).t()
        if want_gw:
            grad_w = torch_kernels.sddmm(crow, col, g_t, x_t)
    if grad_x is not None:
        grad_x = grad_x.to(grad_y.dtype)
    if grad_w is not None:
        grad_w = grad_w.to(weight.dtype)
    return grad_x, grad_w


def writes_in_place(plan: policy.StepPlan, dtype: torch.dtype,
                    grad_x_t: torch.Tensor | None, grad_w: torch.Tensor | None,
                    window: bool = False) -> bool:
    """Whether ``sparse_backward_into`` writes into these buffers as they are: the compiled
    fused or weight-only sweep, buffers contiguous and in the compute dtype ``dtype`` (and, for
    a column window, the pattern in one column block)."""
    return (
        plan.compiled and plan.backward in ("fused", "weight")
        and (not window or plan.column_blocks == 1)
        and (grad_x_t is None or (grad_x_t.dtype == dtype and grad_x_t.is_contiguous()))
        and (grad_w is None or (grad_w.dtype == dtype and grad_w.is_contiguous()))
    )


def sparse_backward_into(plan: policy.StepPlan, x_t: torch.Tensor, weight: torch.Tensor,
                         grad_y: torch.Tensor, crow: torch.Tensor, col: torch.Tensor,
                         transposed: Transposed, *, grad_x_t: torch.Tensor | None = None,
                         grad_w: torch.Tensor | None = None, accumulate_gx: bool = False,
                         accumulate_gw: bool = False,
                         window: tuple[int, int] | None = None) -> None:
    """``sparse_backward`` writing into given buffers: the input gradient, transposed, into
    ``grad_x_t`` (``(in, batch)``, contiguous) and the weight gradient into ``grad_w``
    (``(nnz,)``), each skipped when ``None``, added to its buffer's content with
    ``accumulate_gx`` / ``accumulate_gw``.

    The compiled fused and weight-only sweeps write into the buffers as they are (with one
    thread the input gradient needs no buffer of its own); other kernels compute the gradients
    as ``sparse_backward`` does and add or copy them. ``window=(lo, hi)`` restricts the step to
    the edges whose column lies in ``[lo, hi)`` (``x_t`` and ``grad_x_t`` then hold those
    columns; the other edges' weight gradients are left as they are): only where
    ``writes_in_place(..., window=True)``.
    """
    want_gx, want_gw = grad_x_t is not None, grad_w is not None
    if not (want_gx or want_gw):
        return
    dtype = x_t.dtype
    direct = writes_in_place(plan, dtype, grad_x_t, grad_w, window is not None)
    if window is not None and not direct:
        raise ValueError("a column window needs the compiled sweep writing in place "
                         "(writes_in_place(..., window=True)); cut the pattern instead.")
    if direct:
        n_in = x_t.shape[0]
        g = grad_y.to(dtype)
        g = g.t() if plan.in_place else _ext.transposed(g)
        crow, col, run = _in_blocks(crow.contiguous(), col.contiguous(), n_in,
                                    plan.column_blocks)
        _ext.backward(crow, col, weight.to(dtype).contiguous(), x_t, g, n_in, want_gw=want_gw,
                      want_gx=want_gx, out=grad_x_t, recycle=False, run=run, gw_out=grad_w,
                      accumulate_gw=accumulate_gw, accumulate_gx=accumulate_gx, window=window)
        return
    gx, gw = sparse_backward(plan, x_t, weight, grad_y, crow, col, transposed, want_gx, want_gw,
                             recycle=False)
    for buffer, value, accumulate in ((grad_x_t, None if gx is None else gx.t(), accumulate_gx),
                                      (grad_w, gw, accumulate_gw)):
        if buffer is None:
            continue
        if accumulate:
            buffer.add_(value.to(buffer.dtype))
        else:
            buffer.copy_(value)
