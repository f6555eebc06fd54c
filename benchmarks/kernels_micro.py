"""Micro-benchmark of one training step of ``sparselinear.SparseLinear`` per kernel choice.

Each implementation runs in its own process on the same pattern: forward, backward and an Adam
step, median of ``--steps`` steps after ``--warmup``, with the time of each phase and the peak
resident memory above the input data (the peak is reset after the pattern is built, so
construction temporaries do not count), and the CPU time of all threads per step (steadier than
wall time on a machine shared with other jobs). Also measures the machine's memory bandwidth
and prints the floor: the bytes one step must move divided by that bandwidth.

Usage::

    python benchmarks/kernels_micro.py --workload fly
    python benchmarks/kernels_micro.py --workload tri --impls torch extension dense auto
    python benchmarks/kernels_micro.py --out 100000 --in 100000 --nnz 1000000 --batch 32

Implementations: ``torch`` (pure-PyTorch CSR kernels: the path before the compiled kernels),
``extension`` (compiled kernels, sparse mode), ``dense`` (dense-band mode), ``auto`` (what the
layer picks), ``masked`` (a dense ``nn.Linear`` with a 0/1 mask multiplied in forward).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKLOADS = {
    "fly": {"out": 138_639, "in": 138_639, "nnz": 15_091_983, "batch": 16, "pattern": "random"},
    "mid": {"out": 8192, "in": 8192, "nnz": 671_089, "batch": 256, "pattern": "random"},
    "tri": {"out": 2048, "in": 2048, "nnz": None, "batch": 256, "pattern": "tril"},
}


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _reset_peak() -> None:
    """Return freed heap to the system (construction temporaries), then reset the peak RSS."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _pattern(spec: dict, seed: int):
    import torch

    from sparselinear import Connectivity

    if spec["pattern"] == "tril":
        rows, cols = torch.tril_indices(spec["out"], spec["in"])
        return Connectivity(torch.stack([rows, cols]), shape=(spec["out"], spec["in"]))
    return Connectivity.random(spec["out"], spec["in"], nnz=spec["nnz"], seed=seed)


def child(spec: dict, impl: str, steps: int, warmup: int, threads: int | None,
          fused_adam: bool = False) -> dict:
    """Run the steps of one implementation in this process and return its measurements."""
    sys.path.insert(0, str(ROOT))
    import torch

    from sparselinear import SparseLinear, kernels

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    x = torch.randn(spec["batch"], spec["in"])
    target = torch.randn(spec["batch"], spec["out"])
    base = _rss_kb("VmRSS")
    conn = _pattern(spec, seed=0)
    if impl == "masked":
        mask = conn.to_dense().float()
        layer = torch.nn.Linear(spec["in"], spec["out"])

        def model(inp):
            return torch.nn.functional.linear(inp, layer.weight * mask, layer.bias)

        params = list(layer.parameters())
    else:
        kernels.set_backend("torch" if impl == "torch" else "auto")
        mode = {"torch": "sparse", "extension": "sparse"}.get(impl, impl)
        layer = SparseLinear(spec["in"], spec["out"], conn, mode=mode)
        model, params = layer, list(layer.parameters())
    del conn
    opt = torch.optim.Adam(params, lr=1e-3, fused=fused_adam or None)
    _reset_peak()
    times = {"forward": [], "backward": [], "adam": [], "step": [], "cpu": []}
    for i in range(warmup + steps):
        c0 = time.process_time()
        t0 = time.perf_counter()
        loss = (model(x) - target).pow(2).mean()
        t1 = time.perf_counter()
        opt.zero_grad()
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        t3 = time.perf_counter()
        c3 = time.process_time()
        if i >= warmup:
            spans = (t1 - t0, t2 - t1, t3 - t2, t3 - t0, c3 - c0)
            for key, value in zip(times, spans, strict=True):
                times[key].append(value)
    result = {k: statistics.median(v) for k, v in times.items()}
    result["peak_mb"] = (_rss_kb("VmHWM") - base) / 1024
    result["mode"] = layer.extra_repr().split("mode=")[-1] if impl != "masked" else "-"
    return result


def bandwidth_gbs(mbytes: int = 512) -> float:
    """Copy bandwidth (read + write) of this machine with torch's threads, in GB/s."""
    import torch

    a = torch.empty(mbytes << 18)  # float32: 4 bytes each
    b = torch.empty_like(a)
    a.fill_(1.0)
    b.copy_(a)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        b.copy_(a)
        best = min(best, time.perf_counter() - t0)
    return 2 * a.numel() * a.element_size() / best / 1e9


def floor_bytes(out: int, n_in: int, nnz: int, batch: int, index_bytes: int = 4) -> int:
    """Bytes a float32 step must move at least, with batch vectors re-read from memory for every
    edge once they exceed the last-level cache (the case at ``fly`` size):

    forward ``col, w`` + one batch vector per edge; backward ``col, w, grad w`` + one batch
    vector read (x) and one read-modify-write (grad x) per edge; Adam reads and writes
    ``w, grad, m, v``.
    """
    vec = 4 * batch
    forward = nnz * (index_bytes + 4 + vec) + out * vec
    backward = nnz * (index_bytes + 4 + 4 + 3 * vec) + out * vec
    adam = nnz * 4 * 7
    return forward + backward + adam


