"""Prune an nn.Linear with torch.nn.utils.prune, convert it to a SparseLinear, and compare memory.

The sparse layer computes the same function (the pruned weights are exactly zero in both) but
stores only the surviving weights and their pattern.

    python examples/pruned_linear.py [--in-features 4096] [--out-features 2048] [--amount 0.95]
"""

from __future__ import annotations

import argparse

import torch
from torch import nn
from torch.nn.utils import prune

from sparselinear import SparseLinear


def module_bytes(module: nn.Module) -> int:
    """Bytes held by a module's parameters and buffers."""
    return sum(t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers()))


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--in-features", type=int, default=4096)
    parser.add_argument("--out-features", type=int, default=2048)
    parser.add_argument("--amount", type=float, default=0.95, help="fraction of weights pruned")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)

    linear = nn.Linear(args.in_features, args.out_features)
    dense_bytes = module_bytes(linear)
    prune.l1_unstructured(linear, "weight", amount=args.amount)  # adds weight_orig + weight_mask
    pruned_bytes = module_bytes(linear)

    sparse = SparseLinear.from_linear(linear)  # reads linear.weight_mask
    sparse_bytes = module_bytes(sparse)
    print(sparse)

    x = torch.randn(32, args.in_features)
    with torch.no_grad():
        diff = (sparse(x) - linear(x)).abs().max().item()
    print(f"max |sparse(x) - linear(x)| = {diff:.2e}")
    print(f"dense nn.Linear:               {dense_bytes / 1e6:8.2f} MB")
    print(f"pruned nn.Linear (with mask):  {pruned_bytes / 1e6:8.2f} MB")
    print(f"SparseLinear:                  {sparse_bytes / 1e6:8.2f} MB "
          f"({dense_bytes / sparse_bytes:.1f}x smaller than dense, "
          f"{pruned_bytes / sparse_bytes:.1f}x smaller than pruned)")
    return {"max_abs_diff": diff, "dense_bytes": dense_bytes, "pruned_bytes": pruned_bytes,
            "sparse_bytes": sparse_bytes, "nnz": sparse.nnz}


if __name__ == "__main__":
    main()
