"""Working memory of the optimizer step, beyond the parameters, gradients and optimizer state.

What the kernels of a sparse layer allocate in its forward and backward passes is the dispatch
policy's to say ([`sparselinear.kernels.plan_step`][sparselinear.kernels.plan_step], which also
decides which kernels run); this module adds the optimizer step:

* the single-tensor Adam/AdamW used on CPU holds two parameter-sized temporaries (``sqrt`` and
  the division) of the parameter it is updating and the division of the parameter before it
  (in ``parameters()`` order); the multi-tensor version used on CUDA (or asked for with
  ``foreach=True``) holds one temporary for all parameters at once; the fused one
  (``fused=True``) none. SGD, with or without momentum, updates in place. Other optimizers are
  assumed to update in place.
"""

from __future__ import annotations

__all__ = ["optimizer_transient"]


def optimizer_transient(kind: str, param_sizes: list[int], itemsize: int, device_type: str,
                        implementation: str | None = None) -> int:
    """Temporaries of one ``optimizer.step()`` over parameters of ``param_sizes`` elements.

    ``kind`` is ``"sgd"``, ``"momentum"``, ``"adam"``, ``"adamw"`` or ``"other"``;
    ``implementation`` ``"fused"``, ``"foreach"``, ``"for-loop"`` or ``None`` (torch's default:
    the for-loop on CPU, multi-tensor on CUDA).
    """
    if kind not in ("adam", "adamw") or not param_sizes or implementation == "fused":
        return 0  # the fused kernel updates in place
    if implementation == "for-loop" or (device_type == "cpu" and implementation is None):
        # single-tensor: sqrt() and the division, while the previous parameter's result (the
        # loop's ``denom``) is still referenced
        previous = [0, *param_sizes[:-1]]
        return max(2 * n + p for n, p in zip(param_sizes, previous)) * itemsize
    return sum(param_sizes) * itemsize  # multi-tensor: one _foreach_sqrt over all parameters
