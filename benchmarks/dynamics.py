"""Connectome dynamics through time: ConnectomeRNN against a flyvis-style gather/scatter_add.

One training step = simulate T Euler steps of ``τ dv/dt = -v + b + Σ_j s_j c_ij θ_g f(v_j) + x``,
MSE loss on the read-out neurons, backward through time, Adam step. Each implementation runs in
its own process (median time over the repeats, peak resident memory with the C allocator
returning freed blocks, as ``sparselinear profile --measure`` does, above the process with
torch, the library and the input data loaded: the network's pattern and edge data count, as
``memory.estimate`` counts them):

* ``ours``: ``sparselinear.ConnectomeRNN`` (one sparse product per step);
* ``gather``: the same equation as flyvis 1.2.0 computes it, a per-edge gather and
  ``scatter_add`` in plain PyTorch (a ``batch x nnz`` tensor per step, kept for backward); above
  ``--gather-max-bytes`` of edge tensors it is not run and the memory it would need is reported;
* ``layer``: one ``SparseLinear`` forward + backward at the same batch, the cost floor of a step.

    python benchmarks/dynamics.py --scale flyvis          # 45,000 neurons, 1.5 M edges
    python benchmarks/dynamics.py --scale fly             # 138,639 neurons, 15.1 M edges
    python benchmarks/dynamics.py --scale small --repeats 1   # a quick end-to-end check
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

SCALES = {  # neurons, edges, groups (shared strengths)
    "small": (3_000, 60_000, 200),
    "flyvis": (45_669, 1_513_231, 2_000),
    "fly": (138_639, 15_091_983, 5_000),
}
ROOT = Path(__file__).resolve().parents[1]
IMPLS = ("ours", "layer", "gather")


def _build(n, nnz, groups, seed=0):
    import torch

    from sparselinear import Connectivity

    g = torch.Generator().manual_seed(seed)
    c = Connectivity.random(n, n, nnz=nnz, seed=seed)
    return c, {
        "syn_count": torch.randint(1, 10, (nnz,), generator=g).float(),
        "signs": torch.where(torch.rand(n, generator=g) < 0.75, 1, -1),
        "groups": torch.randint(0, groups, (nnz,), generator=g),
    }


class GatherScatter:
    """The flyvis formulation: per-edge gather and scatter_add, strengths shared by group."""

    def __init__(self, c, parts, n_groups, dt, inputs, outputs):
        import torch

        post, pre = c.indices().to(torch.int64)
        self.post, self.pre = post, pre
        self.scale = parts["signs"].float()[pre] * parts["syn_count"]
        self.groups = parts["groups"]
        self.theta = torch.nn.Parameter(torch.full((n_groups,), 0.01))
        self.tau = torch.nn.Parameter(torch.full((c.out_features,), 5 * dt))
        self.bias = torch.nn.Parameter(torch.zeros(c.out_features))
        self.dt, self.inputs, self.outputs = dt, inputs, outputs

    def parameters(self):
        return [self.theta, self.tau, self.bias]

    def __call__(self, x):
        import torch

        batch, steps, _ = x.shape
        n = self.bias.numel()
        w = self.scale * self.theta[self.groups]
        k = self.dt / torch.clamp(self.tau, min=self.dt)
        v = self.bias.expand(batch, n)
        post = self.post.expand(batch, -1)
        outs = []
        for t in range(steps):
            edge = torch.relu(v)[:, self.pre] * w  # batch x nnz, kept for backward
            syn = torch.zeros_like(v).scatter_add(1, post, edge)
            drive = syn.index_add(1, self.inputs, x[:, t])
            v = v + k * (drive - v + self.bias)
            outs.append(v[:, self.outputs])
        return torch.stack(outs, 1)


def worker(args) -> dict:
    """Run one implementation in this process and return its figures."""
    import torch
    from _memory import timed_steps

    from sparselinear import ConnectomeRNN, SparseLinear, memory
    from sparselinear.memory.peak import PeakTracker

    torch.set_num_threads(args.threads)
    memory.follow_live_memory()
    memory.warm_up()
    n, nnz, groups = SCALES[args.scale]
    n_in, n_out = min(n, 1000), min(n, 100)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(args.batch, args.steps, n_in, generator=g)
    target = torch.randn(args.batch, args.steps, n_out, generator=g)
    # The baseline: torch, the library and the data loaded, nothing of the network built. Each
    # implementation's peak then includes its own pattern and edge data, as memory.estimate
    # counts them; the builder's synapse counts, which none keeps, are dropped first.
    memory.release_free_memory()
    tracker = PeakTracker("cpu")
    base = tracker.current()
    c, parts = _build(n, nnz, groups)
    inputs, outputs = torch.arange(n_in), torch.arange(n - n_out, n)
    if args.impl == "layer":
        layer = SparseLinear(n, n, c)
        h = torch.randn(args.batch, n, requires_grad=True)
        opt = None
    else:
        if args.impl == "ours":
            model = ConnectomeRNN(c, **parts, n_groups=groups, syn_strength=0.01,
                                  input_neurons=inputs, output_neurons=outputs,
                                  checkpoint_every=args.checkpoint_every)
        else:
            model = GatherScatter(c, parts, groups, 0.02, inputs, outputs)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    del c, parts
    memory.release_free_memory()

    def step_fn():
        if opt is None:  # the layer alone: forward and backward
            layer(h).sum().backward()
            return
        torch.nn.functional.mse_loss(model(x), target).backward()
        opt.step()
        opt.zero_grad()

    times, peak = timed_steps(step_fn, args.repeats, tracker, base)  # the first is a warm-up
    result = {"impl": args.impl, "seconds": statistics.median(times[1:] or times), "peak": peak}
    if args.impl == "ours":
        est = memory.estimate(model, batch_size=args.batch, steps=args.steps)
        result["estimate"] = est.total
    return result


def _run(args, impl) -> dict:
    cmd = [sys.executable, __file__, "--worker", "--impl", impl, "--scale", args.scale,
           "--batch", str(args.batch), "--steps", str(args.steps), "--repeats",
           str(args.repeats), "--threads", str(args.threads)]
    if args.checkpoint_every:
        cmd += ["--checkpoint-every", str(args.checkpoint_every)]
    from _memory import worker_result

    return worker_result(cmd, impl, ROOT, error_lines=1)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=SCALES, default="small")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--checkpoint-every", type=int, default=None)
    parser.add_argument("--gather-max-bytes", type=float, default=8e9,
                        help="run the gather/scatter implementation only below this many bytes "
                             "of batch x nnz edge tensors")
    parser.add_argument("--impls", nargs="+", choices=IMPLS, default=list(IMPLS),
                        help="run only these implementations (default: all)")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--impl", default="ours", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return {}
    n, nnz, groups = SCALES[args.scale]
    edge_bytes = args.batch * nnz * 4 * args.steps
    results = {"scale": args.scale, "neurons": n, "edges": nnz, "groups": groups,
               "batch": args.batch, "steps": args.steps, "threads": args.threads,
               "checkpoint_every": args.checkpoint_every, "gather_edge_bytes": edge_bytes}
    for impl in IMPLS:
        if impl == "gather" and edge_bytes > args.gather_max_bytes:
            results[impl] = {"impl": impl, "skipped": f"needs > {edge_bytes / 1e9:.1f} GB"}
            continue
        if impl not in args.impls:
            results[impl] = {"impl": impl, "skipped": "not asked for"}
            continue
        results[impl] = _run(args, impl)
    _report(results)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    return results


def _report(r: dict) -> None:
    ours, layer, gather = r["ours"], r["layer"], r["gather"]
    print(f"{r['scale']}: {r['neurons']:,} neurons, {r['edges']:,} edges, {r['groups']:,} "
          f"groups; batch {r['batch']}, T = {r['steps']}, {r['threads']} threads")
    print("| implementation | s / training step | peak memory |")
    print("|---|---|---|")
    for name, res in (("ConnectomeRNN", ours), ("gather / scatter_add (flyvis-style)", gather)):
        if "seconds" in res:
            print(f"| {name} | {res['seconds']:.3f} | {res['peak'] / 1e9:.3f} GB |")
        else:
            print(f"| {name} | - | {res.get('skipped') or res.get('error')} |")
    if "seconds" in ours and "seconds" in layer:
        ratio = ours["seconds"] / r["steps"] / layer["seconds"]
        print(f"per simulated step: {ours['seconds'] / r['steps'] * 1e3:.2f} ms = {ratio:.2f} x "
              f"one SparseLinear forward + backward ({layer['seconds'] * 1e3:.2f} ms)")
    if "seconds" in ours:
        print(f"estimate {ours['estimate'] / 1e9:.3f} GB vs measured {ours['peak'] / 1e9:.3f} GB "
              f"({ours['estimate'] / ours['peak'] - 1:+.1%})")
    if "seconds" in ours and "seconds" in gather:
        print(f"time ratio ours / gather {ours['seconds'] / gather['seconds']:.2f}, memory ratio "
              f"{ours['peak'] / gather['peak']:.3f}")


if __name__ == "__main__":
    main()
