"""The C interface of the compiled kernels: one named signature table, loading and calling.

Every kernel ``K`` is exported once per dtype combination as ``sl_K_<suffix>`` (e.g.
``sl_spmm_f32_i64``). ``SIGNATURES`` names its parameters and their C types, in the order
of the C declaration; the ``argtypes`` of every exported variant are set from it, and
``call`` takes the arguments by name, checks them against it and passes them in its order.

``open_library`` refuses a library whose ABI version (``sl_abi_version()``) differs from
the source's ``SL_ABI_VERSION`` (``source_abi_version``): a stale or foreign build would
otherwise be called with the wrong arguments.
"""

from __future__ import annotations

import ctypes
import operator
import re
from pathlib import Path
from typing import Any

import torch

from ...errors import SparseLinearError, SparseLinearTypeError
from .build import SOURCE

__all__ = [
    "INDEX_SUFFIXES",
    "PAIR_SUFFIXES",
    "SIGNATURES",
    "VALUE_SUFFIXES",
    "VARIANTS",
    "AbiMismatchError",
    "LoadError",
    "call",
    "declare",
    "open_library",
    "source_abi_version",
    "symbol",
]

PTR, I64, INT = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int

#: Suffix of the kernels that take values of one dtype.
VALUE_SUFFIXES = {torch.float32: "f32", torch.float64: "f64"}
#: Suffix of the kernels that take indices of one dtype.
INDEX_SUFFIXES = {torch.int32: "i32", torch.int64: "i64"}
#: Suffix of the kernels that take values and indices.
PAIR_SUFFIXES = {
    (v, i): f"{vs}_{is_}" for v, vs in VALUE_SUFFIXES.items() for i, is_ in INDEX_SUFFIXES.items()
}

#: Parameters of each kernel, named as in ``kernels.cpp``, with their C types, in order.
SIGNATURES: dict[str, tuple[tuple[str, type], ...]] = {
    "spmm": (
        ("crow", PTR), ("col", PTR), ("w", PTR), ("x", PTR), ("bias", PTR), ("y", PTR),
        ("ys_r", I64), ("ys_b", I64), ("n_rows", I64), ("B", I64), ("tb", I64),
        ("threads", INT),
    ),
    "backward": (
        ("crow", PTR), ("col", PTR), ("run", PTR), ("w", PTR), ("x", PTR), ("g", PTR),
        ("gs_r", I64), ("gs_b", I64), ("gw", PTR), ("gx_private", PTR), ("n_rows", I64),
        ("n_blocks", I64), ("n_cols", I64), ("B", I64), ("tb", I64), ("accumulate", INT),
        ("lo", I64), ("hi", I64), ("threads", INT),
    ),
    "backward_t": (
        ("crow_t", PTR), ("row_t", PTR), ("perm", PTR), ("w", PTR), ("x", PTR), ("g", PTR),
        ("gw", PTR), ("gx", PTR), ("gs_c", I64), ("gs_b", I64), ("n_cols", I64), ("B", I64),
        ("threads", INT),
    ),
    "block_layout": (
        ("crow", PTR), ("col", PTR), ("n_rows", I64), ("bounds", PTR), ("n_blocks", I64),
        ("crow_blk", PTR), ("col_blk", PTR), ("run", PTR), ("threads", INT),
    ),
    "reduce_private": (
        ("priv", PTR), ("n_private", INT), ("out", PTR), ("os_c", I64), ("os_b", I64),
        ("n_cols", I64), ("B", I64), ("threads", INT),
    ),
    "transpose": (
        ("src", PTR), ("R", I64), ("C", I64), ("ld_src", I64), ("dst", PTR), ("ld_dst", I64),
        ("threads", INT),
    ),
}

#: The exported dtype variants of each kernel (all return ``void``).
VARIANTS: dict[str, tuple[str, ...]] = {
    "spmm": tuple(PAIR_SUFFIXES.values()),
    "backward": tuple(PAIR_SUFFIXES.values()),
    "backward_t": tuple(PAIR_SUFFIXES.values()),
    "block_layout": tuple(INDEX_SUFFIXES.values()),
    "reduce_private": tuple(VALUE_SUFFIXES.values()),
    "transpose": tuple(VALUE_SUFFIXES.values()),
}

