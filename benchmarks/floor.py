"""The floor a sparse training step can reach on this machine: bytes moved ÷ bandwidth.

``python benchmarks/floor.py '<json>'`` measures, with torch, (1) the stream bandwidth of a
large ``copy_`` (read + write bytes per second) with 1 and 2 threads, (2) the copy bandwidth
over a buffer the size of each workload's activation table (``in × batch`` floats: cache
bandwidth where that fits the caches), and (3) dense fp32 matmul FLOP/s. ``floor_model`` turns
those into per-workload floors for a step (forward, input gradient, weight gradient, Adam):

* streamed bytes per edge (fp32 values, int32 indices): forward reads index + value (8), the
  backward pass reads index + value and writes the weight gradient (12: both gradients in one
  sweep over the forward pattern), Adam reads the gradient and reads + writes value and both
  moments (4 + 3·8 = 28): **48 B/edge**, plus ~8 passes over the dense activations;
* each of the three kernels also reads one activation row per edge, at random: ``3 · nnz`` rows
  of ``max(64, 4 · batch)`` bytes (a row costs at least a cache line);
* ``6 · batch · nnz`` floating-point operations.

``stream floor`` = streamed bytes ÷ copy bandwidth; ``gather floor`` adds the gathered bytes ÷
the table-sized copy bandwidth (random rows read as fast as a sequential copy: still a lower
bound); ``flop floor`` = FLOPs ÷ matmul FLOP/s. The step cannot beat the largest of them.
"""

from __future__ import annotations

import json
import statistics
import sys
import time

BYTES_PER_EDGE = 48
ACT_PASSES = 8


def _median_time(fn, repeat=5):
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def measure(shapes: list[dict], threads=(1, 2)) -> dict:
    import torch

    out: dict = {"copy_gbs": {}, "matmul_gflops": {}, "gather": {}}
    n = 64 << 20  # 256 MB per tensor, far beyond the caches
    src, dst = torch.ones(n), torch.empty(n)
    m = torch.randn(2048, 2048)
    for t in threads:
        torch.set_num_threads(t)
        sec = _median_time(lambda: dst.copy_(src))
        out["copy_gbs"][str(t)] = 2 * 4 * n / sec / 1e9
        sec = _median_time(lambda: torch.mm(m, m), repeat=3)
        out["matmul_gflops"][str(t)] = 2 * 2048**3 / sec / 1e9
    src = dst = None  # free 512 MB before the gathers
    torch.set_num_threads(max(threads))
    for s in shapes:
        # Bandwidth over a buffer the size of the activation table the kernels gather from:
        # cache bandwidth where it fits the caches, memory bandwidth where it does not.
        n = max(1, s["n_in"] * s["batch"])
        src, dst = torch.ones(n), torch.empty(n)
        reps = max(1, (256 << 20) // (8 * n))

        def copies(src=src, dst=dst, reps=reps):
            for _ in range(reps):
                dst.copy_(src)

        sec = _median_time(copies, repeat=3)
        out["gather"][s["name"]] = {"table_gbs": 2 * 4 * n * reps / sec / 1e9,
                                    "table_mb": 4 * n / 2**20}
    out["threads"] = max(threads)
    return out


def floor_model(meas: dict, w: dict) -> dict:
    """Floors in seconds for workload ``w`` (dict with name, n_out, n_in, nnz, batch)."""
    t = str(meas["threads"])
    bw = meas["copy_gbs"][t] * 1e9
    streamed = BYTES_PER_EDGE * w["nnz"] + ACT_PASSES * 4 * w["batch"] * (w["n_in"] + w["n_out"])
    g = meas["gather"].get(w["name"])
    # each edge reads a whole activation row, at least one 64-byte cache line
    gathered = 3 * w["nnz"] * max(64, 4 * w["batch"])
    gather_s = gathered / (g["table_gbs"] * 1e9) if g else float("nan")
    flops = 6 * w["batch"] * w["nnz"]
    return {
        "streamed_gb": streamed / 1e9,
        "gathered_gb": gathered / 1e9,
        "stream_floor_s": streamed / bw,
        "gather_floor_s": streamed / bw + gather_s,
        "flop_floor_s": flops / (meas["matmul_gflops"][t] * 1e9),
        "copy_gbs": meas["copy_gbs"][t],
    }


if __name__ == "__main__":
    print("RESULT " + json.dumps(measure(json.loads(sys.argv[1]))), flush=True)
