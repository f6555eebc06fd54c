"""The C. elegans connectome as leaky rate dynamics, trained through time.

Every one of the 309 neurons is a leaky unit, every chemical synapse an edge whose weight is
``sign · synapse count · strength`` (the shipped counts of White et al. 1986; GABAergic neurons
inhibitory, the rest excitatory). A pulse on the amphid sensory neurons (named) must drive the
forward-locomotion motor neurons (named) to a target rhythm. Strengths, time constants and
resting potentials train by backpropagation through time.

    python examples/celegans_dynamics.py [--epochs 150] [--steps 60]
"""

from __future__ import annotations

import argparse
import math

import torch

from sparselinear import ConnectomeRNN
from sparselinear.datasets import load_celegans

SENSORY = ("ASEL", "ASER", "AWCL", "AWCR", "ASHL", "ASHR")
MOTOR = ("VB", "DB")  # forward locomotion
GABAERGIC = ("DD", "VD", "RME", "RIS", "AVL", "DVB")  # inhibitory where known


def build(dt: float) -> ConnectomeRNN:
    conn, counts = load_celegans("chemical")
    names = conn.out_names
    signs = torch.tensor([-1 if n.startswith(GABAERGIC) else 1 for n in names])
    motor = [n for n in names if n.startswith(MOTOR) and n[2:].isdigit()]
    return ConnectomeRNN(conn, syn_count=counts, signs=signs, dt=dt, time_const=0.1,
                         input_neurons=list(SENSORY), output_neurons=motor)


def task(steps: int, dt: float, n_out: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A stimulus pulse on the sensory neurons; target: a travelling wave on the motor
    neurons that starts with the pulse."""
    t = torch.arange(steps) * dt
    x = torch.zeros(1, steps, len(SENSORY))
    x[:, : steps // 4] = 1.0
    phase = torch.linspace(0, math.pi, n_out)
    target = 0.5 * torch.sin(2 * math.pi * t[:, None] - phase) * (t[:, None] > 0.1)
    return x, target[None]


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--steps", type=int, default=60, help="simulated time steps")
    parser.add_argument("--dt", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads; for 309 neurons more threads only add "
                             "synchronisation cost")
    args = parser.parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _train(args)
    finally:
        torch.set_num_threads(threads)


def _train(args: argparse.Namespace) -> dict[str, float]:
    torch.manual_seed(args.seed)
    rnn = build(args.dt)
    x, target = task(args.steps, args.dt, rnn.n_outputs)
    opt = torch.optim.Adam(rnn.parameters(), lr=0.05)
    losses = []
    for epoch in range(args.epochs):
        loss = torch.nn.functional.mse_loss(rnn(x), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if epoch % max(1, args.epochs // 5) == 0 or epoch == args.epochs - 1:
            print(f"epoch {epoch:4d}  loss {loss.item():.4f}")
    print(f"{rnn.n_neurons} neurons, {rnn.nnz} synapses, {rnn.syn_strength.numel()} strengths; "
          f"{len(SENSORY)} sensory -> {rnn.n_outputs} motor neurons")
    return {"loss_start": losses[0], "loss_end": min(losses)}


if __name__ == "__main__":
    main()
