"""Working memory of one training step of a sparse layer: the temporaries that live only while a
step runs, beyond the parameters, gradients, optimizer state, pattern and saved activations.

This is the one place that knows what :mod:`sparselinear.autograd` and :mod:`sparselinear.kernels`
allocate. When those change, update :func:`step_transients` (and its calibration test in
``tests/test_memory.py``); nothing else in :mod:`sparselinear.memory` needs to.

The model, per phase, for the compiled CPU kernels (:mod:`sparselinear._ext`; float32/float64,
and float16/bfloat16 computed in float32):

* forward: the kernel writes the output ``(batch, out)`` itself (bias included), or for a
  batch wider than ``autograd.STRIDED_MAX_BATCH`` an ``(out, batch)`` copy first; a
  float16/bfloat16 input adds the float32 result beside its cast.
* backward: ``grad_y`` is read in place (an ``(out, batch)`` copy for wide batches, a float32
  copy for float16/bfloat16; ``grad_y`` itself takes the place of the released output); when the
  input needs a gradient, either one private ``(in, batch)`` buffer per thread plus ``grad_x`` they
  are summed into (the fused pass, batch up to ``autograd.FUSED_MAX_BATCH`` and within
  ``kernels.PRIVATE_BYTES``), or an ``(out, batch)`` copy of ``grad_y`` and ``grad_x`` gathered
  over the transposed pattern in one pass with the weight gradient (written batch-major in
  place, or copied so for wide batches; a frozen weight adds its values in the transposed
  order, not modelled). The
  weight gradient is counted as a gradient: its buffer is recycled between steps
  (:mod:`sparselinear._ext.buffers`), which does not add to the peak when ``zero_grad`` sets
  gradients to ``None`` (the buffer is idle only while the forward pass runs). With
  ``set_to_none=False`` the gradient stays allocated, and each backward pass writes a new
  buffer that is added into it and then kept: one idle gradient-sized buffer per distinct size,
  resident through the optimizer step (not modelled).
* float16/bfloat16 weights: a float32 copy of the values in each pass, and in backward the
  float32 weight gradient beside its cast (that float32 buffer is not recycled: it is a
  temporary, freed when the cast is made; so is the gradient of a constrained weight, passed
  on to its free parameter, not modelled).

For torch's kernels (CUDA, the ``"torch"`` backend, or CPU without the compiled kernels; they
compute float16/bfloat16 on CPU in float32), per phase (CPU
figures measured on torch 2.13):

* forward: ``spmm`` writes ``y_t (out, batch)``, which stays alive beside the returned output
  ``y (batch, out)``; when chunked, one chunk's result on top.
* backward: the incoming ``grad_y`` (it takes the place of the output, counted as an activation,
  which the consumer of the output released when its own backward ran) and its transposed copy
  ``g_t``; for ``grad_x`` (only when the
  input needs a gradient) the weight gathered into transposed order (``nnz`` values, plus an int64
  copy of an int32 permutation while gathering) and ``grad_x`` itself; ``sddmm`` writes the weight
  gradient (counted as a gradient) and per chunk a zero value array and ``sampled_addmm``'s result
  (values and int64 column indices: about ``2 * itemsize + 8`` bytes per edge of the chunk).
* optimizer step: the single-tensor Adam/AdamW used on CPU holds two parameter-sized
  temporaries (``sqrt`` and the division) of the parameter it is updating and the division of
  the parameter before it (in ``parameters()`` order); the multi-tensor
  version used on CUDA (or asked for with ``foreach=True``) holds one temporary for all
  parameters at once; the fused one (``fused=True``) none. SGD, with or without
  momentum, updates in place. Other optimizers are assumed to update in place.

The compiled fused backward pass sweeps the pattern in column blocks once its gathered tables
outgrow the cache (:mod:`sparselinear._blocks`): the block layout (one index per edge and two
per output and block) is built in the first such pass and kept, like the transposed pattern;
:attr:`StepTransients.column_blocks` says how many. Building it needs no temporaries (a layout
for another block count is dropped first).

With either kernels, the transposed pattern (``crow_t``, ``row_t``, ``perm``) is read only for the
input gradient: by torch's kernels always, by the compiled ones in their gather form only;
:attr:`StepTransients.transposed` says whether a step reads it. The layer builds it in the first
such backward pass, beside ``g_t``, and keeps it (the estimate counts it as pattern memory);
building it adds :data:`TRANSPOSE_BUILD_BYTES_PER_EDGE` bytes per edge to that backward peak.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..ops.torch_kernels import CHUNK_BYTES

__all__ = [
    "TRANSPOSE_BUILD_BYTES_PER_EDGE",
    "StepTransients",
    "compiled_kernels_run",
    "optimizer_transient",
    "step_transients",
]

#: Temporaries of building the transposed pattern, per edge, beyond the pattern it becomes: the
#: stable sort's values and int64 indices and as much again of workspace, less ``perm`` and
#: ``row_t``; the same for int32 and int64 indices (measured on CPU, torch 2.13).
TRANSPOSE_BUILD_BYTES_PER_EDGE = 16


@dataclass(frozen=True)
class StepTransients:
    """Bytes of temporaries alive at the peak of each phase of one training step, whether the
    step reads the transposed pattern (which the layer then builds once and keeps), and in how
    many column blocks the backward pass sweeps the pattern (more than one: the block layout is
    built once and kept, see ``sparselinear._blocks.layout_bytes``)."""

    forward: int
    backward: int
    optimizer: int
    transposed: bool = False
    column_blocks: int = 1


def _chunk_edges(nnz: int, batch: int, itemsize: int) -> int:
    """Largest number of edges one kernel call handles (see ``kernels._row_chunks``)."""
    per_chunk = max(1, CHUNK_BYTES // max(1, batch * itemsize))
    return min(nnz, per_chunk)


def step_transients(
    *,
    n_out: int,
    n_in: int,
    nnz: int,
    batch: int,
    itemsize: int,
    compute_itemsize: int,
    index_itemsize: int,
    needs_input_grad: bool,
    compiled: bool = False,
    threads: int = 1,
) -> StepTransients:
    """Temporaries of the forward and backward pass of one sparse layer (optimizer excluded).

    Args:
        n_out, n_in: the layer's shape.
        nnz: number of edges.
        batch: rows of the flattened input.
        itemsize: bytes per element of the parameters and of the input.
        compute_itemsize: bytes per element the kernels compute in (``kernels.compute_dtype``).
        index_itemsize: bytes per pattern index (4 for int32, 8 for int64).
        needs_input_grad: whether the layer's input requires a gradient (not for the first
            layer of a model fed with data).
        compiled: whether the compiled CPU kernels run the step (see
            :func:`compiled_kernels_run`).
        threads: threads the compiled kernels use.

    Returns:
        :class:`StepTransients` with ``optimizer=0``; see :func:`optimizer_transient`. The
        backward peak includes building the transposed pattern when the step reads it.
    """
    d, dc = itemsize, compute_itemsize
    if compiled:
        return _compiled_transients(n_out, n_in, nnz, batch, d, dc, needs_input_grad, threads)
    chunk = _chunk_edges(nnz, batch, dc)
    n_chunks = max(1, -(-nnz // chunk)) if nnz else 1
    chunk_rows = -(-n_out // n_chunks)
    chunk_rows_t = -(-n_in // n_chunks)
    converts = d != dc

    spmm_extra = chunk_rows * batch * dc if n_chunks > 1 else 0
    forward = n_out * batch * dc + spmm_extra + (n_out * batch * d if converts else 0)
    if converts:
        forward += n_in * batch * dc  # the cast copy before the contiguous copy

    grad_y_copy = n_out * batch * dc  # grad_y itself replaces the released output
    gather = nnz * dc + (nnz * 8 if index_itemsize != 8 else 0)
    grad_x = n_in * batch * dc if needs_input_grad else 0
    spmm_t_extra = chunk_rows_t * batch * dc if n_chunks > 1 else 0
    sddmm_chunk = chunk * (2 * dc + 8)
    sddmm_cast = nnz * d if converts else 0  # the float32 result and its cast coexist
    during_grad_x = (gather + grad_x + spmm_t_extra) if needs_input_grad else 0
    during_sddmm = (nnz * dc if needs_input_grad else 0) + grad_x + sddmm_chunk + sddmm_cast
    during_build = TRANSPOSE_BUILD_BYTES_PER_EDGE * nnz if needs_input_grad else 0
    backward = grad_y_copy + max(during_grad_x, during_sddmm, during_build)
    return StepTransients(
        forward=forward, backward=backward, optimizer=0, transposed=needs_input_grad
    )


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


def _compiled_transients(
    n_out: int,
    n_in: int,
    nnz: int,
    batch: int,
    d: int,
    dc: int,
    needs_input_grad: bool,
    threads: int,
) -> StepTransients:
    from ..ops.autograd import FUSED_MAX_BATCH, STRIDED_MAX_BATCH
    from ..ops.blocks import backward_blocks
    from ..ops.torch_kernels import PRIVATE_BYTES

    converts = d != dc
    wide = batch > STRIDED_MAX_BATCH  # the kernels work on (features, batch) copies
    # y is written in place of the output, or into an (out, batch) copy first
    forward = n_out * batch * dc if converts or wide else 0
    # float16/bfloat16 weights: their float32 copy (forward and backward) and the float32 weight
    # gradient, a temporary beside its cast (the cast is the gradient)
    weight_copy = nnz * dc if converts else 0
    forward += weight_copy
    # grad_y takes the place of the released output; float32 copy for half inputs
    grad_y_copy = n_out * batch * dc if converts else 0
    g_copy = n_out * batch * dc  # grad_y as (out, batch)
    grad_x = g_copy if wide else 0
    gathers = False  # the input gradient over the transposed pattern
    blocks = backward_blocks(n_in, n_out, nnz, batch, dc, threads, needs_input_grad)
    if needs_input_grad:
        private = threads * n_in * batch * dc
        fused = batch <= FUSED_MAX_BATCH and (threads == 1 or private <= PRIVATE_BYTES)
        blocks = blocks if fused else 1
        if fused:
            grad_x += private + n_in * batch * dc  # summed into grad_x
        else:
            # the copy it gathers from, then building the transposed pattern or the (in, batch)
            # result and its batch-major copy (wide batches), whichever is larger
            build = TRANSPOSE_BUILD_BYTES_PER_EDGE * nnz
            gathered = (2 if wide else 1) * n_in * batch * dc
            grad_x = g_copy + max(gathered, build)
            gathers = True
    backward = grad_y_copy + grad_x + 2 * weight_copy
    return StepTransients(forward=forward, backward=backward, optimizer=0, transposed=gathers,
                          column_blocks=blocks)


def compiled_kernels_run(device_type: str, compute_dtype_name: str) -> bool:
    """Whether a step on ``device_type`` computing in ``compute_dtype_name`` uses the compiled
    CPU kernels under the current backend (building them once if needed)."""
    from ..ops import _ext
    from ..ops.torch_kernels import get_backend

    if device_type != "cpu" or compute_dtype_name not in ("float32", "float64"):
        return False
    return get_backend() != "torch" and _ext.available()