def _child_cmd(args, impl: str, spec: dict) -> list[str]:
    cmd = [sys.executable, __file__, "--child", impl, "--workload", args.workload,
           "--steps", str(args.steps), "--warmup", str(args.warmup),
           "--threads", str(args.threads)] + (["--fused-adam"] if args.fused_adam else [])
    for key, flag in (("out", "--out"), ("in", "--in"), ("nnz", "--nnz"), ("batch", "--batch")):
        if spec[key] is not None:
            cmd += [flag, str(spec[key])]
    return cmd


def sweep(args, sizes: list[int]) -> int:
    """Step time of ``args.impls[0]`` against nnz on the workload's shape; prints the slope."""
    import math

    spec = dict(WORKLOADS[args.workload])
    if args.out:
        spec["out"] = args.out
    if args.n_in:
        spec["in"] = args.n_in
    if args.batch:
        spec["batch"] = args.batch
    spec["pattern"] = "random"
    impl = args.impls[0]
    print(f"nnz sweep, {impl}: {spec['out']} x {spec['in']}, batch {spec['batch']}")
    points = []
    for nnz in sizes:
        spec["nnz"] = nnz
        done = subprocess.run(_child_cmd(args, impl, spec), capture_output=True, text=True)
        if done.returncode != 0:
            print(f"nnz {nnz:,}: failed\n{done.stderr[-1000:]}")
            continue
        r = json.loads(done.stdout.strip().splitlines()[-1])
        points.append((nnz, r["step"]))
        print(f"nnz {nnz:>12,}  step {r['step'] * 1e3:9.1f} ms  "
              f"{r['step'] / nnz * 1e9:6.1f} ns/edge  peak {r['peak_mb']:8.1f} MB")
    if len(points) > 1:
        xs = [math.log(n) for n, _ in points]
        ys = [math.log(t) for _, t in points]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        slope = sum((a - mx) * (b - my) for a, b in zip(xs, ys, strict=True)) / sum(
            (a - mx) ** 2 for a in xs
        )
        print(f"log-log slope of step time against nnz: {slope:.2f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=sorted(WORKLOADS), default="fly")
    parser.add_argument("--out", type=int)
    parser.add_argument("--in", dest="n_in", type=int)
    parser.add_argument("--nnz", type=int)
    parser.add_argument("--batch", type=int)
    parser.add_argument("--impls", nargs="+", default=["torch", "extension"])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--sweep", nargs="+", type=float, metavar="NNZ",
                        help="run the first impl at each of these nnz and fit the log-log slope")
    parser.add_argument("--fused-adam", action="store_true",
                        help="torch.optim.Adam(fused=True) (one pass, no temporaries)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    spec = dict(WORKLOADS[args.workload])
    for key, value in (("out", args.out), ("in", args.n_in), ("nnz", args.nnz),
                       ("batch", args.batch)):
        if value is not None:
            spec[key] = value
            if key == "nnz":
                spec["pattern"] = "random"
    if args.child:
        print(json.dumps(child(spec, args.child, args.steps, args.warmup, args.threads,
                                      args.fused_adam)))
        return 0
    if args.sweep:
        return sweep(args, [int(n) for n in args.sweep])
    nnz = spec["nnz"] or spec["out"] * (spec["out"] + 1) // 2
    print(f"workload {args.workload}: {spec['out']} x {spec['in']}, nnz {nnz:,}, "
          f"batch {spec['batch']}, threads {args.threads or os.cpu_count()}")
    rows = {}
    for impl in args.impls:
        done = subprocess.run(_child_cmd(args, impl, spec), capture_output=True, text=True)
        if done.returncode != 0:
            print(f"{impl}: failed\n{done.stderr[-2000:]}")
            continue
        rows[impl] = json.loads(done.stdout.strip().splitlines()[-1])
    gbs = bandwidth_gbs()
    floor = floor_bytes(spec["out"], spec["in"], nnz, spec["batch"]) / (gbs * 1e9)
    print(f"memory bandwidth (copy) {gbs:.1f} GB/s; floor {floor * 1e3:.1f} ms per step")
    header = f"{'impl':<10} {'mode':<14} {'step ms':>9} {'fwd':>8} {'bwd':>8} {'adam':>8} " \
             f"{'cpu ms':>8} {'peak MB':>9} {'B/edge':>7} {'x floor':>8}"
    print(header)
    for impl, r in rows.items():
        print(f"{impl:<10} {r['mode']:<14} {r['step'] * 1e3:9.1f} {r['forward'] * 1e3:8.1f} "
              f"{r['backward'] * 1e3:8.1f} {r['adam'] * 1e3:8.1f} {r['cpu'] * 1e3:8.1f} "
              f"{r['peak_mb']:9.1f} "
              f"{r['peak_mb'] * 2**20 / max(nnz, 1):7.1f} {r['step'] / floor:8.1f}")
    if len(rows) > 1:
        first = next(iter(rows))
        for impl, r in rows.items():
            if impl != first:
                print(f"{first} / {impl}: {rows[first]['step'] / r['step']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
