"""A row-sharded layer on 1, 2 and 4 local gloo ranks: per-rank peak memory, step time and
bytes sent per step, in one run.

Each world size runs in its own group of processes (``torch.multiprocessing``); every rank
builds only its rows (``RandomBlocks``, seeded per row block), then times full training steps
(forward, backward, Adam), first with a row-sharded input (what a stack of sharded layers or a
sharded recurrent step passes on: each rank holds its rows of it, multiplied piece by piece
around the ring, its gradient reduced the same way), then with an input replicated on every
rank (its gradient all-reduced); ``--inputs`` picks one.

    python benchmarks/sharded.py                       # 1,000,000^2, 40 M edges, batch 32
    python benchmarks/sharded.py --scale 0.01          # 10,000^2 with 400 k edges: a check
    python benchmarks/sharded.py --ranks 1 2 --inputs sharded --json out.json

Peak memory is each process's resident high-water mark over the training steps, the first
ones included (they build what the kernels keep, e.g. the transposed pattern), after the
layer, the optimizer and the inputs exist; the steady peak of the later steps is reported too.
The C allocator returns freed blocks to the OS (``memory.follow_live_memory()``, as in the
other memory benchmarks; ``--glibc-defaults`` keeps glibc's defaults), what reading the rows
freed is released after the build, and the baseline is taken after ``memory.warm_up()`` (torch,
MKL, the kernels and the optimizers loaded). Beside the whole peak, each rank's share of the
machine: the peak with the resident library code (file-backed pages, shared by the processes of
one machine) split among the ranks. ``--threads`` sets the intra-op threads of each
rank (default: cores // ranks). Beside it, ``memory.estimate_sharded``'s
prediction for the rank (the layer and its activation side; the loss target this script holds
is added to it, as it is to the measurement).
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
    from _memory import current_bytes, file_bytes, peak_bytes, reset_peak

    from sparselinear import memory
    from sparselinear.distributed import RandomBlocks, ShardedSparseLinear, ring, step_volume

    torch.set_num_threads(cfg["threads"])
    if cfg["window_bytes"]:
        ring.WINDOW_BYTES = cfg["window_bytes"]
    if cfg["follow"]:  # freed blocks go back to the OS: the resident size is memory in use
        memory.follow_live_memory()
    memory.warm_up()  # what loads on first use (MKL, the kernels, the optimizers) ...
    spare = torch.nn.Parameter(torch.zeros(8))
    spare.grad = torch.zeros(8)
    torch.optim.Adam([spare], fused=True).step()
    baseline = current_bytes()  # ... is in the baseline with torch and the library
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world, timeout=datetime.timedelta(minutes=30))
    n_out, n_in, nnz, batch = cfg["shape"]
    t0 = time.perf_counter()
    sharded = cfg["input"] == "sharded"
    layer = ShardedSparseLinear(n_in, n_out, RandomBlocks(n_out, n_in, nnz=nnz, seed=0),
                                mode="sparse", input_partition="output" if sharded else None)
    build_s = time.perf_counter() - t0
    if cfg["follow"]:
        memory.release_free_memory()  # what reading the rows freed
    opt = torch.optim.Adam(layer.parameters(), fused=True)
    g = torch.Generator().manual_seed(rank if sharded else 0)
    width = layer.input_partition.sizes()[rank] if sharded else n_in
    x = torch.randn(batch, width, generator=g).requires_grad_()  # this rank's rows, or all
    target = torch.randn(batch, layer.local.out_features, generator=g)
    est = memory.estimate_sharded(layer, world_size=world, batch_size=batch, optimizer=opt,
                                  input=cfg["input"])

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        x.grad = None
        torch.nn.functional.mse_loss(layer(x), target).backward()
        opt.step()

    dist.barrier()
    before = current_bytes()
    reset_peak()
    for _ in range(cfg["warmup"]):  # the first step builds what the kernels keep
        step()
    first_peak = peak_bytes()
    dist.barrier()
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
    steady_peak = peak_bytes()
    result = {
        "rank": rank, "world": world, "rows": list(layer.rows), "local_nnz": layer.local.nnz,
        "build_s": build_s, "step_s": statistics.median(times), "bytes_sent": sent[-1],
        "peak_bytes": max(first_peak, steady_peak), "steady_peak_bytes": steady_peak,
        "held_before_steps": before, "baseline_bytes": baseline, "file_bytes": file_bytes(),
        "estimate_bytes": est.per_rank[rank], "target_bytes": target.numel() * 4,
        "predicted_sent": step_volume(
            batch, n_in, n_out, world, input=cfg["input"], rank=rank,
            input_sizes=layer.input_partition.sizes() if sharded else None,
            output_sizes=layer.output_partition.sizes())["total"],
        "input": cfg["input"], "window_bytes": ring.WINDOW_BYTES,
        "windows": ring.windows(batch, max(layer.input_partition.sizes()), 4)
        if sharded and world > 1 else 1,
    }
    Path(out, f"{cfg['input']}-{world}-{rank}.json").write_text(json.dumps(result))
    dist.destroy_process_group()


def run_world(world: int, cfg: dict, out: str) -> list[dict]:
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.start_processes(_rank, args=(world, port, cfg, out), nprocs=world, join=True,
                       start_method="spawn")
    return [json.loads(Path(out, f"{cfg['input']}-{world}-{r}.json").read_text())
            for r in range(world)]


def machine_share(r: dict) -> int:
    """A rank's peak with the resident library code split among the ranks of its world, which
    share it on one machine: what each rank adds to the machine's memory."""
    return r["peak_bytes"] - r["file_bytes"] + r["file_bytes"] // r["world"]


