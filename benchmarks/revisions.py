"""Before/after benchmark of two revisions of sparselinear, side by side in one run.

    python benchmarks/revisions.py --before 1cea474                 # vs the working tree
    python benchmarks/revisions.py --before v0.1 --after HEAD --workloads fly,mid,tri --rounds 3

Each round runs every workload once with each revision, alternating which goes first, each
measurement in its own process (the harness's ``worker.py``: a full training step with torch's
fused Adam, the median of up to ``--steps`` steps after a warm-up, and the peak above the input
data). A revision other than the working tree is checked out into a temporary git worktree;
its compiled kernels are built on first use like any checkout's. The report gives each
revision's pooled median, the per-round medians, the after ÷ before ratio and the peaks, and is
written to ``benchmarks/results/revisions/`` as JSON and Markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import runner  # noqa: E402
import workloads as wl_mod  # noqa: E402

REPO = os.path.dirname(HERE)
GB = 1 << 30


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--before", required=True, help="git revision measured as 'before'")
    p.add_argument("--after", default=None,
                   help="git revision measured as 'after' (default: the working tree)")
    p.add_argument("--workloads", default="fly,mid,tri", help="comma-separated main workloads")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--steps", type=int, default=11, help="timed steps per measurement")
    p.add_argument("--threads", type=int, default=2, help="threads (default 2)")
    p.add_argument("--timeout", type=float, default=420.0, help="seconds per measurement")
    p.add_argument("--patterns", default=os.path.join(tempfile.gettempdir(),
                                                      "sparselinear-patterns"))
    p.add_argument("--results", default=os.path.join(HERE, "results", "revisions"))
    return p.parse_args(argv)


def checkout(rev: str, into: str) -> str:
    """A detached worktree of ``rev`` under ``into``; returns its path."""
    sha = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", rev], check=True,
                         capture_output=True, text=True).stdout.strip()
    path = os.path.join(into, f"rev-{sha}")
    subprocess.run(["git", "-C", REPO, "worktree", "add", "--detach", "-f", path, sha],
                   check=True, capture_output=True)
    return path


def describe(rev: str | None) -> str:
    if rev is None:
        head = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "sparselinear"],
                               capture_output=True, text=True).stdout.strip()
        return f"working tree ({head}{', modified' if dirty else ''})"
    return subprocess.run(["git", "-C", REPO, "rev-parse", "--short", rev],
                          capture_output=True, text=True).stdout.strip()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    names = [n for n in args.workloads.split(",") if n]
    mains = {w.name: w for w in wl_mod.main_workloads(args.threads)}
    unknown = [n for n in names if n not in mains]
    if unknown:
        raise SystemExit(f"unknown workloads {unknown}; choose from {sorted(mains)}")
    settings = runner.Settings(
        python=sys.executable, cache_dir="", pattern_dir=args.patterns,
        mem_limit_bytes=min(0.85 * runner.mem_available_bytes(), 20 * GB),
        steps=args.steps, timeout_s=args.timeout, verbose=False,
    )
    labels = {"before": describe(args.before), "after": describe(args.after)}
    records: dict = {n: {"before": [], "after": []} for n in names}
    with tempfile.TemporaryDirectory() as tmp:
        repos = {"before": checkout(args.before, tmp),
                 "after": REPO if args.after is None else checkout(args.after, tmp)}
        try:
            for r in range(args.rounds):
                order = ("before", "after") if r % 2 == 0 else ("after", "before")
                for name in names:
                    w = mains[name]
                    path = wl_mod.pattern_file(w, args.patterns)
                    for side in order:
                        spec = {"impl": "ours", "pattern": path, "batch": w.batch,
                                "threads": w.threads, "warmup": settings.warmup,
                                "steps": settings.steps, "min_steps": settings.min_steps,
                                "max_seconds": settings.max_seconds, "input_grad": True,
                                "seed": w.seed, "options": None, "adam": settings.adam,
                                "round": r}
                        log = os.path.join(tmp, f"{name}-{side}-{r}.log")
                        rec = runner._run_child(sys.executable, "ours", spec, log,
                                                settings.timeout_s, settings, repo=repos[side])
                        records[name][side].append(rec)
                        shown = (f"{rec['median_s'] * 1e3:.1f} ms, +{rec['step_peak_mb']:.0f} MB"
                                 if rec.get("status") == "ok" else rec.get("note"))
                        print(f"round {r + 1} {name:<4} {side:<6} {shown}", file=sys.stderr,
                              flush=True)
        finally:
            for path in repos.values():
                if path != REPO:
                    subprocess.run(["git", "-C", REPO, "worktree", "remove", "--force", path],
                                   capture_output=True)
    return report(args, labels, records)


def _pooled(recs: list[dict]) -> dict | None:
    ok = [r for r in recs if r.get("status") == "ok"]
    if not ok:
        return None
    times = [t for r in ok for t in r["times_s"]]
    return {"median_ms": statistics.median(times) * 1e3,
            "round_medians_ms": [round(r["median_s"] * 1e3, 1) for r in ok],
            "peak_mb": max(r["step_peak_mb"] for r in ok), "rounds": len(ok)}


def report(args: argparse.Namespace, labels: dict, records: dict) -> int:
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [f"# Before/after: {labels['before']} -> {labels['after']}", "",
             f"{date}; {args.rounds} interleaved rounds, {args.threads} threads, "
             f"up to {args.steps} steps per measurement; fused Adam.", "",
             "| workload | before ms/step | after ms/step | after ÷ before | before rounds "
             "| after rounds | peak MB before / after |", "|---|---|---|---|---|---|---|"]
    summary = {}
    for name, sides in records.items():
        b, a = _pooled(sides["before"]), _pooled(sides["after"])
        summary[name] = {"before": b, "after": a}
        if b is None or a is None:
            shown = ["failed" if s is None else f"{s['median_ms']:.1f}" for s in (b, a)]
            lines.append(f"| {name} | {shown[0]} | {shown[1]} | | | | |")
            continue
        ratio = a["median_ms"] / b["median_ms"]
        summary[name]["ratio"] = ratio
        lines.append(f"| {name} | {b['median_ms']:.1f} | {a['median_ms']:.1f} | {ratio:.3f} | "
                     f"{b['round_medians_ms']} | {a['round_medians_ms']} | "
                     f"{b['peak_mb']:.0f} / {a['peak_mb']:.0f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    os.makedirs(args.results, exist_ok=True)
    stem = os.path.join(args.results, time.strftime("%Y%m%d-%H%M", time.gmtime()))
    with open(stem + ".json", "w") as f:
        json.dump({"date": date, "labels": labels, "rounds": args.rounds,
                   "summary": summary, "records": records}, f, indent=1)
    with open(stem + ".md", "w") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
