"""The dispatch policy: which kernels a step of a sparse layer runs and what they allocate.

One function, [`plan_step`][sparselinear.kernels.plan_step], decides for a pattern (its shape, nnz
and, for dense bands, band area), a batch, a dtype and a device:

* dense bands (``dense``) or sparse kernels (``mode``, the fill of the
  bands, [`DENSE_MIN_FILL`][sparselinear.kernels.DENSE_MIN_FILL],
  [`DENSE_BUDGET_BYTES`][sparselinear.kernels.DENSE_BUDGET_BYTES]);
* for sparse kernels, the compiled CPU kernels (``_ext``) or torch's CSR
  kernels (``torch_kernels``), after the backend switch
  ([`use_backend`][sparselinear.kernels.use_backend], ``$SPARSELINEAR_KERNELS``) and
  [`compute_dtype`][sparselinear.kernels.compute_dtype];
* for the compiled kernels, the backward form: ``"fused"`` (both gradients in one sweep over the
  pattern, the input gradient scattered into per-thread buffers), ``"gather"`` (both over the
  transposed pattern) or ``"weight"`` (the weight gradient alone); whether activations are
  read and written batch-major in place
  ([`STRIDED_MAX_BATCH`][sparselinear.kernels.STRIDED_MAX_BATCH]) and in how many column blocks the
  backward sweep runs ([`column_blocks`][sparselinear.kernels.column_blocks]);
* whether the step reads the transposed pattern, and the bytes of what it allocates: saved for
  backward, temporaries at the peak of the forward and backward passes, derived pattern memory
  kept between steps (transposed pattern, column-block layout, dense-band positions) and the
  one-off temporaries of building the dense-band positions.

The autograd functions and [`sparselinear.memory.estimate`][sparselinear.memory.estimate] both ask
it, so the estimate follows the kernels that run. The tuning constants are module attributes read at
call time: assigning one (``sparselinear.kernels.CACHE_BYTES = 0``) changes the next step. The
figures they were tuned on are in BENCHMARKS.md ("Tuning constants").

The temporaries, per phase, with the compiled kernels (float32/float64; float16/bfloat16
computed in float32):

* forward: the kernel writes the output ``(batch, out)`` itself (bias included), or for a batch
  wider than [`STRIDED_MAX_BATCH`][sparselinear.kernels.STRIDED_MAX_BATCH] an ``(out, batch)`` copy
  first; a float16/bfloat16 input adds the float32 result beside its cast and the weight's float32
  copy.
* backward: the input gathered again as ``x_t (in, batch)`` from the input the operator keeps
  (``saved_bytes``); ``grad_y`` is read in place (an ``(out, batch)`` copy for wide batches or the
  gather form, a float32 copy for float16/bfloat16; ``grad_y`` itself takes the place of the
  released output). The fused form adds one private ``(in, batch)`` buffer per thread and ``grad_x``
  they are summed into; the gather form ``grad_x`` (and its batch-major copy for wide batches) or
  building the transposed pattern, whichever is larger (a frozen weight adds its values in the
  transposed order, not modelled). The weight gradient counts as a gradient: its buffer is recycled
  between steps (``buffers``), which adds nothing to the peak when
  ``zero_grad`` sets gradients to ``None``; with ``set_to_none=False`` one idle gradient-sized
  buffer per distinct size stays resident (not modelled). float16/bfloat16 weights add a float32
  copy of the values and the float32 weight gradient beside its cast.

With torch's kernels (CUDA, the ``"torch"`` backend, or CPU without the compiled kernels):

* forward: ``spmm`` writes ``y_t (out, batch)``, alive beside the output; when chunked, one
  chunk's result on top.
* backward: the input's transposed copy ``x_t`` made again from the kept input (``saved_bytes``),
  the transposed copy ``g_t`` of ``grad_y``; for ``grad_x`` the weight gathered into transposed
  order (``nnz`` values, plus an int64 copy of an int32 permutation while gathering) and ``grad_x``
  itself; ``sddmm`` writes the weight gradient and per chunk a zero value array and
  ``sampled_addmm``'s result (about ``2 · itemsize + 8`` bytes per edge of the chunk); or building
  the transposed pattern
  ([`TRANSPOSE_BUILD_BYTES_PER_EDGE`][sparselinear.kernels.TRANSPOSE_BUILD_BYTES_PER_EDGE]),
  whichever is larger.

With dense bands (any device): the weight scattered into the flat tile buffer (``area`` values,
saved for backward), the input saved as it is (a copy when it is cast); in backward the tiles'
gradient (``area`` values) beside ``grad_x``, the weight gradient gathered from it; a
float16/bfloat16 layer adds float32 copies of the output, ``grad_y``, ``grad_x`` and the weight
and its gradient. The positions of the edges in the tiles (int64, one per edge) are built in
the first forward pass and kept with the pattern.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import DataError, SparseLinearError, check_choice
from . import _ext

__all__ = [
    "BACKENDS",
    "CACHE_BYTES",
    "CHUNK_BYTES",
    "DENSE_BUDGET_BYTES",
    "DENSE_MIN_FILL",
    "FUSED_MAX_BATCH",
    "MODES",
    "PRIVATE_BYTES",
    "STRIDED_MAX_BATCH",
    "TRANSPOSE_BUILD_BYTES_PER_EDGE",
    "StepPlan",
    "backward_blocks",
    "band_rows",
    "cache_bytes",
    "check_backend",
    "check_mode",
    "column_blocks",
    "compiled_kernels_available",
    "compute_dtype",
    "empty_cache",
    "extension_enabled",
    "get_backend",
    "kernel_threads",
    "layout_bytes",
    "plan_step",
    "set_backend",
    "use_backend",
    "use_dense_bands",
]

# ---------------------------------------------------------------------------- tuning constants
#: Upper bound on ``batch x nnz_chunk x itemsize`` of the work handed to one call of torch's CSR
#: kernels; larger products run in row chunks.
CHUNK_BYTES = 1 << 28

#: Upper bound on the per-thread ``in x batch`` input-gradient buffers of the compiled fused
#: backward pass; above it the input gradient is gathered over the transposed pattern instead.
PRIVATE_BYTES = 1 << 27

#: Bytes of CPU cache the compiled fused backward pass's gathered tables (the saved input and
#: one input-gradient buffer per thread, ``in x batch`` each) may fill before it sweeps the
#: pattern in column blocks ([`column_blocks`][sparselinear.kernels.column_blocks]). The blocks
#: need a block-ordered copy of the column indices, built on first use and kept with the pattern
#: ([`layout_bytes`][sparselinear.kernels.layout_bytes]).
#: ``None`` (the default): ``$SPARSELINEAR_CACHE_BYTES`` if set, else the CPU's last-level
#: cache size; 0 never uses blocks (the memory-lean choice; a copy already built is dropped by
#: the next backward pass).
CACHE_BYTES: int | None = None

#: Widest batch for which the compiled backward pass scatters the input gradient in the fused
#: sweep; wider batches gather it over the transposed pattern.
FUSED_MAX_BATCH = 64

#: Widest batch for which the compiled kernels write the output and read the output gradient
#: in PyTorch's ``(batch, features)`` layout in place; wider batches go through
#: ``(features, batch)`` copies.
STRIDED_MAX_BATCH = 64

#: The layer modes: ``"auto"`` (dense bands where
#: [`use_dense_bands`][sparselinear.kernels.use_dense_bands] says so), ``"sparse"`` and ``"dense"``
#: (forced).
MODES = ("auto", "sparse", "dense")

#: ``"auto"`` uses dense bands when ``nnz / band area`` reaches this fill, per device type
#: (other device types use the ``"cuda"`` entry) ...
DENSE_MIN_FILL = {"cpu": 0.3, "cuda": 0.05}

#: ... and the tiles, their gradients and masks (``area x (2 x itemsize + 1)`` bytes) fit this.
DENSE_BUDGET_BYTES = 1 << 28

#: Dense bands: the rows are cut into about this many blocks ...
BAND_BLOCKS = 8
#: ... of at least and at most this many rows.
BAND_MIN_ROWS, BAND_MAX_ROWS = 128, 1024

#: Column blocks: each block's slices of the tables fill this fraction (``1 / BLOCK_SHARE``) of
#: the cache ...
BLOCK_SHARE = 3
#: ... and at least this many bytes (or the whole cache if smaller): many small blocks cost
#: more in repeated passes over the output gradient than they save.
MIN_BLOCK_BYTES = 8 << 20
#: Fewest edges per row and block, on average: a guard against runs too short to pay for the
#: per-row work of a sweep (not tuned).
MIN_RUN = 8
#: Most column blocks.
MAX_BLOCKS = 64
#: Cache size assumed where the CPU does not report its last-level cache.
FALLBACK_CACHE_BYTES = 32 << 20

#: Temporaries of building the transposed pattern, per edge, beyond the pattern it becomes: the
#: stable sort's values and int64 indices and as much again of workspace, less ``perm`` and
#: ``row_t``; the same for int32 and int64 indices.
TRANSPOSE_BUILD_BYTES_PER_EDGE = 16


# ---------------------------------------------------------------------------- backend switch
#: The CPU kernel backends [`set_backend`][sparselinear.kernels.set_backend] accepts;
#: ``$SPARSELINEAR_KERNELS`` chooses the one a process starts with (default ``"auto"``).
BACKENDS = ("auto", "extension", "torch")
_backend = os.environ.get("SPARSELINEAR_KERNELS", "auto").strip().lower() or "auto"


def check_backend(name: object) -> str:
    """Validate a kernel backend name and return it; raises
    [`DataError`][sparselinear.errors.DataError]."""
    return check_choice(name, BACKENDS, "backend",
                        "Check the SPARSELINEAR_KERNELS environment variable or the argument.")


def check_mode(mode: object) -> str:
    """Validate a ``mode`` argument and return it; raises
    [`DataError`][sparselinear.errors.DataError]."""
    return check_choice(mode, MODES, "mode", "Use 'auto' to let the layer choose dense or sparse "
                        "kernels from the pattern's fill.")


def get_backend() -> str:
    """The CPU kernel backend in use: ``"auto"``, ``"extension"`` or ``"torch"``."""
    return check_backend(_backend)


def set_backend(name: str) -> None:
    """Choose the CPU kernels: ``"auto"`` (compiled where possible), ``"extension"`` (compiled,
    or an error) or ``"torch"`` (pure PyTorch)."""
    global _backend
    _backend = check_backend(name)


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Context manager form of [`set_backend`][sparselinear.kernels.set_backend].

    Examples:
        >>> from sparselinear import kernels
        >>> with kernels.use_backend("torch"):
        ...     kernels.get_backend()
        'torch'
    """
    global _backend
    previous = _backend
    set_backend(name)
    try:
        yield
    finally:
        _backend = previous