def _table(worlds: dict) -> None:
    def above(r: dict, key: str = "peak_bytes") -> int:
        return r[key] - r["baseline_bytes"]

    def largest(ranks: list, fn) -> int:
        return max(fn(r) for r in ranks)

    ones = worlds.get(1) or worlds.get("1")
    columns = (lambda r: r["peak_bytes"], machine_share, above,
               lambda r: above(r, "steady_peak_bytes"))
    single = [largest(ones, fn) for fn in columns] if ones else None
    print("ranks  peak/rank  vs 1 rank  code shared  vs 1 rank  above baseline  vs 1 rank  "
          "steady above  vs 1 rank  estimated  step (median)  sent/rank/step  edges/rank")
    for world, ranks in worlds.items():
        values = [largest(ranks, fn) for fn in columns]
        ratios = [f"{a / b:.2f}x" if single else "-" for a, b in zip(values, single or values)]
        step = max(r["step_s"] for r in ranks)
        sent = max(r["bytes_sent"] for r in ranks)
        estimated = max(r["estimate_bytes"] + r["target_bytes"] for r in ranks)
        print(f"{world:>5}  {values[0] / 1e9:>6.2f} GB  {ratios[0]:>9}  "
              f"{values[1] / 1e9:>8.2f} GB  {ratios[1]:>9}  "
              f"{values[2] / 1e9:>11.2f} GB  {ratios[2]:>9}  {values[3] / 1e9:>9.2f} GB  "
              f"{ratios[3]:>9}  {estimated / 1e9:>6.2f} GB  {step:>11.3f} s  "
              f"{sent / 1e6:>11.1f} MB  {max(r['local_nnz'] for r in ranks):>10,}")


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=float, default=1.0,
                   help="multiply rows, columns and edges (0.01: a quick check)")
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--inputs", nargs="+", choices=("sharded", "replicated"),
                   default=["sharded", "replicated"],
                   help="the input's layout; several: one table each (default: both)")
    p.add_argument("--batch", type=int, default=FULL[3])
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="per rank; 0: cores // ranks")
    p.add_argument("--window-bytes", type=int, default=0,
                   help="the backward pass's largest piece (distributed.ring.WINDOW_BYTES); "
                        "0: the library's default, the forward pass's pieces")
    p.add_argument("--glibc-defaults", action="store_true",
                   help="keep glibc's allocator defaults (freed blocks of up to 32 MB stay "
                        "resident) instead of memory.follow_live_memory()")
    p.add_argument("--json", type=Path, help="write the results here")
    args = p.parse_args(argv)
    n = max(int(FULL[0] * args.scale), max(args.ranks))
    nnz = int(FULL[2] * args.scale)
    results = {"shape": [n, n], "nnz": nnz, "batch": args.batch, "inputs": {}}
    with tempfile.TemporaryDirectory() as out:
        for layout in args.inputs:
            worlds = results["inputs"][layout] = {}
            for world in args.ranks:
                threads = args.threads or max(1, (os.cpu_count() or 1) // world)
                cfg = {"shape": (n, n, nnz, args.batch), "steps": args.steps,
                       "warmup": args.warmup, "threads": threads, "input": layout,
                       "follow": not args.glibc_defaults, "window_bytes": args.window_bytes}
                worlds[world] = run_world(world, cfg, out)
    print(f"{n:,} x {n:,}, {nnz:,} edges, batch {args.batch}, Adam (fused), gloo")
    for layout, worlds in results["inputs"].items():
        print(f"\n{layout} input")
        _table(worlds)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
