"""The optional C++/OpenMP CPU kernels, compiled on first use and loaded with :mod:`ctypes`.

The source (``kernels.cpp``) has a plain C interface and needs no PyTorch headers, so building
it takes a few seconds with any C++ compiler and no network. The shared library is cached under
``$SPARSELINEAR_BUILD_DIR`` (default ``~/.cache/sparselinear``) in a folder named after a hash
of the source, the compiler and the flags, so a change to any of them rebuilds.

Set ``SPARSELINEAR_DISABLE_EXTENSION=1`` to never build or load it. Without a working compiler
the library warns once and the pure-PyTorch kernels run instead.

Every function here takes CPU tensors that the caller has already made contiguous, of one
floating dtype (float32 or float64) and one index dtype (int32 or int64).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path

import torch

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

_SOURCE = Path(__file__).with_name("kernels.cpp")
_FLAG_SETS = (
    ["-O3", "-march=native", "-fopenmp"],
    ["-O3", "-fopenmp"],
    ["-O3"],
)
_SUFFIX = {
    (torch.float32, torch.int32): "f32_i32",
    (torch.float32, torch.int64): "f32_i64",
    (torch.float64, torch.int32): "f64_i32",
    (torch.float64, torch.int64): "f64_i64",
}
_VALUE_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}
_INDEX_SUFFIX = {torch.int32: "i32", torch.int64: "i64"}
_lib: ctypes.CDLL | None = None
_tried = False  # set once a build attempt has finished, successful or not
_load_lock = threading.Lock()
_openmp = False


def _disabled() -> bool:
    return os.environ.get("SPARSELINEAR_DISABLE_EXTENSION", "").strip() not in ("", "0")


def _build_dir() -> Path:
    root = os.environ.get("SPARSELINEAR_BUILD_DIR")
    return Path(root) if root else Path.home() / ".cache" / "sparselinear"


def _compiler() -> str | None:
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _compile(compiler: str, flags: list[str], target: Path) -> str | None:
    """Compile the source into ``target`` atomically; return the error text on failure."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    cmd = [compiler, *flags, "-fPIC", "-shared", "-std=c++17", str(_SOURCE), "-o", tmp]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.SubprocessError) as exc:
        os.unlink(tmp)
        return str(exc)
    if done.returncode != 0:
        os.unlink(tmp)
        return done.stderr.strip()[-2000:] or f"exit status {done.returncode}"
    os.replace(tmp, target)  # atomic: concurrent builders never see a half-written library
    return None


def _cpu_model() -> bytes:
    """What ``-march=native`` depends on: the CPU's model name and feature flags."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor().encode()
    wanted = [ln for ln in lines if ln.startswith(("model name", "flags", "Features"))]
    return "\n".join(dict.fromkeys(wanted)).encode()


def _library_path(compiler: str, flags: list[str]) -> Path:
    key = hashlib.sha256()
    for part in (_SOURCE.read_bytes(), compiler.encode(), " ".join(flags).encode(),
                 platform.machine().encode(), _cpu_model()):
        key.update(part)
        key.update(b"\0")
    return _build_dir() / key.hexdigest()[:16] / "sparselinear_kernels.so"


def _declare(lib: ctypes.CDLL) -> None:
    p, i64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    for suffix in _SUFFIX.values():
        getattr(lib, f"sl_spmm_{suffix}").argtypes = [
            p, p, p, p, p, p, i64, i64, i64, i64, i64, i32
        ]
        getattr(lib, f"sl_backward_{suffix}").argtypes = [
            p, p, p, p, p, p, i64, i64, p, p, i64, i64, i64, i64, i64, i32
        ]
        getattr(lib, f"sl_backward_t_{suffix}").argtypes = [
            p, p, p, p, p, p, p, p, i64, i64, i64, i64, i32
        ]
        for kind in ("spmm", "backward", "backward_t"):
            getattr(lib, f"sl_{kind}_{suffix}").restype = None
    for suffix in _INDEX_SUFFIX.values():
        layout = getattr(lib, f"sl_block_layout_{suffix}")
        layout.argtypes = [p, p, i64, p, i64, p, p, p, i32]
        layout.restype = None
    for suffix in _VALUE_SUFFIX.values():
        reduce_private = getattr(lib, f"sl_reduce_private_{suffix}")
        reduce_private.argtypes = [p, i32, p, i64, i64, i64, i64, i32]
        transpose = getattr(lib, f"sl_transpose_{suffix}")
        transpose.argtypes = [p, i64, i64, i64, p, i64, i32]
        reduce_private.restype = transpose.restype = None


def load() -> ctypes.CDLL | None:
    """The compiled kernels, building them on first call; ``None`` if disabled or unbuildable
    (with a one-time warning saying why in the latter case). Thread-safe: a thread arriving
    while another builds waits for the result."""
    global _tried
    if _disabled():
        return None
    if _tried:
        return _lib
    with _load_lock:
        if not _tried:
            _build_and_load()
            _tried = True
    return _lib


def _build_and_load() -> ctypes.CDLL | None:
    global _lib, _openmp
    compiler = _compiler()
    if compiler is None:
        warnings.warn(
            "sparselinear: no C++ compiler found (tried $CXX, c++, g++, clang++); using the "
            "slower pure-PyTorch CPU kernels. Install g++ to enable the fast kernels.",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
    errors = []
    for flags in _FLAG_SETS:
        path = _library_path(compiler, flags)
        if not path.exists():
            error = _compile(compiler, flags, path)
            if error is not None:
                errors.append(f"{' '.join(flags)}: {error}")
                continue
        try:
            lib = ctypes.CDLL(str(path))
        except OSError as exc:
            errors.append(f"{' '.join(flags)}: {exc}")
            continue
        _declare(lib)
        _lib, _openmp = lib, bool(lib.sl_has_openmp())
        return _lib
    warnings.warn(
        "sparselinear: could not build the C++ kernels; using the slower pure-PyTorch CPU "
        "kernels. Compiler output:\n" + "\n".join(errors),
        RuntimeWarning,
        stacklevel=3,
    )
    return None


def available() -> bool:
    """Whether the compiled kernels can be used in this process."""
    return load() is not None


def build_expected() -> bool:
    """Whether the kernels should build here: a C++ compiler is found and they are not disabled
    (``SPARSELINEAR_DISABLE_EXTENSION``). The test command checks that they then did."""
    return not _disabled() and _compiler() is not None


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
    dense blocks of ``n_cols`` rows fit :data:`SWEEP_BYTES`, else the whole batch."""
    for width in (64, 32, 16, 8):
        if width < batch and n_cols * width * itemsize * operands <= SWEEP_BYTES:
            return width
    return batch


