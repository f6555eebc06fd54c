"""The sparse linear product as PyTorch custom operators (``torch.ops.sparselinear``).

``torch.compile`` (``fullgraph=True``), ``torch.export``, fake and meta tensors, ``torch.func``
and autocast see operators with a schema and a fake implementation for shapes, differentiated by
``LinearFunction`` and ``SampledFunction``, and never trace into the kernels:

* ``sparselinear::linear(x, weight, bias, crow, col, n_in, mode, keep) -> y`` — ``y = x Wᵀ +
  b`` for a 2-D ``x (batch, in)``: dense bands or sparse kernels as
  [`policy`][sparselinear.kernels] decides, after checking the pattern
  (``validate_csr``, cached while the index tensors are
  unchanged);
* ``sparselinear::linear_backward(grad_y, x, weight, crow, col, n_in, mode, want_gx, want_gw,
  recycle) -> (grad_x, grad_w)`` — its gradients by the same kernels (an empty tensor for a
  gradient not asked for);
* ``sparselinear::sampled(g, x, crow, col, n_in) -> (nnz,)`` — ``g[:, row_k] · x[:, col_k]`` at
  the edges: the weight gradient as a differentiable function of the output gradient and the
  input.

The forward pass keeps the input itself for the backward pass, which gathers its transposed copy
again (the compiled kernels read it so): nothing else is held between the two. A backward pass
that builds a graph (``create_graph=True``: gradient penalties, Hessian-vector products, MAML,
``torch.func.grad``) takes differentiable sparse products instead (``sparse_gradients``):
``grad_x = grad_y W`` is ``linear`` over the transposed pattern and ``grad_w`` is ``sampled``,
whose own gradients are ``linear`` again — to any order.

Under ``torch.func.vmap`` the mapped dimension of the input joins its batch; a weight gradient
per mapped sample (``vmap(grad(...))``) is computed sample by sample. Mapping over the weight,
the bias or the pattern raises [`SparseLinearError`][sparselinear.errors.SparseLinearError].
"""

from __future__ import annotations

import contextlib

import torch

from ..errors import SparseLinearError
from ..pattern.caches import transposed_pattern
from ..pattern.connectivity import validate_csr
from . import dense, policy, torch_kernels
from .autograd import gathered_input, plan_for_step, sparse_backward, sparse_forward

__all__ = [
    "LinearFunction",
    "SampledFunction",
    "autocast_dtype",
    "linear",
    "linear_backward",
    "sampled",
    "sparse_gradients",
]


def _plain(t: torch.Tensor) -> torch.Tensor:
    """``t`` without the wrappers of ``torch.func`` transforms (index tensors get no gradient and
    are never mapped; the pattern caches key on the tensors themselves)."""
    if torch.compiler.is_compiling():  # traced: no transform wraps it
        return t
    functorch = torch._C._functorch
    while functorch.is_functorch_wrapped_tensor(t):
        t = functorch.get_unwrapped(t)
    return t


