"""The optional C++/OpenMP CPU kernels, compiled on first use and loaded with ``ctypes``.

The source (``kernels.cpp``) has a plain C interface and needs no PyTorch headers, so building
it takes a few seconds with any C++ compiler and no network. ``build`` compiles and caches
it (under ``$SPARSELINEAR_BUILD_DIR``, else ``$XDG_CACHE_HOME/sparselinear``, else
``~/.cache/sparselinear``, in a folder keyed by the source, the compiler and its version, and the
flags), ``bindings`` loads it and holds the signature of every kernel; this module keeps the
loaded library and wraps each kernel for tensors.

Set ``SPARSELINEAR_DISABLE_EXTENSION=1`` to never build or load it. Without a working compiler
or a usable build folder the library warns once and the pure-PyTorch kernels run instead.

Every function here takes CPU tensors that the caller has already made contiguous, of one
floating dtype (float32 or float64) and one index dtype (int32 or int64).
"""

from __future__ import annotations

import ctypes
import os
import threading
import warnings

import torch

from ...errors import MissingDependencyError, PatternError
from . import bindings, build
from .buffers import (
    HUGEPAGE_MAX_ROW_BYTES,
    HUGEPAGE_MIN_BYTES,
    empty,
    idle_bytes,
    recycled_empty,
    release_idle,
)

__all__ = [
    "HUGEPAGE_MAX_ROW_BYTES",
    "HUGEPAGE_MIN_BYTES",
    "SWEEP_BYTES",
    "available",
    "backward",
    "backward_transposed",
    "block_layout",
    "build_expected",
    "empty",
    "idle_bytes",
    "load",
    "recycled_empty",
    "release_idle",
    "spmm",
    "sweep_width",
    "threads",
    "transposed",
]

_lib: ctypes.CDLL | None = None
_tried = False  # set once a build attempt has finished, successful or not
_load_lock = threading.Lock()
_openmp = False
_FALLBACK = "using the slower pure-PyTorch CPU kernels"


def _disabled() -> bool:
    return os.environ.get("SPARSELINEAR_DISABLE_EXTENSION", "").strip() not in ("", "0")


def _reset_for_tests() -> None:
    """Forget the loaded library, so that the next ``load`` builds and loads again (for
    tests: patching ``_lib``, ``_tried`` and ``_openmp`` with ``monkeypatch`` instead puts the
    loaded library back afterwards)."""
    global _lib, _tried, _openmp
    with _load_lock:
        _lib, _tried, _openmp = None, False, False


def load() -> ctypes.CDLL | None:
    """The compiled kernels, building them on first call; ``None`` if disabled or unbuildable
    (with a one-time warning saying why in the latter case). Thread-safe: a thread arriving
    while another builds waits for the result. Never raises for a failed build: the caller
    falls back to the PyTorch kernels."""
    global _tried
    if _disabled():
        return None
    if _tried:
        return _lib
    with _load_lock:
        if not _tried:
            try:
                _build_and_load()
            finally:
                _tried = True
    return _lib


def _warn(message: str) -> None:
    warnings.warn(f"sparselinear: {message}", RuntimeWarning, stacklevel=4)


def _build_and_load() -> None:
    """Build and load the first flag set that works, or warn once why none does."""
    global _lib, _openmp
    compiler = build.find_compiler()
    if compiler is None:
        _warn(f"no C++ compiler found (tried $CXX, c++, g++, clang++); {_FALLBACK}. Install g++ "
              "to enable the fast kernels.")
        return
    version = build.compiler_version(compiler)
    problems, refused = [], []
    for flags in build.FLAG_SETS:
        try:
            lib = bindings.open_library(build.build(compiler, version, flags))
        except build.BuildDirError as exc:
            _warn(f"could not build the C++ kernels, {_FALLBACK}: {exc}.")
            return
        except (build.BuildError, bindings.LoadError) as exc:
            problems.append(f"{' '.join(flags)}: {exc}")
            if isinstance(exc, bindings.AbiMismatchError):
                refused.append(problems[-1])
            continue
        _lib, _openmp = lib, bool(lib.sl_has_openmp())
        if refused:  # a stale library is worth a word even when another flag set works
            _warn("refused a stale build of the C++ kernels and used the next flag set:\n"
                  + "\n".join(refused))
        return
    _warn(f"could not build the C++ kernels with {compiler}, {_FALLBACK}. Compiler output:\n"
          + "\n".join(problems))


