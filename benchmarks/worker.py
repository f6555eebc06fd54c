"""Run one implementation on one workload in this process and print one ``RESULT {json}`` line.

Started by ``compare.py`` with the implementation's own Python (its virtualenv); not meant to be
run by hand, though ``python benchmarks/worker.py '<json spec>'`` works for debugging.

The step is a full training step: ``zero_grad``, forward, MSE loss, backward (also to the input,
as for a hidden layer, unless ``input_grad`` is false), ``Adam.step`` (``fused=True`` when the
spec's ``adam`` is ``"fused"``, else torch's default implementation). Peak memory is the
process's peak resident set (``VmHWM``) above the resident set once the input data (pattern
arrays, input, target) is built, the implementation's modules are imported and PyTorch's
autograd and optimizer machinery has run once (on a tiny ``nn.Linear``). The high-water mark is
reset there by writing ``5`` to ``/proc/self/clear_refs``, and again once the layer is built, so
``step_peak`` measures training and ``build_peak`` construction.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
import traceback

MB = 1 << 20


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _rss_mb() -> float:
    return _status_kb("VmRSS") / 1024


def _hwm_mb() -> float:
    return _status_kb("VmHWM") / 1024


def run(spec: dict) -> dict:
    import implementations
    import numpy as np
    import torch

    threads = int(spec["threads"])
    torch.set_num_threads(threads)
    out: dict = {
        "impl": spec["impl"], "threads": threads, "torch": torch.__version__,
        "python": platform.python_version(), "pid": os.getpid(),
    }
    with np.load(spec["pattern"]) as f:
        arrays = {k: f[k] for k in f.files}
    n_out, n_in = (int(v) for v in arrays["shape"])
    batch = int(spec["batch"])
    gen = torch.Generator().manual_seed(int(spec.get("seed", 0)))
    x = torch.randn(batch, n_in, generator=gen)
    target = torch.randn(batch, n_out, generator=gen)
    probe = torch.randn(batch, n_out, generator=gen, dtype=torch.float64)
    input_grad = bool(spec.get("input_grad", True))
    if input_grad:
        x.requires_grad_(True)
    implementations.preload(spec["impl"])
    rss_data = _rss_mb()
    out["rss_data_mb"] = rss_data
    out["peak_reset"] = _reset_peak()

    t0 = time.perf_counter()
    model = implementations.build(spec["impl"], arrays, spec.get("options"))
    adam = spec.get("adam", "for-loop")
    if adam not in ("fused", "for-loop"):
        raise ValueError(f"'adam' must be 'fused' or 'for-loop'; got {adam!r}")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4,
                                 **({"fused": True} if adam == "fused" else {}))
    out["adam"] = "fused" if optimizer.param_groups[0].get("fused") else "for-loop"
    out["build_s"] = time.perf_counter() - t0
    out["build_peak_mb"] = _hwm_mb() - rss_data
    if hasattr(model, "describe"):
        out["describe"] = model.describe()
    _reset_peak()

    def step(check: bool = False):
        ta = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        if x.grad is not None:
            x.grad = None
        y = model(x)
        loss = torch.nn.functional.mse_loss(y, target)
        tb = time.perf_counter()
        loss.backward()
        tc = time.perf_counter()
        if check:
            # Checksums that every implementation must reproduce (same weights, same input):
            # the output and the per-edge weight gradient, each weighted by fixed noise.
            gw = model.edge_grad().detach().double()
            r = torch.from_numpy(arrays["values"]).double()
            yd = y.detach().double()
            out["check"] = {
                "y": float((yd * probe).sum()), "y_scale": float((yd.abs() * probe.abs()).sum()),
                "gw": float((gw * r).sum()), "gw_scale": float((gw.abs() * r.abs()).sum()),
            }
            if input_grad:
                gx = x.grad.detach().double()
                out["check"]["gx"] = float(gx.sum())
                out["check"]["gx_scale"] = float(gx.abs().sum())
        optimizer.step()
        td = time.perf_counter()
        return td - ta, tb - ta, tc - tb, td - tc

    warmup = max(1, int(spec.get("warmup", 1)))
    first = step(check=True)
    out["first_step_s"] = first[0]
    out["first_step_peak_mb"] = _hwm_mb() - rss_data
    _reset_peak()  # the checksums' float64 copies are not part of the step
    for _ in range(warmup - 1):
        step()
    times = []
    t_start = time.perf_counter()
    max_steps, min_steps = int(spec.get("steps", 5)), int(spec.get("min_steps", 3))
    max_seconds = float(spec.get("max_seconds", 60))
    while len(times) < max_steps:
        times.append(step())
        if len(times) >= min_steps and time.perf_counter() - t_start > max_seconds:
            break
    out["times_s"] = [t[0] for t in times]
    out["median_s"] = statistics.median(out["times_s"])
    out["min_s"] = min(out["times_s"])
    for i, part in enumerate(("forward_s", "backward_s", "optimizer_s"), start=1):
        out[part] = statistics.median(t[i] for t in times)
    out["step_peak_mb"] = _hwm_mb() - rss_data
    out["rss_end_mb"] = _rss_mb()
    out["status"] = "ok"
    return out


def main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    try:
        result = run(spec)
    except MemoryError as exc:
        result = {"impl": spec.get("impl"), "status": "failed",
                  "note": f"out of memory: {exc}"[:400]}
    except Exception as exc:  # reported, not raised: the table says what went wrong
        traceback.print_exc()
        last = traceback.extract_tb(exc.__traceback__)[-1]
        result = {"impl": spec.get("impl"), "status": "failed",
                  "note": f"{type(exc).__name__}: {exc} (at {os.path.basename(last.filename)}"
                          f":{last.lineno})"[:600]}
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