def _without_autocast(device_type: str):
    """Autocast off inside the kernels (they choose their compute dtype themselves)."""
    if torch.amp.is_autocast_available(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()


def _finite(t: torch.Tensor) -> bool:
    """Whether every value of ``t`` is finite, from one reduction: a NaN or an infinity makes the
    sum non-finite (a sum that overflows reads as non-finite too, which only costs the sparse
    kernels' speed)."""
    return bool(torch.isfinite(t.sum())) if t.numel() else True


def _bands(x: torch.Tensor, crow: torch.Tensor, col: torch.Tensor, mode: str,
           multiplied: torch.Tensor | None) -> dense.BandPlan | None:
    """The dense-band plan to run with, or ``None``: sparse kernels, also when ``multiplied``
    (the tensor the tiles multiply: the input forward, the output gradient backward; ``None``
    when they multiply nothing) holds a non-finite value, which the tiles' zeros would spread
    to unwired entries (``0 x inf`` is NaN)."""
    band = dense.plan_for(crow, col, mode, x.dtype, x.device)
    if band is None or (multiplied is not None and not _finite(multiplied)):
        return None
    return band


@torch.library.custom_op("sparselinear::linear", mutates_args=())
def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, crow: torch.Tensor,
           col: torch.Tensor, n_in: int, mode: str, keep: bool) -> torch.Tensor:
    """``y = x Wᵀ + b`` for ``x (batch, in)`` and the pattern ``(crow, col)`` with ``n_in``
    columns; ``keep``: a backward pass follows, which may reuse what this pass builds (the dense
    tiles)."""
    validate_csr(crow, col, (crow.numel() - 1, n_in))
    with _without_autocast(x.device.type):
        band = _bands(x, crow, col, mode, x)
        if band is not None:
            return dense.band_forward(x, weight, bias, band, band.positions(crow, col), keep)
        plan = plan_for_step(x, weight, crow, col, False, False)
        return sparse_forward(plan, x, weight, bias, crow, col)[0]


@linear.register_fake
def _linear_fake(x, weight, bias, crow, col, n_in, mode, keep):
    return x.new_empty(x.shape[0], crow.shape[0] - 1)