def _kernel(name: str):
    lib = load()
    if lib is None:
        raise RuntimeError("the sparselinear C++ kernels are not available")
    return getattr(lib, name)


def _fn(kind: str, values: torch.Tensor, index: torch.Tensor):
    return _kernel(f"sl_{kind}_{_SUFFIX[(values.dtype, index.dtype)]}")


def _value_fn(kind: str, dtype: torch.dtype):
    """The kernel ``kind`` for values of ``dtype`` (kernels that take no index array)."""
    return _kernel(f"sl_{kind}_{_VALUE_SUFFIX[dtype]}")


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def transposed(src: torch.Tensor, dtype: torch.dtype | None = None, *,
               hugepages: bool = True) -> torch.Tensor:
    """A contiguous copy of the 2-D ``src.t()`` in ``dtype`` (default: ``src``'s), on huge pages
    if ``hugepages`` (for tables the kernels gather from) and large. Blocked and threaded when
    ``src`` has unit column stride and no cast is needed (torch's strided copy is several times
    slower); torch's copy otherwise."""
    dtype = src.dtype if dtype is None else dtype
    rows, cols = src.shape
    out = empty(cols, rows, dtype=dtype) if hugepages else torch.empty(cols, rows, dtype=dtype)
    fast = src.dtype == dtype and dtype in _VALUE_SUFFIX and src.stride(1) == 1
    if not fast or load() is None:
        return out.copy_(src.t())
    _value_fn("transpose", dtype)(src.data_ptr(), rows, cols, src.stride(0), out.data_ptr(), rows,
                                  threads())
    return out


def _rows_and_blocks(crow: torch.Tensor) -> tuple[int, int]:
    """``(n_rows, n_blocks)`` of a row-pointer tensor: ``(n_rows + 1,)``, or
    ``(n_blocks, n_rows + 1)`` for a pattern in column blocks (:func:`block_layout`)."""
    return crow.shape[-1] - 1, (crow.shape[0] if crow.dim() == 2 else 1)


