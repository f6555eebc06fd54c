"""flyvis itself against ConnectomeRNN: the same network, the same activity, one training step.

flyvis (Lappalainen et al. 2024, ``pip install flyvis==1.2.0``) is not a dependency of this
project: its ``torchvision`` requirement replaces a CPU build of torch, so it gets a virtual
environment of its own, and this script runs with that environment's Python, the library
importable through ``PYTHONPATH`` (it needs only torch and numpy)::

    python3 -m venv /tmp/flyvis-venv && /tmp/flyvis-venv/bin/pip install flyvis==1.2.0
    PYTHONPATH=$PWD /tmp/flyvis-venv/bin/python benchmarks/flyvis_reference.py \\
        --out benchmarks/results/flyvis-reference.json

flyvis builds its network from the connectome that ships inside the package
(``fib25-fib19_v2.2.json``, extent 15: 45,669 neurons of 65 cell types, 1,513,231 edges); it
caches what it derives under ``$FLYVIS_ROOT_DIR`` (default here: a temporary folder), and
nothing is downloaded.

1. ``check``: `sparselinear.ConnectomeRNN` is built from flyvis's network with the same
   connectivity and parameters: per-edge signs and synapse counts, one strength per cell-type
   pair (604 groups, flyvis's sharing), the time constants and resting potentials of each
   neuron's cell type, ``dt``; both simulate a random input on the photoreceptors (R1-R8) from
   the resting state, and their voltages are compared at every step.
2. One training step each (simulate ``T`` steps, MSE on 100 read-out neurons, backward through
   time, Adam), each in its own process: median time over the repeats after a warm-up, peak
   resident memory above the process with torch, both libraries and the input loaded (each
   network's pattern, edge data and parameters count). flyvis takes the whole-network input
   ``(batch, T, n)``, ours the photoreceptors' ``(batch, T, 5,768)``; both inputs are in the
   baseline. flyvis shares τ and the resting potential per cell type (65 each), ours has one per
   neuron (45,669 each): the step trains more parameters here, which costs little.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DT = 0.02  # flyvis's usual integration step (1 / 50 s)
N_OUT = 100


def _flyvis_network():
    os.environ.setdefault("FLYVIS_ROOT_DIR", str(Path(tempfile.gettempdir()) / "flyvis-root"))
    import logging

    from flyvis.network import Network

    logging.getLogger().setLevel(logging.WARNING)
    return Network()  # the default configuration: the shipped connectome, ReLU, shared params


def _photoreceptors(net):
    import numpy as np

    layers = net.stimulus.layer_index
    return np.concatenate([layers[f"R{i}"] for i in range(1, 9)])


def ours_from_flyvis(net) -> dict:
    """The arguments of `ConnectomeRNN` for flyvis's ``net``, edges in CSR order."""
    import torch

    n = net.n_nodes
    src, tgt = net._source_indices.long(), net._target_indices.long()
    order = torch.argsort(tgt * n + src)  # rows (postsynaptic) major, as the pattern stores them

    def per_edge(p):
        return p.semantic_values.detach()[p.indices][order]

    def per_node(p):
        return p.semantic_values.detach()[p.indices]

    edges, nodes = net.edge_params, net.node_params
    return {
        "indices": torch.stack([tgt[order], src[order]]),
        "n": n,
        "syn_count": per_edge(edges.syn_count),
        "signs": per_edge(edges.sign),
        "groups": edges.syn_strength.indices[order].long(),
        "n_groups": edges.syn_strength.semantic_values.numel(),
        "syn_strength": edges.syn_strength.semantic_values.detach().clone(),
        "time_const": per_node(nodes.time_const),
        "bias": per_node(nodes.bias),
        "inputs": torch.as_tensor(_photoreceptors(net)).long(),
        "outputs": torch.arange(n - N_OUT, n),
    }


def build_ours(spec: dict):
    from sparselinear import Connectivity, ConnectomeRNN
    from sparselinear.constraints import Sign

    n = spec["n"]
    c = Connectivity.from_indices(spec["indices"], shape=(n, n))
    signs = Sign(spec["signs"])  # one sign per edge (unambiguous whatever nnz is)
    return ConnectomeRNN(c, syn_count=spec["syn_count"], signs=signs, groups=spec["groups"],
                         n_groups=spec["n_groups"], syn_strength=spec["syn_strength"],
                         time_const=spec["time_const"], bias=spec["bias"], dt=DT,
                         input_neurons=spec["inputs"], output_neurons=spec["outputs"])


def check(args, spec_path: Path) -> dict:
    """Build both networks, compare their voltages on a random input, save ours' arguments."""
    import torch

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    net = _flyvis_network()
    built = time.perf_counter() - t0
    spec = ours_from_flyvis(net)
    torch.save(spec, spec_path)
    ours = build_ours(spec)
    g = torch.Generator().manual_seed(0)
    inputs = spec["inputs"]
    x_in = 0.5 * torch.rand(args.check_batch, args.check_steps, inputs.numel(), generator=g)
    x = torch.zeros(args.check_batch, args.check_steps, spec["n"])
    x[:, :, inputs] = x_in
    with torch.no_grad():
        theirs = net(x, DT)  # (batch, T, n): every neuron's voltage after each step
        _, mine = ours(x_in, return_states=True)
    diff = (theirs - mine).abs()
    scale = theirs.abs().max().item()
    return {"neurons": spec["n"], "edges": int(spec["indices"].shape[1]),
            "groups": spec["n_groups"], "flyvis_build_seconds": built,
            "check_batch": args.check_batch, "check_steps": args.check_steps,
            "max_abs_diff": diff.max().item(), "max_abs_voltage": scale,
            "max_rel_diff": diff.max().item() / scale,
            "max_abs_diff_last_step": diff[:, -1].max().item()}


