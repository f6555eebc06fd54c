"""PNG plots of the scaling sweeps: step time and peak memory against nnz and against batch."""

from __future__ import annotations

import os


def _xy(rows):
    pts = [(x, r["median_s"], r["step_peak_mb"] / 1024) for x, r in rows
           if r.get("status") == "ok"]
    return [p[0] for p in pts], [p[1] for p in pts], [p[2] for p in pts]


def sweep_plot(rows: list[tuple], xlabel: str, title: str, path: str,
               reference_slope: float = 1.0) -> str | None:
    """Two log-log panels (time, memory) for ``rows`` of ``(x, record)``; returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs, ts, ms = _xy(rows)
    if len(xs) < 2:
        return None
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(10, 4))
    ax_t.loglog(xs, ts, "o-", label="sparselinear (ours)")
    ref = [ts[0] * (x / xs[0]) ** reference_slope for x in xs]
    ax_t.loglog(xs, ref, ":", color="gray", label=f"slope {reference_slope:g}")
    ax_t.set_xlabel(xlabel)
    ax_t.set_ylabel("training step, median (s)")
    ax_t.grid(True, which="both", alpha=0.3)
    ax_t.legend()
    ax_m.semilogx(xs, ms, "s-", color="tab:orange", label="peak above input")
    ax_m.set_ylim(bottom=0)
    ax_m.set_xlabel(xlabel)
    ax_m.set_ylabel("peak memory above input data (GB)")
    ax_m.grid(True, which="both", alpha=0.3)
    ax_m.legend()
    fig.suptitle(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def comparison_plot(main: dict[str, dict[str, dict]], labels: dict[str, str],
                    path: str) -> str | None:
    """Bar charts of step time per implementation, one panel per workload (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in main if any(r.get("status") == "ok" for r in main[n].values())]
    if not names:
        return None
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 4), squeeze=False)
    for ax, wl in zip(axes[0], names, strict=False):
        recs = [(labels[i], r["median_s"]) for i, r in main[wl].items()
                if r.get("status") == "ok"]
        ax.barh([r[0] for r in recs], [r[1] for r in recs],
                color=["tab:green" if r[0].endswith("(ours)") else "tab:gray" for r in recs])
        ax.set_xscale("log")
        ax.set_xlim(left=min(r[1] for r in recs) / 3)
        ax.set_xlabel("training step, median (s)")
        ax.set_title(wl)
        ax.invert_yaxis()
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
