"""Plot the memory of a training step against density: sparse layer, dense layer, RAM.

Needs matplotlib (``pip install matplotlib``); everything else in
[`sparselinear.memory`][sparselinear.memory] works without it.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..errors import DataError, MissingDependencyError
from ..pattern.sources import check_shape
from .estimate import estimate, format_bytes
from .peak import total_memory

__all__ = [
    "MissingDependencyError",
    "check_plot_target",
    "plot_memory_vs_density",
    "require_matplotlib",
]


def check_plot_target(path: str) -> None:
    """Raise before any work is done if a PNG plot cannot be written to ``path``: matplotlib
    missing ([`MissingDependencyError`][sparselinear.errors.MissingDependencyError]), no such folder
    or not a ``.png`` name ([`DataError`][sparselinear.errors.DataError])."""
    require_matplotlib()
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise DataError(f"Cannot write the plot to '{path}': folder '{parent}' does not exist.")
    if not path.lower().endswith(".png"):
        raise DataError(f"The plot is written as PNG: name it '*.png'; got '{path}'.")


def require_matplotlib() -> Any:
    """Import matplotlib with a non-interactive backend, or raise
    [`MissingDependencyError`][sparselinear.errors.MissingDependencyError] saying how to install
    it."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingDependencyError(
            "Plotting needs matplotlib, which is not installed. Install it with "
            "`pip install matplotlib` (or `pip install 'torch-sparselinear[plot]'`)."
        ) from None
    return plt


def plot_memory_vs_density(
    shape: tuple[int, int],
    path: str | os.PathLike,
    *,
    batch_size: int,
    optimizer: Any = "adam",
    dtype: Any = None,
    nnz: int | None = None,
    ram: int | None = None,
    measured: int | None = None,
    title: str | None = None,
) -> str:
    """Draw the estimated peak of a training step against density (log axes) and save a PNG.

    Args:
        shape: ``(out_features, in_features)``.
        path: the image file to write (``.png``).
        batch_size: as for [`estimate`][sparselinear.memory.estimate].
        optimizer: as for [`estimate`][sparselinear.memory.estimate].
        dtype: as for [`estimate`][sparselinear.memory.estimate].
        nnz: the requested layer, marked on the sparse curve.
        ram: the horizontal memory line; default: this machine's physical memory.
        measured: a measured peak of the requested layer, marked beside the estimate.
        title: default: the shape, batch and optimizer.

    Returns:
        ``path`` as a string.
    """
    plt = require_matplotlib()
    n_out, n_in = check_shape(shape)
    size = n_out * n_in
    if size == 0:
        raise DataError(f"Cannot plot memory against density for an empty shape {shape}.")
    lo = max(1.0 / size, 1e-9)
    densities = np.unique(np.concatenate([np.logspace(np.log10(lo), 0, 80), [1.0]]))
    kw = {"batch_size": batch_size, "optimizer": optimizer, "dtype": dtype}
    sparse = [estimate((n_out, n_in), nnz=max(1, round(d * size)), **kw).total for d in densities]
    dense = estimate((n_out, n_in), nnz=1, **kw).dense_total
    ram = total_memory() if ram is None else ram

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    ax.loglog(densities, sparse, label="sparse layer (estimate)", color="tab:blue", lw=2)
    ax.axhline(dense, color="tab:red", ls="--", lw=1.5,
               label=f"dense equivalent ({format_bytes(dense)})")
    if ram:
        ax.axhline(ram, color="black", ls=":", lw=1.5,
                   label=f"this machine's RAM ({format_bytes(ram)})")
    if nnz is not None:
        point = estimate((n_out, n_in), nnz=nnz, **kw).total
        ax.plot([nnz / size], [point], "o", color="tab:blue", ms=8,
                label=f"requested: nnz {nnz:,} -> {format_bytes(point)}")
        if measured is not None:
            ax.plot([nnz / size], [measured], "x", color="tab:green", ms=10, mew=2,
                    label=f"measured peak ({format_bytes(measured)})")
    ax.set_xlabel("density (nnz / (out x in))")
    ax.set_ylabel("peak memory of a training step (bytes)")
    ax.set_title(title or f"{n_out:,} x {n_in:,}, batch {batch_size}, {kw['optimizer']}")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="best", framealpha=0.9)
    fig.tight_layout()
    path = os.fspath(path)
    try:
        fig.savefig(path, format="png")
    except OSError as exc:
        raise DataError(f"Cannot write the plot to '{path}': {exc.strerror or exc}.") from None
    finally:
        plt.close(fig)
    return path
