"""A whole-fly-brain-sized connectome model trained through time on a laptop.

138,639 neurons and 15.1 M random edges (the FlyWire v783 shape), strengths shared by a few
thousand cell-type groups, batch 4, 100 Euler steps per sample: a few training steps, with the
time per step, the measured peak memory and the estimate beside it. A per-edge gather /
scatter_add implementation would keep a batch x nnz tensor per step, printed for comparison.

    python examples/fly_scale_dynamics.py [--neurons 138639 --edges 15091983 --steps 100]
"""

from __future__ import annotations

import argparse
import time

import torch

from sparselinear import Connectivity, ConnectomeRNN, memory


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--neurons", type=int, default=138_639)
    parser.add_argument("--edges", type=int, default=15_091_983)
    parser.add_argument("--groups", type=int, default=5_000, help="shared strengths")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=100, help="simulated time steps")
    parser.add_argument("--train-steps", type=int, default=3)
    parser.add_argument("--checkpoint-every", type=int, default=None)
    args = parser.parse_args(argv)
    n, nnz = args.neurons, args.edges
    memory.follow_live_memory()  # the resident size follows the memory in use
    est = memory.estimate_dynamics(n, nnz=nnz, n_strengths=args.groups, n_outputs=100,
                                   batch_size=args.batch, steps=args.steps,
                                   checkpoint_every=args.checkpoint_every)
    print(f"estimated peak {memory.format_bytes(est.total)}; a gather/scatter_add "
          f"implementation would keep {memory.format_bytes(est.gather_scatter)} of edge tensors")
    g = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    conn = Connectivity.random(n, n, nnz=nnz, seed=0)
    rnn = ConnectomeRNN(
        conn, syn_count=torch.randint(1, 10, (nnz,), generator=g),
        signs=torch.where(torch.rand(n, generator=g) < 0.75, 1, -1),
        groups=torch.randint(0, args.groups, (nnz,), generator=g), n_groups=args.groups,
        syn_strength=0.01, input_neurons=range(min(n, 1000)),
        output_neurons=range(n - min(n, 100), n), checkpoint_every=args.checkpoint_every)
    print(f"built {rnn.n_neurons:,} neurons, {rnn.nnz:,} edges in {time.perf_counter() - t0:.1f} s")
    x = torch.randn(args.batch, args.steps, rnn.n_inputs, generator=g)
    target = torch.randn(args.batch, args.steps, rnn.n_outputs, generator=g)
    opt = torch.optim.Adam(rnn.parameters(), lr=1e-3)
    times = []
    with memory.track_peak() as peak:
        for step in range(args.train_steps):
            t0 = time.perf_counter()
            loss = torch.nn.functional.mse_loss(rnn(x), target)
            loss.backward()
            opt.step()
            opt.zero_grad()
            times.append(time.perf_counter() - t0)
            print(f"step {step}: loss {loss.item():.4f}, {times[-1]:.2f} s")
    print(f"peak memory {memory.format_bytes(peak.peak)} (process), "
          f"{memory.format_bytes(peak.increase)} for training")
    return {"seconds": min(times), "peak": peak.peak, "estimate": est.total}


if __name__ == "__main__":
    main()
