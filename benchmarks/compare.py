"""Side-by-side training-step benchmark of sparselinear against the alternatives.

    python benchmarks/compare.py --all          # everything: tables, sweeps, floor, plots,
                                                # results JSON and the BENCHMARKS.md section
    python benchmarks/compare.py --workloads mid --impls ours,dense_masked
    python benchmarks/compare.py --tiny --all   # small stand-ins: checks the harness in ~2 min

Each measurement (implementation × workload) runs in its own process: a full training step
(forward, MSE loss, backward including the input gradient, Adam: torch's fused implementation
for every implementation unless ``--adam for-loop``), the median of several steps
after a warm-up, and the peak resident memory above the input data. Every implementation gets
the same pattern and the same initial weights, and its output and gradients are checked
against ours. Peers run in their own virtualenvs (``benchmarks/setup_peers.sh``); a peer that is
missing is reported, not fatal. Results are cached per measurement under
``benchmarks/results/cache/`` so an interrupted run resumes; ``--fresh`` starts over.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import implementations as impls_mod  # noqa: E402
import plots  # noqa: E402
import report  # noqa: E402
import runner  # noqa: E402
import workloads as wl_mod  # noqa: E402
from floor import floor_model  # noqa: E402

REPO = os.path.dirname(HERE)
DOC = os.path.join(REPO, "BENCHMARKS.md")
BEGIN = "<!-- BEGIN RESULTS: written by `python benchmarks/compare.py --all` -->"
END = "<!-- END RESULTS -->"
GB = 1 << 30


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--all", action="store_true",
                   help="all workloads, implementations and sweeps, the floor, plots, JSON "
                        "and the BENCHMARKS.md section")
    p.add_argument("--workloads", default="fly,mid,tri",
                   help="comma-separated main workloads (fly, mid, tri); '' for none")
    p.add_argument("--impls", default=",".join(impls_mod.IMPLS),
                   help=f"comma-separated implementations: {', '.join(impls_mod.IMPLS)}")
    p.add_argument("--sweeps", default="",
                   help="comma-separated sweeps of ours: threads, nnz, batch (--all: all)")
    p.add_argument("--sweep-impls", default="ours",
                   help="implementations measured in the sweeps (default: ours)")
    p.add_argument("--tiny", action="store_true", help="small stand-in sizes (harness check)")
    p.add_argument("--floor", action="store_true", help="measure bandwidth and the floor")
    p.add_argument("--fresh", action="store_true", help="ignore cached results")
    p.add_argument("--retry-failed", action="store_true",
                   help="re-run cached measurements that failed or timed out")
    p.add_argument("--budget-min", type=float, default=23.0,
                   help="stop starting measurements after this many minutes (default 23)")
    p.add_argument("--timeout", type=float, default=420.0,
                   help="time limit of one measurement in seconds (default 420)")
    p.add_argument("--mem-gb", type=float, default=None,
                   help="memory limit per measurement (default: 85%% of available, ≤ 20 GB)")
    p.add_argument("--steps", type=int, default=11, help="timed steps (at most; default 11)")
    p.add_argument("--warmup", type=int, default=1, help="warm-up steps (default 1)")
    p.add_argument("--rounds", type=int, default=None,
                   help="interleaved rounds of the main workloads for --round-impls: each "
                        "round runs every one of them once more in a new process, and their "
                        "steps are pooled (default 1; 3 with --all)")
    p.add_argument("--round-impls", default="ours,sparseprop,dense_masked,torch_sparse",
                   help="implementations repeated in every round (those the targets compare "
                        "with); the others run in the first round only")
    p.add_argument("--threads", type=int, default=2, help="threads of the main workloads")
    p.add_argument("--no-input-grad", action="store_true",
                   help="do not compute the gradient of the input (first-layer case)")
    p.add_argument("--adam", choices=("fused", "for-loop"), default="fused",
                   help="the same torch.optim.Adam for every implementation: 'fused' "
                        "(fused=True, one pass, the fastest on CPU; default) or 'for-loop' "
                        "(torch's default on CPU)")
    p.add_argument("--ours-mode", default=None,
                   help="pass mode=... to our SparseLinear (if it has one)")
    p.add_argument("--python", default=sys.executable,
                   help="Python for ours and the plain-PyTorch baselines")
    p.add_argument("--results", default=os.path.join(HERE, "results"),
                   help="directory for results.json, results.md and the plots")
    p.add_argument("--patterns", default=os.path.join(tempfile.gettempdir(),
                                                      "sparselinear-bench-patterns"),
                   help="directory for the shared pattern files (.npz)")
    p.add_argument("--peers-dir", default=os.environ.get("SPARSELINEAR_PEERS_DIR"),
                   help="where the peers' virtualenvs are (default benchmarks/.venv-peers, "
                        "or $SPARSELINEAR_PEERS_DIR), e.g. another checkout's")
    p.add_argument("--update-doc", action="store_true",
                   help="rewrite the results section of BENCHMARKS.md (default with --all)")
    p.add_argument("--no-doc", action="store_true", help="never touch BENCHMARKS.md")
    p.add_argument("--no-plots", action="store_true")
    args = p.parse_args(argv)
    if args.rounds is None:
        args.rounds = 3 if args.all else 1
    if args.all:
        args.sweeps = args.sweeps or "threads,nnz,batch"
        args.floor = True
        args.update_doc = not args.no_doc and not args.tiny
    return args


def _list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def plan(args) -> tuple[list, dict]:
    """``[(section, x, workload, impls)]`` in the order they run, and the main workloads."""
    mains = wl_mod.tiny_workloads(args.threads) if args.tiny else \
        wl_mod.main_workloads(args.threads)
    by_name = {w.name.replace("-tiny", ""): w for w in mains}
    chosen = _list(args.workloads)
    for c in chosen:
        if c not in by_name:
            raise SystemExit(f"unknown workload {c!r}; choose from {', '.join(by_name)}")
    impls = _list(args.impls)
    for i in impls + _list(args.sweep_impls):
        if i not in impls_mod.IMPLS:
            raise SystemExit(f"unknown implementation {i!r}; choose from "
                             f"{', '.join(impls_mod.IMPLS)}")
    impls = ["ours"] + [i for i in impls if i != "ours"] if "ours" in impls else impls
    runs = [("main", c, by_name[c], impls) for c in chosen]
    sweeps = _list(args.sweeps)
    s_impls = _list(args.sweep_impls)
    fly = by_name["fly"]

    def like_fly(**kw):
        d = {**fly.to_json(), **kw}
        d["tags"] = tuple(d["tags"])
        return wl_mod.Workload(**d)

    if "threads" in sweeps:
        for t in (1, 2):
            name = fly.name if t == args.threads else f"{fly.name}-t{t}"
            runs.append(("threads", t, like_fly(name=name, threads=t), s_impls))
    if "nnz" in sweeps:
        points = (3e4, 1e5, 3e5, 1e6) if args.tiny else \
            (1e5, 3e5, 1e6, 3e6, 1e7, 3e7, 1e8)
        for w in wl_mod.nnz_sweep(points, batch=fly.batch):
            w = wl_mod.Workload(**{**w.to_json(), "threads": args.threads,
                                   "tags": tuple(w.tags)})
            runs.append(("nnz", w.nnz, w, s_impls))
    if "batch" in sweeps:
        for b in (1, 2, 4, 8, 16, 32, 64, 128):
            name = fly.name if b == fly.batch else f"{fly.name}-b{b}"
            runs.append(("batch", b, like_fly(name=name, batch=b), s_impls))
    unknown = set(sweeps) - {"threads", "nnz", "batch"}
    if unknown:
        raise SystemExit(f"unknown sweep(s) {sorted(unknown)}; choose threads, nnz, batch")
    return runs, by_name


def machine_info() -> dict:
    model = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"model name\s*:\s*(.*)", f.read())
            model = m.group(1).strip() if m else model
    except OSError:
        pass
    mem = 0.0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) / 2**20
    return {"cpu": model, "cores": os.cpu_count(), "mem_gb": round(mem, 1),
            "python": platform.python_version(), "platform": platform.platform()}


def torch_version(python: str) -> str:
    try:
        out = subprocess.run([python, "-c", "import torch; print(torch.__version__)"],
                             capture_output=True, text=True, timeout=120)
        return out.stdout.strip() or "?"
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def measure_floor(python: str, mains: list, threads: int) -> dict | None:
    shapes = [{"name": w.name, "n_in": w.n_in, "n_out": w.n_out, "nnz": w.nnz,
               "batch": w.batch} for w in mains]
    threads_list = sorted({1, threads})
    code = (f"import sys, json; sys.path.insert(0, {HERE!r}); import floor; "
            f"print('RESULT ' + json.dumps(floor.measure(json.loads(sys.argv[1]), "
            f"{tuple(threads_list)!r})))")
    try:
        out = subprocess.run([python, "-c", code, json.dumps(shapes)], capture_output=True,
                             text=True, timeout=300)
    except subprocess.TimeoutExpired:
        return None
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    print(f"floor measurement failed: {out.stderr[-500:]}", file=sys.stderr)
    return None


def summarise(results: dict) -> dict:
    """Slopes and speed-ups of the sweeps."""
    s: dict = {}
    nnz = [(x, r) for x, r in results["sweeps"].get("nnz", []) if r.get("status") == "ok"]
    if len(nnz) >= 2:
        s["nnz_slope"] = report.loglog_slope([x for x, _ in nnz], [r["median_s"] for _, r in nnz])
    bat = [(x, r) for x, r in results["sweeps"].get("batch", [])
           if r.get("status") == "ok" and x >= 16]
    if len(bat) >= 2:
        s["batch_slope"] = report.loglog_slope([x for x, _ in bat],
                                               [r["median_s"] for _, r in bat])
    th = {x: r for x, r in results["sweeps"].get("threads", []) if r.get("status") == "ok"}
    if 1 in th and 2 in th:
        s["thread_speedup"] = th[1]["median_s"] / th[2]["median_s"]
    return s


ADAM_TEXT = {
    "fused": "Adam (`torch.optim.Adam(fused=True)` for every implementation: one pass over "
             "the parameters, no temporaries, the fastest Adam torch has on CPU)",
    "for-loop": "Adam (torch's default on CPU, the for-loop implementation, for every "
                "implementation)",
}


def render(results: dict, plot_paths: dict) -> str:
    """The markdown results section."""
    m = results["machine"]
    lines = [
        f"Run of {results['date']} (`{results['command']}`), {results['elapsed_min']:.1f} min.",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['mem_gb']} GB RAM; torch "
        f"{results['torch']}, Python {m['python']}. Load average (1/5/15 min) at start "
        f"{results['load_start']}, at end {results['load_end']}"
        " — other jobs running at the same time make every number slower and noisier.",
        "",
        "Step = forward + MSE loss + backward"
        f"{' (with input gradient)' if results['input_grad'] else ''} + "
        f"{ADAM_TEXT[results.get('adam', 'for-loop')]}; median of up "
        f"to {results['steps']} steps after {results['warmup']} warm-up step(s)"
        + (f", pooled over {results['rounds']} interleaved rounds (a new process each) for "
           f"{', '.join(results['round_impls'])} on the main workloads — the machine's speed "
           "drifts over minutes, so single back-to-back runs can favour either side. "
           if results.get("rounds", 1) > 1 else ". ") +
        "Peak = highest resident memory above the input data (pattern arrays, input, target), "
        "during training. \"same result\": output, input gradient and per-edge weight "
        f"gradient agree with ours to {report.CHECK_RTOL:g} (relative).",
        "",
    ]
    for name, recs in results["main"].items():
        lines += [report.workload_table(name, recs), ""]
    if plot_paths.get("comparison"):
        lines += [f"![step time per implementation]({plot_paths['comparison']})", ""]
    summary = results["summary"]
    rows = report.targets(results["main"], summary)
    if rows:
        lines += ["### Targets (issue 6)", "", report.targets_table(rows), ""]
    sw = results["sweeps"]
    if sw.get("threads"):
        lines += [report.sweep_table("Threads (fly)", "threads", sw["threads"]), ""]
    if sw.get("nnz"):
        slope = summary.get("nnz_slope")
        title = ("Step time against nnz (square layers of mean fan-in ≈ 109, batch "
                 f"{sw['nnz'][0][1]['spec']['batch']})"
                 + (f" — log–log slope {slope:.2f}" if slope is not None else ""))
        lines += [report.sweep_table(title, "nnz", [(f"{x:,}", r) for x, r in sw["nnz"]]), ""]
        if plot_paths.get("nnz"):
            lines += [f"![step time and memory against nnz]({plot_paths['nnz']})", ""]
    if sw.get("batch"):
        slope = summary.get("batch_slope")
        title = "Step time against batch size (fly)" + (
            f" — log–log slope {slope:.2f} for batch ≥ 16" if slope is not None else "")
        lines += [report.sweep_table(title, "batch", sw["batch"]), ""]
        if plot_paths.get("batch"):
            lines += [f"![step time and memory against batch]({plot_paths['batch']})", ""]
    if results.get("floor"):
        f = results["floor"]
        lines += [
            "### The floor", "",
            f"Measured here: copy bandwidth {f['copy_gbs'].get('1', 0):.1f} GB/s (1 thread), "
            f"{f['copy_gbs'].get(str(f['threads']), 0):.1f} GB/s ({f['threads']} threads); "
            f"dense fp32 matmul {f['matmul_gflops'].get(str(f['threads']), 0):.0f} GFLOP/s. "
            "Model and method: `benchmarks/floor.py`.", "",
            report.floor_table(results["floor_rows"]), "",
        ]
    return "\n".join(lines)


def make_plots(results: dict, directory: str, suffix: str) -> dict:
    """The PNGs, as paths relative to the repository (for markdown links)."""
    paths = {}
    sw = results["sweeps"]
    rel = os.path.relpath(directory, REPO)
    for key, xlabel, title in (("nnz", "nnz (edges)", "ours: step time and memory vs nnz"),
                               ("batch", "batch size", "ours on fly: vs batch size")):
        if sw.get(key):
            p = plots.sweep_plot(sw[key], xlabel, title,
                                 os.path.join(directory, f"sweep_{key}{suffix}.png"))
            if p:
                paths[key] = f"{rel}/{os.path.basename(p)}"
    labels = {n: i.label for n, i in impls_mod.IMPLS.items()}
    p = plots.comparison_plot(results["main"], labels,
                              os.path.join(directory, f"comparison{suffix}.png"))
    if p:
        paths["comparison"] = f"{rel}/{os.path.basename(p)}"
    return paths


def update_doc(section: str) -> bool:
    if not os.path.exists(DOC):
        return False
    with open(DOC) as f:
        text = f.read()
    if BEGIN not in text or END not in text:
        return False
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    with open(DOC, "w") as f:
        f.write(head + BEGIN + "\n" + section.rstrip() + "\n" + END + tail)
    return True


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    t_start = time.time()
    deadline = t_start + 60 * args.budget_min
    runs, mains = plan(args)
    round_impls = set(_list(args.round_impls))
    if args.peers_dir:
        runner.PEERS_DIR = os.path.abspath(args.peers_dir)
    cache = os.path.join(args.results, "cache" + ("-tiny" if args.tiny else ""))
    if args.fresh and os.path.isdir(cache):
        shutil.rmtree(cache)
    avail = runner.mem_available_bytes()
    mem_limit = args.mem_gb * GB if args.mem_gb else min(0.85 * avail, 20 * GB)
    settings = runner.Settings(
        python=args.python, cache_dir=cache, pattern_dir=args.patterns,
        mem_limit_bytes=mem_limit, warmup=args.warmup, steps=args.steps,
        timeout_s=args.timeout, input_grad=not args.no_input_grad, ours_mode=args.ours_mode,
        adam=args.adam,
        retry_failed=args.retry_failed,
    )
    results: dict = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "python benchmarks/compare.py " + " ".join(
            sys.argv[1:] if argv is None else argv),
        "machine": machine_info(), "torch": torch_version(args.python),
        "load_start": [round(v, 2) for v in os.getloadavg()],
        "mem_limit_gb": round(mem_limit / GB, 1), "input_grad": settings.input_grad,
        "adam": settings.adam,
        "steps": args.steps, "warmup": args.warmup, "rounds": args.rounds,
        "round_impls": sorted(round_impls),
        "main": {}, "sweeps": {}, "floor": None, "floor_rows": [],
    }
    print(f"memory limit per measurement: {mem_limit / GB:.1f} GB; time budget "
          f"{args.budget_min:g} min", file=sys.stderr)
    if args.floor:
        print("measuring bandwidth for the floor ...", file=sys.stderr, flush=True)
        results["floor"] = measure_floor(args.python, list(mains.values()), args.threads)
    for section, x, w, impl_names in runs:
        t = time.time()
        path = wl_mod.pattern_file(w, args.patterns)
        if time.time() - t > 1:
            print(f"  pattern {w.name}: {time.time() - t:.0f} s", file=sys.stderr)
        print(f"[{section}] {w.name}: {report.workload_title(w.to_json())}", file=sys.stderr,
              flush=True)
        rounds = args.rounds if section == "main" else 1
        per_impl: dict[str, list[dict]] = {impl: [] for impl in impl_names}
        for r in range(rounds):
            for impl in impl_names:
                if r > 0 and impl not in round_impls:
                    continue
                rec = runner.measure(impl, w, path, settings, deadline, round_index=r)
                if rec.get("cached"):
                    print(f"    {impl:<18} cached: {rec.get('median_s', rec.get('note'))}",
                          file=sys.stderr)
                per_impl[impl].append(rec)
        for impl in impl_names:
            rec = runner.pool_rounds(per_impl[impl])
            if section == "main":
                results["main"].setdefault(x, {})[impl] = rec
            elif impl == "ours":
                results["sweeps"].setdefault(section, []).append((x, rec))
            else:
                results["sweeps"].setdefault(f"{section}:{impl}", []).append((x, rec))
    results["summary"] = summarise(results)
    if results["floor"]:
        for name, recs in results["main"].items():
            w = mains[name]
            row = {"name": name, **floor_model(results["floor"], {**w.to_json(),
                                                                   "name": w.name})}
            if recs.get("ours", {}).get("status") == "ok":
                row["ours_s"] = recs["ours"]["median_s"]
            results["floor_rows"].append(row)
    results["load_end"] = [round(v, 2) for v in os.getloadavg()]
    results["elapsed_min"] = (time.time() - t_start) / 60
    os.makedirs(args.results, exist_ok=True)
    suffix = "-tiny" if args.tiny else ""
    plot_paths: dict = {}
    if not args.no_plots:
        try:
            plot_paths = make_plots(results, args.results, suffix)
        except ImportError as exc:
            print(f"no plots: {exc}", file=sys.stderr)
    section = render(results, plot_paths)
    with open(os.path.join(args.results, f"results{suffix}.json"), "w") as f:
        json.dump(results, f, indent=1, default=str)
    with open(os.path.join(args.results, f"results{suffix}.md"), "w") as f:
        f.write(section + "\n")
    print("\n" + section)
    if args.update_doc and not args.no_doc:
        print("BENCHMARKS.md updated" if update_doc(section)
              else "BENCHMARKS.md has no results markers: not updated", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