def available() -> bool:
    """Whether the compiled kernels can be used in this process."""
    return load() is not None


def build_expected() -> bool:
    """Whether the kernels should build here: a C++ compiler is found and they are not disabled
    (``SPARSELINEAR_DISABLE_EXTENSION``). The test command checks that they then did."""
    return not _disabled() and build.find_compiler() is not None


def threads() -> int:
    """Threads the kernels use: ``torch.get_num_threads()`` (1 without OpenMP)."""
    return max(1, torch.get_num_threads()) if _openmp else 1


#: Bytes of the dense operands one sweep over the pattern may touch: when the whole batch
#: exceeds it, the kernels sweep the pattern once per slice of 64/32/16/8 batch columns so that
#: each slice stays in the per-core cache (re-reading the indices, which stream sequentially).
#: 0 (the default) sweeps the whole batch at once: on the 2-core test machine slicing gave no
#: measurable gain; it is a knob for CPUs with a larger per-core cache.
SWEEP_BYTES = 0


def sweep_width(n_cols: int, batch: int, itemsize: int, operands: int = 1) -> int:
    """Batch columns per sweep: the widest slice of 64, 32, 16 or 8 columns whose ``operands``
    dense blocks of ``n_cols`` rows fit ``SWEEP_BYTES``, else the whole batch."""
    for width in (64, 32, 16, 8):
        if width < batch and n_cols * width * itemsize * operands <= SWEEP_BYTES:
            return width
    return batch


def _library() -> ctypes.CDLL:
    lib = load()
    if lib is None:
        raise MissingDependencyError(
            "expected the compiled C++ kernels to be loaded; they are not available (disabled "
            "by SPARSELINEAR_DISABLE_EXTENSION, or they could not be built: see the earlier "
            "warning). Check `sparselinear.ops._ext.available()` first, or use the PyTorch "
            "kernels (`kernels.set_backend('torch')`)."
        )
    return lib


def _call(kernel: str, suffix: str, **args) -> None:
    """Run ``kernel``'s ``suffix`` variant with ``args`` named as in the signature table."""
    bindings.call(_library(), kernel, suffix, **args)


def transposed(src: torch.Tensor, dtype: torch.dtype | None = None, *,
               hugepages: bool = True) -> torch.Tensor:
    """A contiguous copy of the 2-D ``src.t()`` in ``dtype`` (default: ``src``'s), on huge pages
    if ``hugepages`` (for tables the kernels gather from) and large. Blocked and threaded when
    ``src`` has unit column stride and no cast is needed (torch's strided copy is several times
    slower); torch's copy otherwise."""
    dtype = src.dtype if dtype is None else dtype
    rows, cols = src.shape
    out = empty(cols, rows, dtype=dtype) if hugepages else torch.empty(cols, rows, dtype=dtype)
    fast = src.dtype == dtype and dtype in bindings.VALUE_SUFFIXES and src.stride(1) == 1
    if not fast or load() is None:
        return out.copy_(src.t())
    _call("transpose", bindings.VALUE_SUFFIXES[dtype], src=src, R=rows, C=cols,
          ld_src=src.stride(0), dst=out, ld_dst=rows, threads=threads())
    return out


def _rows_and_blocks(crow: torch.Tensor) -> tuple[int, int]:
    """``(n_rows, n_blocks)`` of a row-pointer tensor: ``(n_rows + 1,)``, or
    ``(n_blocks, n_rows + 1)`` for a pattern in column blocks (``block_layout``)."""
    return crow.shape[-1] - 1, (crow.shape[0] if crow.dim() == 2 else 1)


def spmm(crow: torch.Tensor, col: torch.Tensor, w: torch.Tensor, x: torch.Tensor,
         bias: torch.Tensor | None = None, *, out: torch.Tensor | None = None) -> torch.Tensor:
    """``(n_rows, B)`` product of the CSR matrix ``(crow, col, w)`` with ``x (n_cols, B)``, plus
    ``bias (n_rows,)`` if given, written into ``out`` (any strides, e.g. the transposed view of a
    ``(B, n_rows)`` tensor) or a new contiguous tensor."""
    n_rows, batch = crow.numel() - 1, x.shape[1]
    y = torch.empty(n_rows, batch, dtype=x.dtype) if out is None else out
    width = sweep_width(x.shape[0], batch, x.element_size())
    _call("spmm", bindings.PAIR_SUFFIXES[(w.dtype, col.dtype)], crow=crow, col=col, w=w, x=x,
          bias=bias, y=y, ys_r=y.stride(0), ys_b=y.stride(1), n_rows=n_rows, B=batch, tb=width,
          threads=threads())
    return y


