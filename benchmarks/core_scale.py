"""Full training steps of SparseLinear at scale: the FlyWire-sized layer and a 1M x 1M layer.

Runs each workload in its own process and prints the median step time (forward, backward, Adam
step) and the peak process memory: over the whole process, and during the steps alone (the
high-water mark reset after the layer, optimizer and inputs exist).

    python benchmarks/core_scale.py                # both workloads
    python benchmarks/core_scale.py --only fly     # one
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

WORKLOADS = {  # name: (out, in, nnz, batch, peak target in GB)
    "fly": (138_639, 138_639, 15_091_983, 16, 1.5),
    "1M": (1_000_000, 1_000_000, 10_000_000, 32, 2.0),
}
GB = 1e9


def run_one(name: str, steps: int, warmup: int) -> dict:
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _memory import peak_bytes, reset_peak

    from sparselinear import Connectivity, SparseLinear

    n_out, n_in, nnz, batch, _ = WORKLOADS[name]
    t0 = time.perf_counter()
    connectivity = Connectivity.random(n_out, n_in, nnz=nnz, seed=0)
    build_s = time.perf_counter() - t0
    layer = SparseLinear(n_in, n_out, connectivity)
    del connectivity
    opt = torch.optim.Adam(layer.parameters(), lr=1e-3)
    x = torch.randn(batch, n_in)
    target = torch.randn(batch, n_out)
    build_peak = peak_bytes()
    reset_peak()
    times = []
    for i in range(warmup + steps):
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(layer(x), target)
        loss.backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - t)
    return {
        "workload": name,
        "shape": [n_out, n_in],
        "nnz": nnz,
        "batch": batch,
        "threads": torch.get_num_threads(),
        "build_s": build_s,
        "step_s_median": statistics.median(times),
        "step_s_all": times,
        "peak_step_gb": peak_bytes() / GB,
        "peak_process_gb": max(build_peak, peak_bytes()) / GB,
        "dense_weight_gb": n_out * n_in * 4 / GB,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(WORKLOADS))
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_one(args.child, args.steps, args.warmup)))
        return 0
    names = [args.only] if args.only else list(WORKLOADS)
    print(
        f"{'workload':8} {'shape':>21} {'nnz':>11} {'batch':>5} {'step s':>8} "
        f"{'peak GB':>8} {'target':>7} {'dense W GB':>10}"
    )
    ok = True
    for name in names:
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                name,
                "--steps",
                str(args.steps),
                "--warmup",
                str(args.warmup),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        target = WORKLOADS[name][4]
        ok &= r["peak_process_gb"] <= target
        shape = f"{r['shape'][0]:,}x{r['shape'][1]:,}"
        print(
            f"{name:8} {shape:>21} {r['nnz']:>11,} {r['batch']:>5} {r['step_s_median']:>8.3f} "
            f"{r['peak_process_gb']:>8.2f} {target:>7.1f} {r['dense_weight_gb']:>10,.1f}"
        )
        print(
            f"         (peak during the steps alone {r['peak_step_gb']:.2f} GB; pattern built in "
            f"{r['build_s']:.1f} s; {r['threads']} threads)"
        )
    print("peak memory within target" if ok else "PEAK MEMORY ABOVE TARGET")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
