"""Train a small graph-defined network end to end and print what it cost.

A two-layer network whose first layer is wired by a random sparse graph (2,000 inputs, 1,000
hidden units, 2 % of the possible edges) learns a linear teacher that uses the same wiring.

    python examples/quickstart.py
"""

from __future__ import annotations

import time

import torch
from torch import nn

from sparselinear import Connectivity, SparseLinear


def main(steps: int = 200, seed: int = 0) -> float:
    torch.manual_seed(seed)
    n_in, n_hidden, n_out, batch = 2_000, 1_000, 10, 64
    wiring = Connectivity.random(n_hidden, n_in, density=0.02, seed=seed)
    teacher = nn.Sequential(
        SparseLinear(n_in, n_hidden, wiring), nn.Tanh(), nn.Linear(n_hidden, n_out)
    )
    model = nn.Sequential(
        SparseLinear(n_in, n_hidden, wiring), nn.Tanh(), nn.Linear(n_hidden, n_out)
    )
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    x_test = torch.randn(512, n_in)
    with torch.no_grad():
        y_test = teacher(x_test)
    start = time.perf_counter()
    for _ in range(steps):
        x = torch.randn(batch, n_in)
        with torch.no_grad():
            y = teacher(x)
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    elapsed = time.perf_counter() - start
    with torch.no_grad():
        test_loss = nn.functional.mse_loss(model(x_test), y_test).item()
        base = y_test.var().item()
    sparse = model[0]
    sparse_bytes = sparse.weight.numel() * 4 + sum(
        b.numel() * b.element_size() for b in sparse.buffers()
    )
    print(sparse)
    print(
        f"trained {steps} Adam steps in {elapsed:.2f} s; test MSE {test_loss:.4f} "
        f"(predicting the mean: {base:.4f})"
    )
    print(
        f"sparse layer: {sparse_bytes / 1e6:.2f} MB (values + pattern); "
        f"dense nn.Linear weight would be {n_in * n_hidden * 4 / 1e6:.1f} MB"
    )
    return test_loss / base


if __name__ == "__main__":
    main()