def worker(args) -> dict:
    """One training step of one implementation in this process: time and peak memory."""
    import torch
    from _memory import timed_steps

    from sparselinear import memory
    from sparselinear.memory.peak import PeakTracker

    torch.set_num_threads(args.threads)
    memory.follow_live_memory()
    memory.warm_up()
    spec = torch.load(args.spec)
    n, inputs, outputs = spec["n"], spec["inputs"].clone(), spec["outputs"].clone()
    del spec  # loaded again below the baseline: ours is built from it
    g = torch.Generator().manual_seed(1)
    x_in = 0.5 * torch.rand(args.batch, args.steps, inputs.numel(), generator=g)
    target = torch.randn(args.batch, args.steps, N_OUT, generator=g)
    if args.impl == "flyvis":
        _flyvis_network()  # import and build once: its derived connectome is cached on disk
        x = torch.zeros(args.batch, args.steps, n)
        x[:, :, inputs] = x_in
    else:
        x = x_in
    memory.release_free_memory()
    tracker = PeakTracker("cpu")
    base = tracker.current()
    if args.impl == "flyvis":
        model = _flyvis_network()

        def forward():
            return model(x, DT)[:, :, outputs]
    else:
        spec = torch.load(args.spec)
        model = build_ours(spec)
        del spec

        def forward():
            return model(x)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-3)
    memory.release_free_memory()
    resident = tracker.current() - base

    def step():
        torch.nn.functional.mse_loss(forward(), target).backward()
        opt.step()
        opt.zero_grad()

    times, peak = timed_steps(step, args.repeats, tracker, base)  # the first is a warm-up
    result = {"impl": args.impl, "seconds": statistics.median(times[1:] or times),
              "all_seconds": times, "peak": peak, "resident_before_step": resident,
              "trained_parameters": sum(p.numel() for p in params),
              "torch": torch.__version__}
    if args.impl == "ours":
        result["estimate"] = memory.estimate(model, batch_size=args.batch,
                                             steps=args.steps).total
    return result


def _run(args, impl: str, spec: Path) -> dict:
    cmd = [sys.executable, __file__, "--worker", "--impl", impl, "--spec", str(spec),
           "--batch", str(args.batch), "--steps", str(args.steps), "--repeats",
           str(args.repeats), "--threads", str(args.threads)]
    from _memory import worker_result

    return worker_result(cmd, impl, ROOT)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--check-batch", type=int, default=2)
    parser.add_argument("--check-steps", type=int, default=100)
    parser.add_argument("--impls", nargs="+", choices=("ours", "flyvis"),
                        default=["ours", "flyvis"], help="time only these (default: both)")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--impl", default="ours", help=argparse.SUPPRESS)
    parser.add_argument("--spec", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return {}
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "ours.pt"
        results = {"batch": args.batch, "steps": args.steps, "threads": args.threads,
                   "check": check(args, spec)}
        print(json.dumps(results["check"], indent=2), flush=True)
        for impl in ("ours", "flyvis"):
            if impl not in args.impls:
                results[impl] = {"impl": impl, "skipped": "not asked for"}
                continue
            results[impl] = _run(args, impl, spec)
            print(json.dumps(results[impl]), flush=True)
    _report(results)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))
    return results


def _report(r: dict) -> None:
    c = r["check"]
    print(f"{c['neurons']:,} neurons, {c['edges']:,} edges, {c['groups']} strengths; activity "
          f"over {c['check_steps']} steps: max |difference| {c['max_abs_diff']:.3g} "
          f"(voltages up to {c['max_abs_voltage']:.3g})")
    print(f"batch {r['batch']}, T = {r['steps']}, {r['threads']} threads")
    print("| implementation | s / training step | peak memory |")
    print("|---|---|---|")
    for name in ("ours", "flyvis"):
        res = r[name]
        label = "ConnectomeRNN" if name == "ours" else "flyvis 1.2.0 Network"
        if "seconds" in res:
            print(f"| {label} | {res['seconds']:.3f} | {res['peak'] / 1e9:.3f} GB |")
        else:
            print(f"| {label} | - | {res.get('skipped') or res.get('error')} |")
    ours, theirs = r["ours"], r["flyvis"]
    if "seconds" in ours and "seconds" in theirs:
        print(f"ours / flyvis: time {ours['seconds'] / theirs['seconds']:.3f}, peak "
              f"{ours['peak'] / theirs['peak']:.3f}; estimate {ours['estimate'] / 1e9:.3f} GB")


if __name__ == "__main__":
    main()
