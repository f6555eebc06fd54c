"""Tables, ratios and target checks from the measurements of ``compare.py`` (markdown)."""

from __future__ import annotations

import math

import implementations as impls_mod

GB = 1 << 30
#: relative tolerance of the result check against ours (fp32 sums in different orders)
CHECK_RTOL = 1e-4


def _fmt_s(v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v * 1000:.1f} ms" if v < 1 else f"{v:.2f} s"


def _fmt_mb(v: float | None) -> str:
    if v is None:
        return "–"
    return f"{v / 1024:.2f} GB" if v >= 1024 else f"{v:.0f} MB"


def _ratio(a: float | None, b: float | None) -> str:
    if not a or not b:
        return "–"
    return f"{a / b:.2f}×"


def reference(records: dict[str, dict]) -> dict | None:
    """The record others are checked against: ours if it ran, else the first that did."""
    order = ["ours", "dense_masked", "torch_coo", *impls_mod.PEERS]
    for name in order:
        r = records.get(name)
        if r and r.get("status") == "ok" and "check" in r:
            return r
    return None


def check_against(r: dict, ref: dict | None) -> str:
    if r.get("status") != "ok" or "check" not in r:
        return "–"
    if ref is None or ref is r:
        return "reference"
    bad = []
    for k in ("y", "gw", "gx"):
        if k in ref["check"] and k in r["check"]:
            scale = max(ref["check"][k + "_scale"], 1e-30)
            err = abs(r["check"][k] - ref["check"][k]) / scale
            if not err <= CHECK_RTOL:
                bad.append(f"{k} off by {err:.1e}")
    return "yes" if not bad else "NO: " + ", ".join(bad)


def workload_title(spec: dict) -> str:
    density = spec["nnz"] / (spec["n_out"] * spec["n_in"])
    return (f"{spec['n_out']:,} × {spec['n_in']:,}, nnz {spec['nnz']:,} "
            f"(density {density:.3g}), batch {spec['batch']}, {spec['threads']} thread(s)")


