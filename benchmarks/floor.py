"""The floor a sparse training step can reach on this machine: bytes moved ÷ bandwidth.

``python benchmarks/floor.py '<json>'`` measures, with torch, (1) the stream bandwidth of a
large ``copy_`` (read + write bytes per second) with 1 and 2 threads, (2) the rate of random
row gathers ``index_select(table, 0, idx)`` from a table the size of each workload's
activations (batch floats per row), and (3) dense fp32 matmul FLOP/s. ``floor_model`` turns
those into per-workload floors for a step (forward, input gradient, weight gradient, Adam):

* streamed bytes per edge (fp32 values, int32 indices): forward reads index + value (8),
  input gradient reads the transposed index + value (8), weight gradient reads an index and
  writes a value (8), Adam reads the gradient and reads + writes value and both moments
  (4 + 3·8 = 28): **52 B/edge**, plus ~8 passes over the dense activations;
* each of the three kernels also reads one activation row (batch · 4 bytes) per edge, at random:
  ``3 · nnz`` row gathers;
* ``6 · batch · nnz`` floating-point operations.

``stream floor`` = streamed bytes ÷ copy bandwidth (activations assumed cache-resident: a hard
lower bound); ``gather floor`` adds the measured time of the row gathers; ``flop floor`` =
FLOPs ÷ matmul FLOP/s. The step cannot beat the largest of them.
"""

from __future__ import annotations

import json
import statistics
import sys
import time

BYTES_PER_EDGE = 52
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
        k = min(int(s["nnz"]), 4_000_000)
        table = torch.randn(s["n_in"], s["batch"])
        idx = torch.randint(0, s["n_in"], (k,))
        rows = torch.empty(k, s["batch"])

        def gather(table=table, idx=idx, rows=rows):
            torch.index_select(table, 0, idx, out=rows)

        sec = _median_time(gather, repeat=3)
        out["gather"][s["name"]] = {"rows_per_s": k / sec,
                                    "table_mb": table.numel() * 4 / 2**20}
    out["threads"] = max(threads)
    return out


def floor_model(meas: dict, w: dict) -> dict:
    """Floors in seconds for workload ``w`` (dict with name, n_out, n_in, nnz, batch)."""
    t = str(meas["threads"])
    bw = meas["copy_gbs"][t] * 1e9
    streamed = BYTES_PER_EDGE * w["nnz"] + ACT_PASSES * 4 * w["batch"] * (w["n_in"] + w["n_out"])
    g = meas["gather"].get(w["name"])
    gather_s = 3 * w["nnz"] / g["rows_per_s"] if g else float("nan")
    flops = 6 * w["batch"] * w["nnz"]
    return {
        "streamed_gb": streamed / 1e9,
        "stream_floor_s": streamed / bw,
        "gather_floor_s": streamed / bw + gather_s,
        "flop_floor_s": flops / (meas["matmul_gflops"][t] * 1e9),
        "copy_gbs": meas["copy_gbs"][t],
    }


if __name__ == "__main__":
    print("RESULT " + json.dumps(measure(json.loads(sys.argv[1]))), flush=True)