def empty_cache() -> int:
    """Return to the OS the memory of freed weight gradients that the compiled CPU kernels keep
    for the next backward pass (as ``torch.cuda.empty_cache`` does for CUDA memory). Returns the
    number of bytes released.

    Freshly mapped memory costs a page fault per 4 KB on first touch, so the kernels keep the
    buffers of large weight gradients (``optimizer.zero_grad()`` frees them) for reuse, up to
    1 GiB; call this after training to release them.

    Examples:
        >>> from sparselinear import kernels
        >>> kernels.empty_cache() >= 0
        True
    """
    return _ext.release_idle()


def compiled_kernels_available() -> bool:
    """Whether the compiled CPU kernels can run in this process (building them once if needed)."""
    return _ext.available()


def kernel_threads() -> int:
    """Threads the compiled CPU kernels use (``torch.get_num_threads()``; 1 without OpenMP)."""
    return _ext.threads()


def _compiled(dtype: torch.dtype, device: torch.device, strict: bool) -> bool:
    backend = get_backend()
    if backend == "torch" or device.type != "cpu":
        return False
    if dtype not in (torch.float32, torch.float64):
        return False
    if strict and backend == "extension" and not _ext.available():
        raise SparseLinearError(
            "The compiled kernels were requested (backend 'extension') but are not available: "
            "see the earlier warning, or unset SPARSELINEAR_DISABLE_EXTENSION. Use "
            "`kernels.set_backend('auto')` to fall back to the PyTorch kernels."
        )
    return _ext.available()


