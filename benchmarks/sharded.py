"""A row-sharded layer on 1, 2 and 4 local gloo ranks: per-rank peak memory, step time and
bytes sent per step, in one run.

Each world size runs in its own group of processes (``torch.multiprocessing``); every rank
builds only its rows (``RandomBlocks``, seeded per row block), then times full training steps
(forward, backward, Adam) on a replicated input whose gradient is all-reduced.

    python benchmarks/sharded.py                       # 1,000,000^2, 40 M edges, batch 32
    python benchmarks/sharded.py --scale 0.01          # 10,000^2 with 400 k edges: a check
    python benchmarks/sharded.py --ranks 1 2 --json out.json

Peak memory is each process's resident high-water mark during the steps (after the layer,
optimizer state and inputs exist) plus what it held before; ``--threads`` sets the intra-op
threads of each rank (default: cores // ranks).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FULL = (1_000_000, 1_000_000, 40_000_000, 32)  # out, in, nnz, batch


def _rank(rank: int, world: int, port: int, cfg: dict, out: str) -> None:
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import torch
    import torch.distributed as dist
    from _memory import current_bytes, peak_bytes, reset_peak

    from sparselinear.distributed import RandomBlocks, ShardedSparseLinear

    torch.set_num_threads(cfg["threads"])
    baseline = current_bytes()  # torch, gloo and the library, before the layer exists
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world, timeout=datetime.timedelta(minutes=30))
    n_out, n_in, nnz, batch = cfg["shape"]
    t0 = time.perf_counter()
    layer = ShardedSparseLinear(n_in, n_out, RandomBlocks(n_out, n_in, nnz=nnz, seed=0),
                                mode="sparse")
    build_s = time.perf_counter() - t0
    opt = torch.optim.Adam(layer.parameters(), fused=True)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, n_in, generator=g).requires_grad_()
    target = torch.randn(batch, layer.local.out_features, generator=g)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        x.grad = None
        torch.nn.functional.mse_loss(layer(x), target).backward()
        opt.step()

    for _ in range(cfg["warmup"]):
        step()
    dist.barrier()
    before = current_bytes()
    reset_peak()
    times, sent = [], []
    for _ in range(cfg["steps"]):
        layer.comm.bytes_sent = 0
        dist.barrier()
        t = time.perf_counter()
        step()
        dist.barrier()
        times.append(time.perf_counter() - t)
        sent.append(layer.bytes_sent)
    result = {
        "rank": rank, "world": world, "rows": list(layer.rows), "local_nnz": layer.local.nnz,
        "build_s": build_s, "step_s": statistics.median(times), "bytes_sent": sent[-1],
        "peak_bytes": peak_bytes(), "held_before_steps": before, "baseline_bytes": baseline,
    }
    Path(out, f"{world}-{rank}.json").write_text(json.dumps(result))
    dist.destroy_process_group()


def run_world(world: int, cfg: dict, out: str) -> list[dict]:
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.start_processes(_rank, args=(world, port, cfg, out), nprocs=world, join=True,
                       start_method="spawn")
    return [json.loads(Path(out, f"{world}-{r}.json").read_text()) for r in range(world)]


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=float, default=1.0,
                   help="multiply rows, columns and edges (0.01: a quick check)")
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--batch", type=int, default=FULL[3])
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="per rank; 0: cores // ranks")
    p.add_argument("--json", type=Path, help="write the results here")
    args = p.parse_args(argv)
    n = max(int(FULL[0] * args.scale), max(args.ranks))
    nnz = int(FULL[2] * args.scale)
    results = {"shape": [n, n], "nnz": nnz, "batch": args.batch, "worlds": {}}
    with tempfile.TemporaryDirectory() as out:
        for world in args.ranks:
            threads = args.threads or max(1, (os.cpu_count() or 1) // world)
            cfg = {"shape": (n, n, nnz, args.batch), "steps": args.steps,
                   "warmup": args.warmup, "threads": threads}
            results["worlds"][world] = run_world(world, cfg, out)
    def above(r: dict) -> int:
        return r["peak_bytes"] - r["baseline_bytes"]

    ones = results["worlds"].get(1)
    single = (max(r["peak_bytes"] for r in ones), max(above(r) for r in ones)) if ones else None
    print(f"{n:,} x {n:,}, {nnz:,} edges, batch {args.batch}, Adam (fused), gloo")
    print("ranks  peak/rank  vs 1 rank  above baseline  vs 1 rank  step (median)  "
          "sent/rank/step  edges/rank")
    for world, ranks in results["worlds"].items():
        peak, extra = max(r["peak_bytes"] for r in ranks), max(above(r) for r in ranks)
        ratios = [f"{a / b:.2f}x" if single else "-"
                  for a, b in zip((peak, extra), single or (1, 1))]
        step = max(r["step_s"] for r in ranks)
        sent = max(r["bytes_sent"] for r in ranks)
        print(f"{world:>5}  {peak / 1e9:>6.2f} GB  {ratios[0]:>9}  {extra / 1e9:>11.2f} GB  "
              f"{ratios[1]:>9}  {step:>11.3f} s  {sent / 1e6:>11.1f} MB  "
              f"{max(r['local_nnz'] for r in ranks):>10,}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
