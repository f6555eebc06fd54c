"""Training-step benchmark on a CUDA GPU: ours vs torch-sparse (if importable) vs dense masked.

    python benchmarks/gpu_fly.py                       # fly, on cuda:0
    python benchmarks/gpu_fly.py --workloads fly,mid,tri --steps 20 --json gpu.json
    python benchmarks/gpu_fly.py --device cpu --tiny   # checks the script without a GPU

Self-contained: needs torch and this repository (imported from the checkout), nothing else;
torch-sparse is used only if it imports and has CUDA support. Each implementation runs in its
own subprocess (an out-of-memory error cannot disturb the others): a full training step
(forward, MSE loss, backward with input gradient, Adam), warm-up then the median of several
steps, timed with CUDA synchronisation. Peak memory is ``torch.cuda.max_memory_allocated``
above what the input data (pattern, input, target) holds. An implementation whose estimated
memory exceeds the free GPU memory is reported as "does not fit (needs ~X GB)" and not run:
the dense masked fly layer needs ~502 GiB by this estimate (28 bytes per weight entry: weight,
gradient, two Adam moments, mask, masked weight and its gradient; the weight alone is 76.9 GB).
Peak memory is measured from after the layer is built, so it covers training steps, not
construction.
All implementations start from the same weights; their outputs and gradients are checked
against ours.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
GB = 1 << 30

WORKLOADS = {  # name: (n_out, n_in, nnz, batch, kind)
    "fly": (138_639, 138_639, 15_091_983, 16, "random"),
    "mid": (8192, 8192, 671_089, 256, "random"),
    "tri": (2048, 2048, 2048 * 2049 // 2, 256, "tril"),
}
TINY = {
    "fly": (3000, 3000, 327_000, 16, "random"),
    "mid": (1024, 1024, 10_486, 64, "random"),
    "tri": (256, 256, 256 * 257 // 2, 64, "tril"),
}
IMPLS = ("ours", "torch_sparse", "dense_masked")
LABELS = {"ours": "sparselinear (ours)", "torch_sparse": "torch-sparse SparseTensor",
          "dense_masked": "dense nn.Linear × mask"}


def estimate_bytes(impl: str, n_out: int, n_in: int, nnz: int, batch: int) -> float:
    act = 8 * 4.0 * batch * (n_out + n_in)
    if impl == "ours":
        return 64.0 * nnz + act
    if impl == "torch_sparse":
        return 64.0 * nnz + 8.0 * batch * nnz + act
    return 28.0 * n_out * n_in + act  # weight, grad, Adam ×2, mask, masked copy, its grad


def make_pattern(torch, n_out, n_in, nnz, kind, device, seed=0):
    """CSR (crow int64, col int64) and initial values, built on ``device`` in O(nnz)."""
    g = torch.Generator(device=device).manual_seed(seed)
    if kind == "tril":
        rows, cols = torch.tril_indices(n_out, n_in, device=device)
    else:
        total = n_out * n_in
        keys = torch.unique(torch.randint(0, total, (int(nnz * 1.02) + 64,), device=device,
                                          generator=g))
        while keys.numel() < nnz:
            more = torch.randint(0, total, (2 * (nnz - keys.numel()) + 64,), device=device,
                                 generator=g)
            keys = torch.unique(torch.cat([keys, more]))
        if keys.numel() > nnz:
            keep = torch.randperm(keys.numel(), device=device, generator=g)[:nnz]
            keys = keys[torch.sort(keep).values]
        rows, cols = keys // n_in, keys % n_in
    counts = torch.bincount(rows, minlength=n_out)
    crow = torch.zeros(n_out + 1, dtype=torch.int64, device=device)
    crow[1:] = torch.cumsum(counts, 0)
    bound = counts.clamp(min=1).float().rsqrt()
    values = (torch.rand(rows.numel(), device=device, generator=g) * 2 - 1) * bound[rows]
    return crow, cols.to(torch.int64), rows.to(torch.int64), values


def build(torch, impl, crow, col, rows, values, shape):
    nn = torch.nn
    n_out, n_in = shape
    if impl == "ours":
        sys.path.insert(0, REPO)
        import sparselinear as sl

        conn = sl.Connectivity.from_csr(crow, col, shape)
        layer = sl.SparseLinear(n_in, n_out, conn, device=crow.device)
        with torch.no_grad():
            layer.weight.copy_(values)
            layer.bias.zero_()
        return layer, lambda: layer.weight.grad
    if impl == "torch_sparse":
        from torch_sparse import SparseTensor

        class TS(nn.Module):
            def __init__(self):
                super().__init__()
                self.weight = nn.Parameter(values.clone())
                self.bias = nn.Parameter(torch.zeros(n_out, device=values.device))
                self.adj = SparseTensor(rowptr=crow, col=col, value=self.weight,
                                        sparse_sizes=shape, is_sorted=True, trust_data=True)

            def forward(self, x):
                return (self.adj @ x.t()).t() + self.bias

        m = TS()
        return m, lambda: m.weight.grad

    class DenseMasked(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(n_in, n_out, device=values.device)
            mask = torch.zeros(n_out, n_in, device=values.device)
            mask[rows, col] = 1.0
            self.register_buffer("mask", mask)
            with torch.no_grad():
                self.linear.weight.zero_()
                self.linear.weight[rows, col] = values
                self.linear.bias.zero_()

        def forward(self, x):
            return nn.functional.linear(x, self.linear.weight * self.mask, self.linear.bias)

    m = DenseMasked()
    return m, lambda: m.linear.weight.grad[rows, col]


def child(spec: dict) -> dict:
    import torch

    dev = torch.device(spec["device"])
    cuda = dev.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    n_out, n_in, nnz, batch, kind = spec["workload"]
    crow, col, rows, values = make_pattern(torch, n_out, n_in, nnz, kind, dev)
    g = torch.Generator(device=dev).manual_seed(1)
    x = torch.randn(batch, n_in, device=dev, generator=g).requires_grad_(True)
    target = torch.randn(batch, n_out, device=dev, generator=g)
    probe = torch.randn(batch, n_out, device=dev, generator=g, dtype=torch.float64)
    sync()
    base = torch.cuda.memory_allocated(dev) if cuda else 0
    t0 = time.perf_counter()
    model, edge_grad = build(torch, spec["impl"], crow, col, rows, values, (n_out, n_in))
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    sync()
    out = {"build_s": time.perf_counter() - t0}
    if cuda:  # measure training, not construction
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)

    def step():
        opt.zero_grad(set_to_none=True)
        x.grad = None
        loss = torch.nn.functional.mse_loss(model(x), target)
        loss.backward()
        opt.step()

    y = model(x)
    torch.nn.functional.mse_loss(y, target).backward()
    yd, gw = y.detach().double(), edge_grad().detach().double()
    out["check"] = {"y": float((yd * probe).sum()),
                    "y_scale": float((yd.abs() * probe.abs()).sum()),
                    "gw": float((gw * values.double()).sum()),
                    "gw_scale": float((gw.abs() * values.double().abs()).sum())}
    opt.step()
    for _ in range(spec["warmup"]):
        step()
    sync()
    times = []
    for _ in range(spec["steps"]):
        t = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t)
    out["median_s"] = statistics.median(times)
    out["min_s"] = min(times)
    out["peak_gb"] = (torch.cuda.max_memory_allocated(dev) - base) / GB if cuda else None
    out["status"] = "ok"
    return out


def run_child(impl: str, wl: tuple, args) -> dict:
    spec = {"impl": impl, "workload": list(wl), "device": args.device, "steps": args.steps,
            "warmup": args.warmup}
    try:
        p = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", json.dumps(spec)],
                           capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "note": f"timeout after {args.timeout:.0f} s"}
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    err = p.stderr.strip().splitlines()
    last = err[-1] if err else f"exit code {p.returncode}"
    if "OutOfMemory" in p.stderr or "out of memory" in p.stderr:
        return {"status": "failed", "note": f"out of GPU memory: {last[:200]}"}
    return {"status": "failed", "note": last[:300]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workloads", default="fly")
    ap.add_argument("--impls", default=",".join(IMPLS))
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--tiny", action="store_true", help="small stand-in sizes")
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        try:
            res = child(json.loads(args.child))
        except Exception as exc:  # reported in the table
            res = {"status": "failed", "note": f"{type(exc).__name__}: {exc}"[:300]}
        print("RESULT " + json.dumps(res), flush=True)
        return 0

    import torch

    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        print("No CUDA device is available: nothing to measure (use --device cpu to check the "
              "script).", file=sys.stderr)
        return 2
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        free, total = torch.cuda.mem_get_info(dev)
        device_name = f"{props.name}, {total / GB:.0f} GB (CUDA {torch.version.cuda})"
    else:
        free, total = 16 * GB, 16 * GB
        device_name = "CPU (script check only)"
    table = WORKLOADS if not args.tiny else TINY
    impls = [i.strip() for i in args.impls.split(",") if i.strip()]
    results = {"device": device_name, "torch": torch.__version__,
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "workloads": {}}
    print(f"# {device_name}; torch {torch.__version__}; {results['date']}")
    for name in [w.strip() for w in args.workloads.split(",") if w.strip()]:
        wl = table[name]
        n_out, n_in, nnz, batch, _ = wl
        print(f"\n{name}: {n_out:,} × {n_in:,}, nnz {nnz:,}, batch {batch}")
        recs = {}
        for impl in impls:
            need = estimate_bytes(impl, n_out, n_in, nnz, batch)
            if impl == "torch_sparse":
                probe = subprocess.run([sys.executable, "-c", "import torch_sparse"],
                                       capture_output=True, text=True)
                if probe.returncode != 0:
                    recs[impl] = {"status": "not installed",
                                  "note": "not importable (torch-sparse is not installed here)"}
                    continue
            if need > 0.9 * free:
                recs[impl] = {"status": "does not fit",
                              "note": f"does not fit (needs ~{need / GB:,.0f} GB; "
                                      f"{free / GB:.0f} GB free on the device)"}
                continue
            recs[impl] = run_child(impl, wl, args)
        results["workloads"][name] = recs
        ref = recs.get("ours") if recs.get("ours", {}).get("status") == "ok" else None
        print("| implementation | step (median) | peak GPU memory above input | ÷ ours "
              "| same result |")
        print("|---|---:|---:|---:|---|")
        for impl, r in recs.items():
            if r.get("status") != "ok":
                print(f"| {LABELS[impl]} | {r['note']} | | | |")
                continue
            ratio = f"{r['median_s'] / ref['median_s']:.2f}×" if ref else "–"
            same = "reference" if r is ref else "–"
            if ref and r is not ref:
                errs = [abs(r["check"][k] - ref["check"][k]) / max(ref["check"][k + "_scale"],
                                                                      1e-30) for k in ("y", "gw")]
                same = "yes" if max(errs) <= 1e-4 else f"NO (rel. error {max(errs):.1e})"
            peak = f"{r['peak_gb']:.2f} GB" if r.get("peak_gb") is not None else "–"
            print(f"| {LABELS[impl]} | {r['median_s'] * 1000:.2f} ms | {peak} | {ratio} | {same} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