def extension_enabled(tensor: torch.Tensor) -> bool:
    """Whether the compiled kernels handle ``tensor`` (CPU, float32/float64) under the current
    backend. Raises if the backend is ``"extension"`` and they cannot be built."""
    return _compiled(tensor.dtype, tensor.device, strict=True)


def compute_dtype(dtype: torch.dtype, device: torch.device) -> torch.dtype:
    """The dtype the kernels compute in for tensors of ``dtype`` on ``device``."""
    if device.type == "cpu" and dtype in (torch.float16, torch.bfloat16):
        return torch.float32
    return dtype


# ---------------------------------------------------------------------------- dense bands
def band_rows(n_out: int) -> int:
    """Rows per dense band: about ``BAND_BLOCKS`` bands, within
    ``[BAND_MIN_ROWS, BAND_MAX_ROWS]`` rows each."""
    return min(BAND_MAX_ROWS, max(BAND_MIN_ROWS, -(-n_out // BAND_BLOCKS)))


def use_dense_bands(mode: str, nnz: int, area: int, dtype: torch.dtype,
                    device: torch.device) -> bool:
    """Whether a pattern of ``nnz`` edges whose bands cover ``area`` entries runs as dense
    bands: always for ``"dense"``, never for ``"sparse"``; for ``"auto"`` when the edges fill
    [`DENSE_MIN_FILL`][sparselinear.kernels.DENSE_MIN_FILL] of the area (per device type) and the
    tiles with their gradients and masks fit
    [`DENSE_BUDGET_BYTES`][sparselinear.kernels.DENSE_BUDGET_BYTES]."""
    check_mode(mode)
    if mode != "auto":
        return mode == "dense"
    itemsize = compute_dtype(dtype, device).itemsize
    fits = area * (2 * itemsize + 1) <= DENSE_BUDGET_BYTES
    min_fill = DENSE_MIN_FILL.get(device.type, DENSE_MIN_FILL["cuda"])
    return bool(nnz) and fits and nnz >= min_fill * area


# ---------------------------------------------------------------------------- column blocks
def _from_environment() -> int | None:
    text = os.environ.get("SPARSELINEAR_CACHE_BYTES", "").strip()
    if not text:
        return None
    if not text.isdigit():
        raise DataError(
            f"SPARSELINEAR_CACHE_BYTES must be a number of bytes (0 disables column blocks); "
            f"got {text!r}. Unset it to use the CPU's last-level cache size."
        )
    return int(text)


@functools.lru_cache(maxsize=1)
def _detected_cache_bytes() -> int:
    sizes = []
    for entry in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        try:
            text = entry.read_text().strip().upper()
        except OSError:
            continue
        scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
        digits = text.rstrip("KMG")
        if digits.isdigit():
            sizes.append(int(digits) * scale)
    return max(sizes, default=FALLBACK_CACHE_BYTES)


def cache_bytes() -> int:
    """[`CACHE_BYTES`][sparselinear.kernels.CACHE_BYTES], else ``$SPARSELINEAR_CACHE_BYTES``, else
    the CPU's last-level cache size (``FALLBACK_CACHE_BYTES`` where unknown)."""
    if CACHE_BYTES is not None:
        return int(CACHE_BYTES)
    configured = _from_environment()
    return _detected_cache_bytes() if configured is None else configured


def column_blocks(n_in: int, n_out: int, nnz: int, batch: int, itemsize: int,
                  tables: int) -> int:
    """Column blocks for a backward sweep over ``tables`` gathered ``(in, batch)`` tables (the
    saved input, plus one input-gradient buffer per thread when the input needs a gradient):
    1 while they fit [`cache_bytes`][sparselinear.kernels.cache_bytes], else enough for each block's
    slices to fill ``1 / BLOCK_SHARE`` of it (at least ``MIN_BLOCK_BYTES``, or the whole cache if
    smaller), at most one per ``MIN_RUN`` edges of a row and at most ``MAX_BLOCKS``."""
    limit = cache_bytes()
    row = max(64, batch * itemsize)  # a gathered row costs at least one cache line
    footprint = n_in * row * tables
    if limit <= 0 or footprint <= limit or n_out == 0:
        return 1
    share = max(limit / BLOCK_SHARE, min(MIN_BLOCK_BYTES, limit))
    wanted = math.ceil(footprint / share)
    return max(1, min(wanted, nnz // (n_out * MIN_RUN), MAX_BLOCKS, n_in))


def backward_blocks(n_in: int, n_out: int, nnz: int, batch: int, itemsize: int, threads: int,
                    input_grad: bool) -> int:
    """Column blocks of the compiled fused backward pass: sized for the saved input and one
    input-gradient buffer per thread ([`column_blocks`][sparselinear.kernels.column_blocks]), so
    that a pattern keeps one layout whether or not its input needs a gradient; without it, blocks
    are used only if the saved input alone outgrows the cache."""
    if not input_grad and column_blocks(n_in, n_out, nnz, batch, itemsize, 1) == 1:
        return 1
    return column_blocks(n_in, n_out, nnz, batch, itemsize, 1 + threads)


def layout_bytes(n_out: int, nnz: int, n_blocks: int, index_itemsize: int) -> int:
    """Memory of a column-block layout (0 for one block: none is built)."""
    if n_blocks <= 1:
        return 0
    return index_itemsize * (nnz + n_blocks * (2 * n_out + 1))


# ---------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class StepPlan:
    """What one training step of a sparse layer runs and allocates (see
    [`plan_step`][sparselinear.kernels.plan_step]).

    Attributes:
        kernels: ``"dense"`` (dense bands), ``"compiled"`` (the compiled CPU kernels) or
            ``"torch"`` (torch's CSR kernels).
        backward: ``"dense"``, ``"torch"``, or for the compiled kernels ``"fused"`` (one sweep
            over the pattern, the input gradient in per-thread buffers), ``"gather"`` (over the
            transposed pattern) or ``"weight"`` (the weight gradient alone); ``"none"`` when
            nothing needs a gradient.
        in_place: activations read and written batch-major in place, without
            ``(features, batch)`` copies (the compiled kernels up to
            [`STRIDED_MAX_BATCH`][sparselinear.kernels.STRIDED_MAX_BATCH], dense bands always).
        column_blocks: column blocks of the compiled backward sweep (1: none).
        transposed: whether the backward pass reads the transposed pattern.
        threads: threads the kernels use.
        saved_bytes: bytes of what the backward pass reads besides the input, the weight and
            the output gradient. Sparse kernels: the input gathered as ``x_t (in, batch)`` in
            the compute dtype; the operator keeps the input itself between the passes and the
            backward pass gathers ``x_t`` again, so these bytes are resident during that
            backward pass only (a model that runs the product ``T`` times holds one, not
            ``T``). Dense bands: the tiles, kept from the forward pass for its backward pass
            (one set per weight tensor), and for float16/bfloat16 the input's float32 copy,
            made again by the backward pass.
        forward_bytes, backward_bytes: bytes of temporaries at the peak of each pass (the
            backward peak includes building the transposed pattern when the step reads it).
        derived_bytes: bytes of pattern memory built on first use and kept: the transposed
            pattern, the column-block layout, the dense-band positions.
        build_bytes: bytes of temporaries of the first forward pass's dense-band positions (before
            any gradient or optimizer state exists).
    """

    kernels: str
    backward: str
    in_place: bool
    column_blocks: int
    transposed: bool
    threads: int
    saved_bytes: int
    forward_bytes: int
    backward_bytes: int
    derived_bytes: int
    build_bytes: int = 0

    @property
    def dense_bands(self) -> bool:
        return self.kernels == "dense"

    @property
    def compiled(self) -> bool:
        return self.kernels == "compiled"


def plan_step(
    n_out: int,
    n_in: int,
    nnz: int,
    batch: int,
    dtype: torch.dtype,
    device: torch.device | str = "cpu",
    *,
    mode: str = "sparse",
    band_area: int | None = None,
    band_edges: int | None = None,
    needs_input_grad: bool = True,
    needs_weight_grad: bool = True,
    index_dtype: torch.dtype = torch.int64,
    compiled: bool | None = None,
    threads: int | None = None,
    deterministic: bool | None = None,
) -> StepPlan:
    """Plan one training step of a sparse layer: kernels, backward form, column blocks and the
    bytes it allocates (see the module docstring for what is counted).

    Args:
        n_out: the layer's number of outputs.
        n_in: the layer's number of inputs.
        nnz: its number of edges.
        batch: rows of the flattened input.
        dtype: of the parameters and the input; the kernels compute in
            [`compute_dtype`][sparselinear.kernels.compute_dtype].
        device: where the step runs.
        mode: ``"auto"``, ``"sparse"`` or ``"dense"`` ([`MODES`][sparselinear.kernels.MODES]).
        band_area: the entries of the pattern's dense-band tiles (``BandPlan.area``); ``None``
            when the pattern is not known: ``"auto"`` then plans sparse kernels and ``"dense"``
            assumes bands covering ``n_out x n_in``.
        band_edges: edges of the largest band (sizes the positions' build); default: ``nnz``
            over the number of bands.
        needs_input_grad: whether the backward pass computes the input gradient.
        needs_weight_grad: whether the backward pass computes the weight gradient.
        index_dtype: of the pattern's indices.
        compiled: force the compiled (``True``) or torch (``False``) sparse kernels; default:
            what the backend switch gives (without raising).
        threads: threads of the kernels; default:
            [`kernel_threads`][sparselinear.kernels.kernel_threads] for the compiled kernels,
            ``torch.get_num_threads()`` otherwise.
        deterministic: plan only kernels whose results are the same bit for bit from run to
            run; default: ``torch.are_deterministic_algorithms_enabled()``. With several threads
            the fused backward sweep sums per-thread buffers whose share of the rows varies, so
            the input gradient is then gathered over the transposed pattern instead.
    """
    device = torch.device(device)
    check_mode(mode)
    ct = compute_dtype(dtype, device)
    d, dc, idx = dtype.itemsize, ct.itemsize, index_dtype.itemsize
    if mode == "dense" and band_area is None:
        band_area = n_out * n_in
    if band_area is not None and use_dense_bands(mode, nnz, band_area, dtype, device):
        threads = torch.get_num_threads() if threads is None else threads
        n_bands = max(1, -(-n_out // band_rows(n_out)))
        edges = -(-nnz // n_bands) if band_edges is None else band_edges
        return _dense_plan(n_out, n_in, nnz, batch, d, dc, idx, band_area, edges,
                           needs_input_grad, needs_weight_grad, threads)
    if compiled is None:
        compiled = _compiled(ct, device, strict=False)
    if threads is None:
        threads = _ext.threads() if compiled else torch.get_num_threads()
    if deterministic is None:
        deterministic = torch.are_deterministic_algorithms_enabled()
    if compiled:
        return _compiled_plan(n_out, n_in, nnz, batch, d, dc, idx, needs_input_grad,
                              needs_weight_grad, threads, deterministic)
    return _torch_plan(n_out, n_in, nnz, batch, d, dc, idx, needs_input_grad,
                       needs_weight_grad, threads)


def _transposed_bytes(n_in: int, nnz: int, idx: int) -> int:
    return idx * ((n_in + 1) + 2 * nnz)


def _dense_plan(n_out, n_in, nnz, batch, d, dc, idx, area, edges, want_gx, want_gw,
                threads) -> StepPlan:
    converts = d != dc
    # forward: the output in the compute dtype beside its cast, the weight's copy
    forward = (n_out * batch * dc + nnz * dc) if converts else 0
    saved = area * dc + (n_in * batch * dc if converts else 0)  # tiles; the input's cast copy
    g_copy = n_out * batch * dc if converts else 0
    gx = n_in * batch * dc if want_gx else 0
    gx_final = n_in * batch * d if want_gx and converts else gx
    during_gx = gx + (gx_final if converts else 0)  # grad_x beside its cast
    during_gw = gx_final + area * dc + (nnz * dc if converts else 0) if want_gw else 0
    backward = g_copy + max(during_gx, during_gw) if (want_gx or want_gw) else 0
    # positions: int64 columns of an int32 pattern and the rows, then two band-sized temporaries
    build = (8 * nnz if idx != 8 else 0) + 8 * nnz + 16 * edges
    return StepPlan("dense", "dense" if (want_gx or want_gw) else "none", True, 1, False,
                    threads, saved, forward, backward, 8 * nnz, build)


def _compiled_plan(n_out, n_in, nnz, batch, d, dc, idx, want_gx, want_gw, threads,
                   deterministic=False) -> StepPlan:
    converts = d != dc
    in_place = batch <= STRIDED_MAX_BATCH
    wide = not in_place  # the kernels work on (features, batch) copies
    forward = n_out * batch * dc if converts or wide else 0
    weight_copy = nnz * dc if converts else 0
    forward += weight_copy
    grad_y_copy = n_out * batch * dc if converts else 0
    g_copy = n_out * batch * dc  # grad_y as (out, batch)
    private = threads * n_in * batch * dc
    fits = threads == 1 or (private <= PRIVATE_BYTES and not deterministic)
    blocks = 1
    if not (want_gx or want_gw):
        form, grad_x = "none", 0
    elif want_gx and batch <= FUSED_MAX_BATCH and fits:
        form = "fused"
        grad_x = (g_copy if wide else 0) + private + n_in * batch * dc  # summed into grad_x
        blocks = backward_blocks(n_in, n_out, nnz, batch, dc, threads, True)
    elif not want_gx:
        form, grad_x = "weight", g_copy if wide else 0
        blocks = backward_blocks(n_in, n_out, nnz, batch, dc, threads, False)
    else:
        # the copy it gathers from, then building the transposed pattern or the (in, batch)
        # result and its batch-major copy (wide batches), whichever is larger
        form = "gather"
        build = TRANSPOSE_BUILD_BYTES_PER_EDGE * nnz
        gathered = (2 if wide else 1) * n_in * batch * dc
        grad_x = g_copy + max(gathered, build)
    backward = grad_y_copy + grad_x + 2 * weight_copy if form != "none" else 0
    transposed = form == "gather"
    derived = (_transposed_bytes(n_in, nnz, idx) if transposed else 0) + layout_bytes(
        n_out, nnz, blocks, idx)
    return StepPlan("compiled", form, in_place, blocks, transposed, threads,
                    n_in * batch * dc, forward, backward, derived)


def _torch_plan(n_out, n_in, nnz, batch, d, dc, idx, want_gx, want_gw, threads) -> StepPlan:
    per_chunk = max(1, CHUNK_BYTES // max(1, batch * dc))  # see torch_kernels._row_chunks
    chunk = min(nnz, per_chunk)
    n_chunks = max(1, -(-nnz // chunk)) if nnz else 1
    chunk_rows, chunk_rows_t = -(-n_out // n_chunks), -(-n_in // n_chunks)
    converts = d != dc

    spmm_extra = chunk_rows * batch * dc if n_chunks > 1 else 0
    forward = n_out * batch * dc + spmm_extra + (n_out * batch * d if converts else 0)
    if converts:
        forward += n_in * batch * dc  # the cast copy before the contiguous copy

    grad_y_copy = n_out * batch * dc  # grad_y itself replaces the released output
    gather = nnz * dc + (nnz * 8 if idx != 8 else 0)
    grad_x = n_in * batch * dc if want_gx else 0
    spmm_t_extra = chunk_rows_t * batch * dc if n_chunks > 1 else 0
    sddmm_chunk = chunk * (2 * dc + 8)
    sddmm_cast = nnz * d if converts else 0  # the float32 result and its cast coexist
    during_grad_x = (gather + grad_x + spmm_t_extra) if want_gx else 0
    during_sddmm = ((nnz * dc if want_gx else 0) + grad_x + sddmm_chunk + sddmm_cast
                    if want_gw else 0)
    during_build = TRANSPOSE_BUILD_BYTES_PER_EDGE * nnz if want_gx else 0
    needed = want_gx or want_gw
    backward = grad_y_copy + max(during_grad_x, during_sddmm, during_build) if needed else 0
    return StepPlan("torch", "torch" if needed else "none", False, 1, want_gx, threads,
                    n_in * batch * dc, forward, backward,
                    _transposed_bytes(n_in, nnz, idx) if want_gx else 0)