_NAMES = {kernel: tuple(name for name, _ in params) for kernel, params in SIGNATURES.items()}
_NAME_SETS = {kernel: frozenset(names) for kernel, names in _NAMES.items()}
_IN_ORDER = {kernel: operator.itemgetter(*names) for kernel, names in _NAMES.items()}
_POINTERS = {  # whether each parameter is a pointer, in order
    kernel: tuple(ctype is PTR for _, ctype in params) for kernel, params in SIGNATURES.items()
}

#: Functions without arguments that return an ``int``.
_QUERIES = ("sl_abi_version", "sl_has_openmp")
_ABI_DEFINE = re.compile(r"^#define\s+SL_ABI_VERSION\s+(\d+)\s*$", re.MULTILINE)


class LoadError(SparseLinearError, RuntimeError):
    """A built library cannot be loaded or used."""


class AbiMismatchError(LoadError):
    """A library's ABI version is not the one of the source the bindings were written for."""


def source_abi_version(source: Path = SOURCE) -> int:
    """The ``SL_ABI_VERSION`` that ``kernels.cpp`` defines: the one version the bindings accept."""
    found = _ABI_DEFINE.search(source.read_text())
    if found is None:
        raise LoadError(
            f"expected a line '#define SL_ABI_VERSION <number>' in {source}; found none. "
            "Restore it (the bindings check the built library against it)."
        )
    return int(found.group(1))


def symbol(kernel: str, suffix: str) -> str:
    """The exported name of ``kernel``'s ``suffix`` variant, e.g. ``sl_spmm_f32_i64``."""
    return f"sl_{kernel}_{suffix}"


def declare(lib: ctypes.CDLL) -> None:
    """Set the argument and result types of every exported function from the tables."""
    for kernel, params in SIGNATURES.items():
        argtypes = [ctype for _, ctype in params]
        for suffix in VARIANTS[kernel]:
            fn = getattr(lib, symbol(kernel, suffix))
            fn.argtypes, fn.restype = argtypes, None
    for name in _QUERIES:
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = [], ctypes.c_int


def open_library(path: Path) -> ctypes.CDLL:
    """Load the library at ``path``, check its ABI version and declare its functions.

    Raises ``LoadError`` if it cannot be loaded or lacks a kernel, and
    ``AbiMismatchError`` if it was built from another version of the source.
    """
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as exc:
        raise LoadError(str(exc)) from exc
    expected = source_abi_version()
    try:
        version_fn = lib.sl_abi_version
    except AttributeError:
        given = None
    else:
        version_fn.argtypes, version_fn.restype = [], ctypes.c_int
        given = int(version_fn())
    if given != expected:
        raise AbiMismatchError(
            f"expected a library of ABI version {expected} (SL_ABI_VERSION in {SOURCE.name}); "
            f"{path} reports {'none' if given is None else given}. Delete it to rebuild."
        )
    try:
        declare(lib)
    except AttributeError as exc:
        raise LoadError(f"{path} lacks a kernel: {exc}. Delete it to rebuild.") from exc
    return lib


def call(lib: ctypes.CDLL, kernel: str, suffix: str, **args: Any) -> None:
    """Call ``kernel``'s ``suffix`` variant with ``args`` named as in ``SIGNATURES``
    (tensors are passed by their data pointer, ``None`` as a null pointer).

    Raises [`SparseLinearTypeError`][sparselinear.errors.SparseLinearTypeError] unless the names are
    exactly the table's: ctypes itself would accept surplus arguments of a C function silently.
    """
    if args.keys() != _NAME_SETS[kernel]:
        names = _NAMES[kernel]
        missing = [name for name in names if name not in args]
        unexpected = [name for name in args if name not in names]
        raise SparseLinearTypeError(
            f"expected the {len(names)} arguments of {symbol(kernel, suffix)} "
            f"({', '.join(names)}); given {len(args)}, missing {missing or 'none'}, "
            f"unexpected {unexpected or 'none'}. Pass every argument of the signature table "
            "by name."
        )
    values = _IN_ORDER[kernel](args)
    getattr(lib, symbol(kernel, suffix))(*[
        value.data_ptr() if pointer and value is not None else value
        for value, pointer in zip(values, _POINTERS[kernel])
    ])