def spmm(crow: torch.Tensor, col: torch.Tensor, w: torch.Tensor, x: torch.Tensor,
         bias: torch.Tensor | None = None, *, out: torch.Tensor | None = None) -> torch.Tensor:
    """``(n_rows, B)`` product of the CSR matrix ``(crow, col, w)`` with ``x (n_cols, B)``, plus
    ``bias (n_rows,)`` if given, written into ``out`` (any strides, e.g. the transposed view of a
    ``(B, n_rows)`` tensor) or a new contiguous tensor."""
    n_rows, batch = crow.numel() - 1, x.shape[1]
    y = torch.empty(n_rows, batch, dtype=x.dtype) if out is None else out
    width = sweep_width(x.shape[0], batch, x.element_size())
    _fn("spmm", w, col)(crow.data_ptr(), col.data_ptr(), w.data_ptr(), x.data_ptr(), _ptr(bias),
                        y.data_ptr(), y.stride(0), y.stride(1), n_rows, batch, width, threads())
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
        raise ValueError(f"crow and col must share an index dtype; got {crow.dtype}, {col.dtype}")
    n_rows = crow.numel() - 1
    bounds = torch.tensor([b * n_cols // n_blocks for b in range(n_blocks + 1)],
                          dtype=torch.int64)
    crow_blk = torch.empty(n_blocks, n_rows + 1, dtype=crow.dtype)
    col_blk = torch.empty_like(col)
    run = torch.empty(n_blocks, n_rows, dtype=crow.dtype)
    _kernel(f"sl_block_layout_{_INDEX_SUFFIX[col.dtype]}")(
        crow.data_ptr(), col.data_ptr(), n_rows, bounds.data_ptr(), n_blocks,
        crow_blk.data_ptr(), col_blk.data_ptr(), run.data_ptr(), threads())
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
    forward order, in a recycled buffer (:func:`recycled_empty`) when ``recycle`` is set: pass
    ``False`` when ``gw`` is a temporary (e.g. converted to another dtype and dropped), whose
    kept buffer would otherwise sit idle beside the gradient until the next backward pass.
    """
    n_cols, batch = crow_t.numel() - 1, g.shape[1]
    gw = _gradient_buffer(row_t.numel(), g.dtype, recycle)
    gx = torch.empty(n_cols, batch, dtype=g.dtype) if out is None else out
    _fn("backward_t", w, row_t)(crow_t.data_ptr(), row_t.data_ptr(), perm.data_ptr(),
                                w.data_ptr(), x.data_ptr(), g.data_ptr(), gw.data_ptr(),
                                gx.data_ptr(), gx.stride(0), gx.stride(1), n_cols, batch,
                                threads())
    return gw, gx


def backward(crow: torch.Tensor, col: torch.Tensor, w: torch.Tensor, x: torch.Tensor,
             g: torch.Tensor, n_cols: int, *, want_gw: bool, want_gx: bool,
             out: torch.Tensor | None = None, recycle: bool = True,
             run: torch.Tensor | None = None):
    """One fused pass over the forward pattern: ``(gw (nnz,) or None, gx (n_cols, B) or None)``.

    ``g (n_rows, B)`` may have any strides. ``gx`` is accumulated in one private
    ``(n_cols, B)`` buffer per thread, then summed into ``out`` (any strides) or a new tensor.
    ``recycle`` as for :func:`backward_transposed`. In column blocks (each block's slices of
    ``x`` and of the private buffers stay in cache): ``crow``, ``col`` and ``run`` from
    :func:`block_layout`; ``w`` and ``gw`` stay in the CSR order.
    """
    (n_rows, n_blocks), batch = _rows_and_blocks(crow), g.shape[1]
    blocked = run is not None
    if (crow.dim() == 2) != blocked or crow.dtype != col.dtype or (
        blocked and run.dtype != crow.dtype
    ):
        raise ValueError(
            "a pattern in column blocks takes a 2-D crow with its run positions, and crow, col "
            f"and run of one index dtype; got crow {tuple(crow.shape)} {crow.dtype}, col "
            f"{col.dtype}, run {None if run is None else run.dtype}"
        )
    n_threads = threads()
    gw = _gradient_buffer(col.numel(), g.dtype, recycle) if want_gw else None
    private = None
    if want_gx:
        private = empty(n_threads, n_cols, batch, dtype=g.dtype)
        private.zero_()
    width = sweep_width(n_cols, batch, x.element_size(), 2 if want_gx else 1)
    _fn("backward", w, col)(crow.data_ptr(), col.data_ptr(), _ptr(run), w.data_ptr(), x.data_ptr(),
                            g.data_ptr(), g.stride(0), g.stride(1), _ptr(gw), _ptr(private),
                            n_rows, n_blocks, n_cols, batch, width, n_threads)
    if private is None:
        return gw, None
    if out is None and n_threads == 1:
        return gw, private[0]
    gx = torch.empty(n_cols, batch, dtype=g.dtype) if out is None else out
    _value_fn("reduce_private", g.dtype)(private.data_ptr(), n_threads, gx.data_ptr(),
                                         gx.stride(0), gx.stride(1), n_cols, batch, threads())
    return gw, gx
