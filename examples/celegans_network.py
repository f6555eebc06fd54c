"""The C. elegans connectome as a trainable recurrent network.

The 309 neurons and their synapses (White et al. 1986, shipped with the package in
``sparselinear/datasets/data/``) become the recurrent weight of an RNN; only the connections the
worm has exist. A left and a right stimulus channel drive the left and right amphid sensory
neurons (wired by name), and a readout of the motor neurons learns a chemotaxis-like decision:
which side had the stronger, noisy stimulus over the last few time steps. Everything is
generated here from a seed.

    python examples/celegans_network.py [--steps 200] [--time 8]
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

from sparselinear import Connectivity, SparseLinear
from sparselinear.datasets import load_celegans

SENSORY = ("ASE", "AWC", "ASH", "AWA", "AWB", "AFD", "ASI", "ASJ", "ASK", "ADF", "ADL", "ASG")
MOTOR = ("VA", "VB", "DA", "DB", "DD", "VD", "AS")


class ConnectomeRNN(nn.Module):
    """``h[t+1] = tanh(W_rec h[t] + W_in x[t] + b)``; logits from the motor neurons."""

    def __init__(self, connectome: Connectivity, counts: torch.Tensor) -> None:
        super().__init__()
        names = connectome.out_names
        n = len(names)
        self.recurrent = SparseLinear(n, n, connectome)
        with torch.no_grad():  # random signs, magnitudes growing with the synapse count
            strength = counts.log1p() / counts.log1p().mean()
            self.recurrent.weight.mul_(strength)
        # Stimulus channels "left"/"right" -> sensory neurons of that side, by name.
        edges = [(side, f"{cls}{side[0].upper()}") for cls in SENSORY for side in ("left", "right")]
        wiring = Connectivity.from_edgelist(edges, in_names=["left", "right"], out_names=names)
        self.sensory = SparseLinear(2, n, wiring, bias=False)
        self.motor = connectome.out_index([m for m in names if m.startswith(MOTOR)
                                           and m[len(m.rstrip("0123456789")):].isdigit()])
        self.readout = nn.Linear(self.motor.numel(), 2)

    def forward(self, stimulus: torch.Tensor) -> torch.Tensor:  # (batch, time, 2)
        h = stimulus.new_zeros(stimulus.shape[0], self.recurrent.out_features)
        for t in range(stimulus.shape[1]):
            h = torch.tanh(self.recurrent(h) + self.sensory(stimulus[:, t]))
        return self.readout(h[:, self.motor])


def make_data(n: int, time: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy left/right stimuli; label 1 when the left mean is larger."""
    means = torch.rand(n, 2, generator=generator)
    noise = 0.5 * torch.randn(n, time, 2, generator=generator)
    return means[:, None, :] + noise, (means[:, 0] > means[:, 1]).long()


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--time", type=int, default=8, help="time steps per trial")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads; for a 309-neuron network more threads only add "
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
    generator = torch.Generator().manual_seed(args.seed)

    connectome, counts = load_celegans("all")
    model = ConnectomeRNN(connectome, counts)
    print(f"connectome: {connectome}; {model.motor.numel()} motor neurons read out")
    x_test, y_test = make_data(1024, args.time, generator)

    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(args.steps):
        x, y = make_data(args.batch, args.time, generator)
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    with torch.no_grad():
        accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
    print(f"loss {losses[0]:.3f} -> {sum(losses[-20:]) / len(losses[-20:]):.3f}; "
          f"test accuracy {accuracy:.1%} (chance 50%)")
    strongest = model.recurrent.to_edgelist()
    strongest.sort(key=lambda row: -abs(row[2]))
    print("strongest learned connections (pre -> post, weight):")
    for pre, post, w in strongest[:5]:
        print(f"  {pre:>6} -> {post:<6} {w:+.3f}")
    return {"loss_start": losses[0], "loss_end": losses[-1], "accuracy": accuracy}


if __name__ == "__main__":
    main()