@torch.library.custom_op("sparselinear::linear_backward", mutates_args=())
def linear_backward(grad_y: torch.Tensor, x: torch.Tensor, weight: torch.Tensor,
                    crow: torch.Tensor, col: torch.Tensor, n_in: int, mode: str, want_gx: bool,
                    want_gw: bool, recycle: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``(grad_x, grad_w)`` of ``linear``; an empty tensor for a gradient not asked for."""
    with _without_autocast(x.device.type):
        # the weight gradient reads the tiles' products at the edges only: just the input
        # gradient (grad_y times the tiles) needs a finite grad_y
        band = _bands(x, crow, col, mode, grad_y if want_gx else None)
        if band is not None:
            grad_x, grad_w = dense.band_backward(grad_y, x, weight, band,
                                                 band.positions(crow, col), want_gx, want_gw)
        else:
            plan = plan_for_step(x, weight, crow, col, want_gx, want_gw)
            grad_x, grad_w = sparse_backward(
                plan, gathered_input(plan, x), weight, grad_y, crow, col,
                lambda: transposed_pattern(crow, col, n_in), want_gx, want_gw, recycle,
            )
    return (x.new_empty(0, dtype=grad_y.dtype) if grad_x is None else grad_x,
            weight.new_empty(0) if grad_w is None else grad_w)


@linear_backward.register_fake
def _linear_backward_fake(grad_y, x, weight, crow, col, n_in, mode, want_gx, want_gw, recycle):
    return (x.new_empty(x.shape if want_gx else (0,), dtype=grad_y.dtype),
            weight.new_empty(weight.shape if want_gw else (0,)))


class LinearFunction(torch.autograd.Function):
    """The autograd formula of ``linear``: ``apply(x, weight, bias, crow, col, n_in, mode,
    recycle, keep)``; ``recycle``: whether the weight gradient may reuse a kept buffer (it
    becomes a leaf's ``.grad`` as it is). An ``autograd.Function`` with ``setup_context``
    (rather than a registration on the operator) so that ``torch.func`` transforms (``grad``,
    ``vmap`` of ``grad``) compose with it; its vmap rule follows from the operators'."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, weight, bias, crow, col, n_in, mode, recycle, keep):
        return linear(x, weight, bias, crow, col, n_in, mode, keep)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        x, weight, bias, crow, col, n_in, mode, recycle, _ = inputs
        ctx.save_for_backward(x, weight)
        # The index tensors as they are (not saved tensors, which functorch transforms wrap):
        # they get no gradient, and the kernels check them before reading them.
        ctx.crow, ctx.col = _plain(crow), _plain(col)
        ctx.n_in, ctx.mode, ctx.recycle, ctx.has_bias = n_in, mode, recycle, bias is not None

    @staticmethod
    def backward(ctx, grad_y):
        x, weight = ctx.saved_tensors
        crow, col = ctx.crow, ctx.col
        want_gx, want_gw, want_gb = ctx.needs_input_grad[:3]
        if torch.is_grad_enabled():  # a graph of the gradients: differentiable products
            grads = sparse_gradients(grad_y, x, weight, crow, col, ctx.n_in,
                                     (want_gx, want_gw, want_gb), ctx.has_bias)
            return (*grads, None, None, None, None, None, None)
        grad_x = grad_w = grad_b = None
        if want_gx or want_gw:
            grad_x, grad_w = linear_backward(grad_y, x, weight, crow, col, ctx.n_in, ctx.mode,
                                             want_gx, want_gw, ctx.recycle)
            grad_x, grad_w = (grad_x if want_gx else None), (grad_w if want_gw else None)
        if ctx.has_bias and want_gb:
            grad_b = grad_y.sum(0)
        return grad_x, grad_w, grad_b, None, None, None, None, None, None



@torch.library.custom_op("sparselinear::sampled", mutates_args=())
def sampled(g: torch.Tensor, x: torch.Tensor, crow: torch.Tensor, col: torch.Tensor,
            n_in: int) -> torch.Tensor:
    """``out[k] = g[:, row_k] · x[:, col_k]`` at the edges ``k`` of ``(crow, col)`` for
    ``g (batch, out)`` and ``x (batch, in)``; ``(nnz,)`` in ``g``'s dtype."""
    validate_csr(crow, col, (crow.numel() - 1, n_in))
    with _without_autocast(g.device.type):
        dtype = policy.compute_dtype(g.dtype, g.device)
        g_t, x_t = (t.t().to(dtype).contiguous() for t in (g, x))
        return torch_kernels.sddmm(crow, col, g_t, x_t).to(g.dtype)


@sampled.register_fake
def _sampled_fake(g, x, crow, col, n_in):
    return g.new_empty(col.shape)


class SampledFunction(torch.autograd.Function):
    """The autograd formula of ``sampled``: ``apply(g, x, crow, col, n_in)``; its gradients
    are ``LinearFunction`` products on the same pattern, so it differentiates to any
    order."""

    generate_vmap_rule = True

    @staticmethod
    def forward(g, x, crow, col, n_in):
        return sampled(g, x, crow, col, n_in)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        g, x, crow, col, n_in = inputs
        ctx.save_for_backward(g, x)
        ctx.crow, ctx.col, ctx.n_in = _plain(crow), _plain(col), n_in  # as in LinearFunction

    @staticmethod
    def backward(ctx, grad_out):
        g, x = ctx.saved_tensors
        crow, col = ctx.crow, ctx.col
        grad_g = grad_x = None
        if ctx.needs_input_grad[0]:  # d/dg[b, r]: the sum over row r of grad_out[k] x[b, col_k]
            grad_g = LinearFunction.apply(x, grad_out, None, crow, col, ctx.n_in, "sparse", False,
                                          False)
        if ctx.needs_input_grad[1]:  # d/dx[b, c]: the sum over column c of grad_out[k] g[b, row_k]
            crow_t, row_t, perm = transposed_pattern(crow, col, ctx.n_in)
            grad_x = LinearFunction.apply(g, grad_out[perm.to(torch.int64)], None, crow_t, row_t,
                                          crow.numel() - 1, "sparse", False, False)
        return grad_g, grad_x, None, None, None



def sparse_gradients(grad_y: torch.Tensor, x: torch.Tensor, weight: torch.Tensor,
                     crow: torch.Tensor, col: torch.Tensor, n_in: int,
                     needs: tuple[bool, bool, bool], has_bias: bool = True):
    """``(grad_x, grad_w, grad_b)`` of ``y = x Wᵀ + b`` for ``grad_y (batch, out)`` as
    differentiable sparse products (each ``None`` unless ``needs`` asks for it)."""
    grad_x = grad_w = grad_b = None
    if needs[0]:
        crow_t, row_t, perm = transposed_pattern(crow, col, n_in)
        grad_x = LinearFunction.apply(grad_y, weight[perm.to(torch.int64)], None, crow_t, row_t,
                                      crow.numel() - 1, "sparse", False, False)
    if needs[1]:
        grad_w = SampledFunction.apply(grad_y, x, crow, col, n_in)
    if has_bias and needs[2]:
        grad_b = grad_y.sum(0)
    return grad_x, grad_w, grad_b


def _unmapped(in_dims, names: str) -> None:
    if any(d is not None for d in in_dims):
        raise SparseLinearError(
            f"torch.func.vmap over the {names} of a sparse linear layer is not supported: map "
            "over the input (its mapped dimension joins the batch). For one weight per sample, "
            "run the samples' layers one by one."
        )


@linear.register_vmap
def _linear_vmap(info, in_dims, x, weight, bias, crow, col, n_in, mode, keep):
    _unmapped(in_dims[1:5], "weight, bias or pattern")
    if in_dims[0] is None:
        return linear(x, weight, bias, crow, col, n_in, mode, keep), None
    x = x.movedim(in_dims[0], 0)
    mapped, batch = x.shape[:2]
    y = linear(x.reshape(mapped * batch, -1), weight, bias, crow, col, n_in, mode, keep)
    return y.reshape(mapped, batch, -1), 0


@linear_backward.register_vmap
def _linear_backward_vmap(info, in_dims, grad_y, x, weight, crow, col, n_in, mode, want_gx,
                          want_gw, recycle):
    _unmapped(in_dims[2:5], "weight or pattern")
    g_dim, x_dim = in_dims[0], in_dims[1]
    size = info.batch_size
    g = grad_y.movedim(g_dim, 0) if g_dim is not None else grad_y.expand(size, *grad_y.shape)
    xs = x.movedim(x_dim, 0) if x_dim is not None else x.expand(size, *x.shape)
    grad_x = grad_w = None
    if want_gx:  # rows of the batch are independent: one call over the joined batch
        gx, _ = linear_backward(g.reshape(-1, g.shape[-1]), xs.reshape(-1, xs.shape[-1]),
                                weight, crow, col, n_in, mode, True, False, False)
        grad_x = gx.reshape(size, *xs.shape[1:])
    if want_gw:  # a weight gradient per mapped sample
        grad_w = torch.stack([
            linear_backward(g[i], xs[i], weight, crow, col, n_in, mode, False, True, False)[1]
            for i in range(size)
        ])
    empty_x = x.new_empty(0, dtype=grad_y.dtype)
    return ((grad_x if want_gx else empty_x, grad_w if want_gw else weight.new_empty(0)),
            (0 if want_gx else None, 0 if want_gw else None))


@sampled.register_vmap
def _sampled_vmap(info, in_dims, g, x, crow, col, n_in):
    _unmapped(in_dims[2:4], "pattern")
    size = info.batch_size
    gs = g.movedim(in_dims[0], 0) if in_dims[0] is not None else g.expand(size, *g.shape)
    xs = x.movedim(in_dims[1], 0) if in_dims[1] is not None else x.expand(size, *x.shape)
    return torch.stack([sampled(gs[i], xs[i], crow, col, n_in) for i in range(size)]), 0


def autocast_dtype(device_type: str) -> torch.dtype | None:
    """The dtype autocast asks for on ``device_type``, or ``None`` outside autocast."""
    if not torch.amp.is_autocast_available(device_type):
        return None
    if not torch.is_autocast_enabled(device_type):
        return None
    return torch.get_autocast_dtype(device_type)