def workload_table(name: str, records: dict[str, dict]) -> str:
    """One markdown table: every implementation of one workload, ratios against ours."""
    ours = records.get("ours") if records.get("ours", {}).get("status") == "ok" else None
    ref = reference(records)
    spec = next(iter(records.values()))["spec"]
    lines = [
        f"**{name}** — {workload_title(spec)}",
        "",
        "| implementation | step (median) | best | forward | backward | Adam | peak above input "
        "| build | time ÷ ours | peak ÷ ours | same result |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for impl, r in records.items():
        label = impls_mod.IMPLS[impl].label
        if r.get("status") == "ok":
            lines.append(
                f"| {label} | {_fmt_s(r['median_s'])} | {_fmt_s(r.get('min_s'))} | "
                f"{_fmt_s(r['forward_s'])} | "
                f"{_fmt_s(r['backward_s'])} | {_fmt_s(r['optimizer_s'])} | "
                f"{_fmt_mb(r['step_peak_mb'])} | {_fmt_s(r['build_s'])} | "
                f"{_ratio(r['median_s'], ours and ours['median_s'])} | "
                f"{_ratio(r['step_peak_mb'], ours and ours['step_peak_mb'])} | "
                f"{check_against(r, ref)} |"
            )
        else:
            note = r.get("note") or r.get("status")
            lines.append(f"| {label} | {note} | | | | | | | | | |")
    rounds = [f"{impls_mod.IMPLS[impl].label} {' / '.join(_fmt_s(t) for t in r['round_medians_s'])}"
              for impl, r in records.items() if r.get("round_medians_s")]
    if rounds:
        lines += ["", "Median of each round: " + "; ".join(rounds) + "."]
    lines += [f"\n{impls_mod.IMPLS[impl].label}: {r['note']}." for impl, r in records.items()
              if r.get("status") == "ok" and r.get("note")]
    mode = (ours or {}).get("describe", {}) or {}
    if mode.get("mode"):
        lines += ["", f"Our layer ran in mode `{mode['mode']}`."]
    return "\n".join(lines)


def _best(records: dict[str, dict], names) -> tuple[str | None, float | None]:
    ok = [(records[n]["median_s"], n) for n in names
          if n in records and records[n].get("status") == "ok"]
    if not ok:
        return None, None
    t, n = min(ok)
    return n, t


def targets(main: dict[str, dict[str, dict]], sweeps: dict) -> list[dict]:
    """Each target of issue 6 with its measured value and whether it is met."""
    rows = []

    def add(what, value, goal, met, note=""):
        rows.append({"target": what, "value": value, "goal": goal, "met": met, "note": note})

    def t_of(recs, n):
        r = recs.get(n) or {}
        return r.get("median_s") if r.get("status") == "ok" else None

    fly = main.get("fly", {})
    ours = t_of(fly, "ours")
    peer, tp = _best(fly, impls_mod.PEERS)
    if ours and tp:
        add("fly: ours ÷ fastest peer", ours / tp, "≤ 0.333", ours / tp <= 1 / 3,
            impls_mod.IMPLS[peer].label)
    ts = t_of(fly, "torch_sparse")
    if ours and ts:
        add("fly: ours ÷ torch-sparse", ours / ts, "≤ 0.125", ours / ts <= 1 / 8)
    if fly.get("ours", {}).get("status") == "ok":
        mem = fly["ours"]["step_peak_mb"]
        others = [r["step_peak_mb"] for n, r in fly.items() if n != "ours" and
                  r.get("status") == "ok"]
        add("fly: ours peak above input (GB)", mem / 1024, "≤ 0.6, lowest of all",
            mem / 1024 <= 0.6 and all(mem <= o for o in others))
    mid = main.get("mid", {})
    ours = t_of(mid, "ours")
    peer, tp = _best(mid, impls_mod.PEERS)
    if ours and tp:
        add("mid: ours ÷ fastest peer", ours / tp, "≤ 0.5", ours / tp <= 0.5,
            impls_mod.IMPLS[peer].label)
    td = t_of(mid, "dense_masked")
    if ours and td:
        add("mid: ours ÷ dense masked", ours / td, "≤ 0.1", ours / td <= 0.1)
    tri = main.get("tri", {})
    ours, td = t_of(tri, "ours"), t_of(tri, "dense_masked")
    if ours and td:
        add("tri: ours ÷ dense masked", ours / td, "≤ 1 (stretch 0.75)", ours / td <= 1.0,
            "stretch met" if ours / td <= 0.75 else "")
    if sweeps.get("nnz_slope") is not None:
        s = sweeps["nnz_slope"]
        add("log–log slope of step time vs nnz (1e5–1e8)", s, "0.9 – 1.1", 0.9 <= s <= 1.1)
    if sweeps.get("batch_slope") is not None:
        s = sweeps["batch_slope"]
        add("log–log slope of step time vs batch (batch ≥ 16)", s, "≈ 1 (linear)",
            0.8 <= s <= 1.1)
    if sweeps.get("thread_speedup") is not None:
        s = sweeps["thread_speedup"]
        add("fly: 2 threads ÷ 1 thread speed-up", s, "≥ 1.6", s >= 1.6)
    return rows


def targets_table(rows: list[dict]) -> str:
    lines = ["| target | measured | goal | met |", "|---|---:|---|---|"]
    for r in rows:
        met = "yes" if r["met"] else "**no**"
        note = f" ({r['note']})" if r["note"] else ""
        lines.append(f"| {r['target']}{note} | {r['value']:.3g} | {r['goal']} | {met} |")
    return "\n".join(lines)


def loglog_slope(xs: list[float], ys: list[float]) -> float | None:
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys, strict=True) if x > 0 and y and y > 0]
    if len(pts) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    if sxx == 0:
        return None
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx


def sweep_table(title: str, xname: str, rows: list[tuple]) -> str:
    """rows: (x, record) pairs."""
    lines = [f"**{title}**", "", f"| {xname} | step (median) | forward | backward | Adam "
             "| peak above input | bytes/edge at peak |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for x, r in rows:
        if r.get("status") == "ok":
            per_edge = r["step_peak_mb"] * 2**20 / r["spec"]["nnz"]
            lines.append(f"| {x} | {_fmt_s(r['median_s'])} | {_fmt_s(r['forward_s'])} | "
                         f"{_fmt_s(r['backward_s'])} | {_fmt_s(r['optimizer_s'])} | "
                         f"{_fmt_mb(r['step_peak_mb'])} | {per_edge:.0f} |")
        else:
            lines.append(f"| {x} | {r.get('note') or r.get('status')} | | | | | |")
    return "\n".join(lines)


def floor_table(floor_rows: list[dict]) -> str:
    lines = ["| workload | streamed | gathered | stream floor | + row gathers | flop floor "
             "| ours | ours ÷ best floor |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for f in floor_rows:
        best = max(f["gather_floor_s"], f["flop_floor_s"])
        ours = f.get("ours_s")
        lines.append(
            f"| {f['name']} | {f['streamed_gb']:.2f} GB | {f.get('gathered_gb', 0):.2f} GB | "
            f"{_fmt_s(f['stream_floor_s'])} | "
            f"{_fmt_s(f['gather_floor_s'])} | {_fmt_s(f['flop_floor_s'])} | {_fmt_s(ours)} | "
            f"{_ratio(ours, best)} |")
    return "\n".join(lines)