def block_layout(crow: torch.Tensor, col: torch.Tensor, n_cols: int,
                 n_blocks: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The pattern cut into ``n_blocks`` equal column ranges: ``(crow_blk, col_blk, run)``.

    ``col_blk`` lists block 0's edges row by row, then block 1's, and so on;
    ``crow_blk (n_blocks, n_rows + 1)`` holds each block's row pointers into it and
    ``run (n_blocks, n_rows)`` the CSR position where each block's edges of each row start, so
    that values and weight gradients stay in the CSR order. ``col`` must be sorted within each
    row (canonical CSR): a row's edges of one block are then one run of its CSR edges.
    """
    if crow.dtype != col.dtype:
        raise PatternError(
            f"expected crow and col of one index dtype; given {crow.dtype} and {col.dtype}. "
            "Convert both to torch.int32 or both to torch.int64."
        )
    n_rows = crow.numel() - 1
    bounds = torch.tensor([b * n_cols // n_blocks for b in range(n_blocks + 1)],
                          dtype=torch.int64)
    crow_blk = torch.empty(n_blocks, n_rows + 1, dtype=crow.dtype)
    col_blk = torch.empty_like(col)
    run = torch.empty(n_blocks, n_rows, dtype=crow.dtype)
    _call("block_layout", bindings.INDEX_SUFFIXES[col.dtype], crow=crow, col=col,
          n_rows=n_rows, bounds=bounds, n_blocks=n_blocks, crow_blk=crow_blk, col_blk=col_blk,
          run=run, threads=threads())
    return crow_blk, col_blk, run


def _gradient_buffer(numel: int, dtype: torch.dtype, recycle: bool) -> torch.Tensor:
    return recycled_empty(numel, dtype) if recycle else torch.empty(numel, dtype=dtype)


def backward_transposed(crow_t: torch.Tensor, row_t: torch.Tensor, perm: torch.Tensor,
                        w: torch.Tensor, x: torch.Tensor, g: torch.Tensor, *,
                        out: torch.Tensor | None = None,
                        recycle: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Both gradients in one pass over the transposed pattern: ``(gw (nnz,), gx (n_cols, B))``.

    ``crow_t``, ``row_t`` and ``perm`` are the transposed pattern and the forward position of
    each of its edges; ``w`` the values in the forward order. ``x (n_cols, B)`` and
    ``g (n_rows, B)`` are contiguous; ``gx`` is written into ``out`` (any strides, e.g. the
    transposed view of a ``(B, n_cols)`` tensor) or a new contiguous tensor, ``gw`` in the
    forward order, in a recycled buffer (``recycled_empty``) when ``recycle`` is set: pass
    ``False`` when ``gw`` is a temporary (e.g. converted to another dtype and dropped), whose
    kept buffer would otherwise sit idle beside the gradient until the next backward pass.
    """
    n_cols, batch = crow_t.numel() - 1, g.shape[1]
    gw = _gradient_buffer(row_t.numel(), g.dtype, recycle)
    gx = torch.empty(n_cols, batch, dtype=g.dtype) if out is None else out
    _call("backward_t", bindings.PAIR_SUFFIXES[(w.dtype, row_t.dtype)], crow_t=crow_t,
          row_t=row_t, perm=perm, w=w, x=x, g=g, gw=gw, gx=gx, gs_c=gx.stride(0),
          gs_b=gx.stride(1), n_cols=n_cols, B=batch, threads=threads())
    return gw, gx


def backward(crow: torch.Tensor, col: torch.Tensor, w: torch.Tensor, x: torch.Tensor,
             g: torch.Tensor, n_cols: int, *, want_gw: bool, want_gx: bool,
             out: torch.Tensor | None = None, recycle: bool = True,
             run: torch.Tensor | None = None, gw_out: torch.Tensor | None = None,
             accumulate_gw: bool = False, accumulate_gx: bool = False,
             window: tuple[int, int] | None = None):
    """One fused pass over the forward pattern: ``(gw (nnz,) or None, gx (n_cols, B) or None)``.

    ``g (n_rows, B)`` may have any strides. ``gx`` is accumulated in one private
    ``(n_cols, B)`` buffer per thread, then summed into ``out`` (any strides) or a new tensor;
    with one thread a contiguous ``out`` is that buffer. ``recycle`` as for
    ``backward_transposed``. In column blocks (each block's slices of ``x`` and of the private
    buffers stay in cache): ``crow``, ``col`` and ``run`` from ``block_layout``; ``w`` and
    ``gw`` stay in the CSR order.

    ``gw_out`` (contiguous, ``(nnz,)``) receives ``gw`` instead of a new buffer; with
    ``accumulate_gw`` the weight gradient is added to it, and with ``accumulate_gx`` the input
    gradient is added to ``out`` (both as they are, without a temporary of their size).

    ``window=(lo, hi)``: only the edges whose column lies in ``[lo, hi)`` take part (``col``
    sorted within each row; not with column blocks); ``x``, ``out`` and ``n_cols`` are then the
    window's ``hi - lo`` columns, and only those edges' weight gradients are written.
    """
    (n_rows, n_blocks), batch = _rows_and_blocks(crow), g.shape[1]
    blocked = run is not None
    if (crow.dim() == 2) != blocked or crow.dtype != col.dtype or (
        blocked and run.dtype != crow.dtype
    ):
        raise PatternError(
            "expected a 1-D crow without run positions, or a pattern in column blocks (a 2-D "
            "crow with its run positions), and crow, col and run of one index dtype; given "
            f"crow {tuple(crow.shape)} {crow.dtype}, col {col.dtype}, run "
            f"{None if run is None else run.dtype}. Pass the three tensors of block_layout "
            "together, or none of them."
        )
    lo, hi = (0, -1) if window is None else (int(window[0]), int(window[1]))
    if window is not None and (blocked or not 0 <= lo <= hi or n_cols != hi - lo):
        raise ValueError(
            f"expected a column window 0 <= lo <= hi over n_cols = hi - lo columns, without "
            f"column blocks; given window {window}, n_cols {n_cols}, column blocks {blocked}."
        )
    if accumulate_gx and out is None:
        raise ValueError("accumulate_gx adds the input gradient to 'out': pass 'out'.")
    if want_gw and accumulate_gw and gw_out is None:
        raise ValueError("accumulate_gw adds the weight gradient to 'gw_out': pass 'gw_out'.")
    if want_gw and gw_out is not None and (
        gw_out.dtype != g.dtype or gw_out.numel() != col.numel() or not gw_out.is_contiguous()
    ):
        raise ValueError(
            f"expected gw_out contiguous, ({col.numel()},) {g.dtype}; given "
            f"{tuple(gw_out.shape)} {gw_out.dtype} with strides {gw_out.stride()}."
        )
    n_threads = threads()
    gw = None
    if want_gw:
        gw = _gradient_buffer(col.numel(), g.dtype, recycle) if gw_out is None else gw_out
    private = None
    if want_gx:
        if n_threads == 1 and out is not None and out.is_contiguous():
            private = out.view(1, n_cols, batch)  # the one thread's buffer is the result
            if not accumulate_gx:
                private.zero_()
        else:
            private = empty(n_threads, n_cols, batch, dtype=g.dtype)
            private.zero_()
            if accumulate_gx:
                private[0].copy_(out)
    width = sweep_width(n_cols, batch, x.element_size(), 2 if want_gx else 1)
    _call("backward", bindings.PAIR_SUFFIXES[(w.dtype, col.dtype)], crow=crow, col=col, run=run,
          w=w, x=x, g=g, gs_r=g.stride(0), gs_b=g.stride(1), gw=gw, gx_private=private,
          n_rows=n_rows, n_blocks=n_blocks, n_cols=n_cols, B=batch, tb=width,
          accumulate=int(accumulate_gw), lo=lo, hi=hi, threads=n_threads)
    if private is None:
        return gw, None
    if out is not None and private.data_ptr() == out.data_ptr():
        return gw, out
    if out is None and n_threads == 1:
        return gw, private[0]
    gx = torch.empty(n_cols, batch, dtype=g.dtype) if out is None else out
    _call("reduce_private", bindings.VALUE_SUFFIXES[g.dtype], priv=private, n_private=n_threads,
          out=gx, os_c=gx.stride(0), os_b=gx.stride(1), n_cols=n_cols, B=batch,
          threads=threads())
    return gw, gx
