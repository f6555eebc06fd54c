"""The layers compared by ``compare.py``, each built from one CSR pattern and initial values.

Every implementation is an ``nn.Module`` mapping ``(batch, in)`` to ``(batch, out)`` with a bias,
whose initial weights are the pattern's ``values`` (so all of them compute the same function and
their outputs and gradients can be checked against each other), and with ``edge_grad()``
returning the weight gradient per edge in the pattern's CSR order. Peers are imported only when
built, so this module loads in any of the benchmark virtualenvs.

``estimate_bytes`` is a rough upper bound of a training step's memory above the input data
(fp32, Adam), used to skip what cannot fit instead of running it.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass

GB = 1 << 30


@dataclass(frozen=True)
class Impl:
    name: str
    label: str
    #: virtualenv under benchmarks/.venv-peers/, or None for the repository's own environment
    venv: str | None
    #: "ours", "peer" (a package users would install) or "baseline" (plain PyTorch)
    role: str
    #: (n_out, n_in, nnz, batch) -> bytes
    estimate: Callable[[int, int, int, int], float]
    what: str




def _wrap(layer, grad_attr: str):
    """``layer`` as an ``nn.Module`` whose per-edge weight gradient is
    ``layer.<grad_attr>.grad`` (torch is imported here: this module loads in every venv)."""
    from torch import nn

    class Wrapped(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = layer

        def forward(self, x):
            return self.layer(x)

        def edge_grad(self):
            return getattr(self.layer, grad_attr).grad

    return Wrapped()

def _act(n_out, n_in, batch, copies=8):
    return copies * 4.0 * batch * (n_out + n_in)


IMPLS: dict[str, Impl] = {
    i.name: i
    for i in [
        Impl("ours", "sparselinear (ours)", None, "ours",
             # 28 B/edge of state + gradient/permutation temporaries; building the pattern
             # from CSR briefly needs int64 coordinates and a sort (~64 B/edge).
             lambda o, i, e, b: 64.0 * e + _act(o, i, b) + 0.2 * GB,
             "SparseLinear: CSR SpMM forward / grad-input, SDDMM grad-weight"),
        Impl("dense_masked", "dense nn.Linear × mask", None, "baseline",
             # weight, grad, 2 Adam moments, float mask, masked weight, its gradient
             lambda o, i, e, b: 28.0 * o * i + _act(o, i, b) + 0.2 * GB,
             "nn.Linear weight multiplied by a 0/1 float mask in forward"),
        Impl("torch_coo", "torch.sparse.mm (COO)", None, "baseline",
             # backward materialises a dense (out, in) gradient (DESIGN.md), plus a copy
             lambda o, i, e, b: 8.0 * o * i + 48.0 * e + _act(o, i, b) + 0.2 * GB,
             "torch.sparse_coo_tensor(indices, values Parameter) @ x.T"),
        Impl("torch_sparse", "torch-sparse 0.6.18", "torch_sparse", "peer",
             # rowptr/row/col/colptr/csr2csc int64, values + grad + Adam, batch x nnz temps
             lambda o, i, e, b: 64.0 * e + 8.0 * b * e + _act(o, i, b) + 0.2 * GB,
             "SparseTensor(rowptr, col, value=Parameter) @ x.T"),
        Impl("kpnn2", "kpnn2 0.3.0 PackedLinear", "kpnn2", "peer",
             # int64 indices, values + grad + Adam, ~5 batch x nnz gather/scatter temporaries
             lambda o, i, e, b: 48.0 * e + 20.0 * b * e + _act(o, i, b) + 0.2 * GB,
             "PackedLinear: x[..., source] * w, index_add_ into outputs"),
        Impl("pypi_sparselinear", "sparselinear 0.0.5 (PyPI)", "pypi_sparselinear", "peer",
             # int64 COO indices, coalesce, torch_sparse.spmm gather/scatter_add temporaries
             lambda o, i, e, b: 64.0 * e + 20.0 * b * e + _act(o, i, b) + 0.2 * GB,
             "SparseLinear(connectivity=indices): torch_sparse.spmm gather + scatter_add"),
        Impl("sparseprop", "sparseprop 0.1.14", "sparseprop", "peer",
             # int32 CSR, values + grad + Adam, zero-filled transposed activations
             lambda o, i, e, b: 40.0 * e + _act(o, i, b) + 0.2 * GB,
             "SparseLinear with CSR fields set directly; AVX2/OpenMP C++ kernels"),
    ]
}

PEERS = [n for n, i in IMPLS.items() if i.role == "peer"]


# ---------------------------------------------------------------------------- builders
# Each takes (torch, arrays) with arrays = dict(crow, col, values, shape) as numpy, and returns
# a module with .edge_grad(). Only torch and numpy are imported at module level.


_MODULES = {"ours": ["sparselinear"], "torch_sparse": ["torch_sparse"], "kpnn2": ["kpnn2"],
            "pypi_sparselinear": ["torch_sparse", "sparselinear"],
            "sparseprop": ["sparseprop.modules.linear"]}


def preload(name: str) -> None:
    """Import what ``name`` needs and run a tiny training step of a plain ``nn.Linear``, so
    that libraries and PyTorch's own lazily created state are resident before memory is
    measured (they are not part of a layer's cost)."""
    import importlib

    import torch

    for module in _MODULES.get(name, []):
        importlib.import_module(module)
    layer = torch.nn.Linear(64, 64)
    opt = torch.optim.Adam(layer.parameters())
    x = torch.randn(16, 64, requires_grad=True)
    layer(x).square().mean().backward()
    opt.step()


def _rows(np, crow):
    return np.repeat(np.arange(crow.size - 1, dtype=np.int64), np.diff(crow))


def build(name: str, arrays: dict, options: dict | None = None):
    """Build implementation ``name`` for the pattern ``arrays``."""
    import numpy as np
    import torch

    options = options or {}
    n_out, n_in = (int(v) for v in arrays["shape"])
    crow, col, values = arrays["crow"], arrays["col"], arrays["values"]
    nn = torch.nn
    values_t = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))

    if name == "ours":
        import sparselinear as sl

        conn = sl.Connectivity.from_csr(torch.from_numpy(crow), torch.from_numpy(col),
                                        (n_out, n_in))
        kwargs = {}
        mode = options.get("mode")
        if mode is not None:
            if "mode" not in inspect.signature(sl.SparseLinear).parameters:
                raise RuntimeError("this version of SparseLinear has no 'mode' argument")
            kwargs["mode"] = mode
        layer = sl.SparseLinear(n_in, n_out, conn, **kwargs)
        with torch.no_grad():
            layer.weight.copy_(values_t)
            layer.bias.zero_()

        class Ours(nn.Module):
            def __init__(self):
                super().__init__()
                self.layer = layer

            def forward(self, x):
                return self.layer(x)

            def edge_grad(self):
                return self.layer.weight.grad

            def describe(self):
                # e.g. "mode=auto(dense)" in the repr: the mode the layer actually runs in
                text = repr(self.layer)
                found = re.search(r"mode=(\w+(\(\w+\))?)", text)
                mode = found.group(1) if found else getattr(self.layer, "mode", None)
                return {"mode": mode, "repr": text}

        return Ours()

    if name == "dense_masked":

        class DenseMasked(nn.Module):
            def __init__(self):
                super().__init__()
                self.linear = nn.Linear(n_in, n_out)
                rows = torch.from_numpy(_rows(np, crow))
                cols = torch.from_numpy(col.astype(np.int64))
                mask = torch.zeros(n_out, n_in)
                mask[rows, cols] = 1.0
                self.register_buffer("mask", mask)
                with torch.no_grad():
                    self.linear.weight.zero_()
                    self.linear.weight[rows, cols] = values_t
                    self.linear.bias.zero_()
                self._rows, self._cols = rows, cols

            def forward(self, x):
                return nn.functional.linear(x, self.linear.weight * self.mask, self.linear.bias)

            def edge_grad(self):
                return self.linear.weight.grad[self._rows, self._cols]

        return DenseMasked()

    if name == "torch_coo":

        class CooLinear(nn.Module):
            def __init__(self):
                super().__init__()
                rows = torch.from_numpy(_rows(np, crow))
                cols = torch.from_numpy(col.astype(np.int64))
                self.register_buffer("indices", torch.stack([rows, cols]))
                self.weight = nn.Parameter(values_t.clone())
                self.bias = nn.Parameter(torch.zeros(n_out))

            def forward(self, x):
                w = torch.sparse_coo_tensor(self.indices, self.weight, (n_out, n_in),
                                            is_coalesced=True)
                return torch.sparse.mm(w, x.t()).t() + self.bias

            def edge_grad(self):
                g = self.weight.grad
                return g.to_dense() if g.is_sparse else g

        return CooLinear()

    if name == "torch_sparse":
        from torch_sparse import SparseTensor

        class TorchSparseLinear(nn.Module):
            def __init__(self):
                super().__init__()
                self.weight = nn.Parameter(values_t.clone())
                self.bias = nn.Parameter(torch.zeros(n_out))
                self.adj = SparseTensor(
                    rowptr=torch.from_numpy(crow), col=torch.from_numpy(col.astype(np.int64)),
                    value=self.weight, sparse_sizes=(n_out, n_in), is_sorted=True,
                    trust_data=True,
                )

            def forward(self, x):
                return (self.adj @ x.t()).t() + self.bias

            def edge_grad(self):
                return self.weight.grad

        return TorchSparseLinear()

    if name == "kpnn2":
        import kpnn2

        rows = torch.from_numpy(_rows(np, crow))
        layer = kpnn2.PackedLinear(torch.from_numpy(col.astype(np.int64)), rows, n_out, n_in)
        with torch.no_grad():
            layer.weight.copy_(values_t)
            layer.bias.zero_()

        return _wrap(layer, "weight")

    if name == "pypi_sparselinear":
        import sparselinear as pypi_sl

        if not hasattr(pypi_sl, "SparseLinear") or hasattr(pypi_sl, "Connectivity"):
            raise RuntimeError("this 'sparselinear' is not the PyPI 0.0.5 package")
        rows = torch.from_numpy(_rows(np, crow))
        idx = torch.stack([rows, torch.from_numpy(col.astype(np.int64))])
        layer = pypi_sl.SparseLinear(n_in, n_out, connectivity=idx)
        with torch.no_grad():
            # It coalesces (sorts row-major) the indices: the same order as our CSR.
            if not torch.equal(layer.indices, idx):
                raise RuntimeError("unexpected edge order after coalesce")
            layer.weights.copy_(values_t)
            layer.bias.zero_()

        return _wrap(layer, "weights")

    if name == "sparseprop":
        from sparseprop.modules.linear import SparseLinear as SpLinear

        # Its constructor takes a dense weight (out x in): set the CSR fields directly instead,
        # as the constructor would (int32 indptr / indices, float32 values).
        layer = SpLinear.__new__(SpLinear)
        nn.Module.__init__(layer)
        layer.N, layer.M = n_out, n_in
        layer.W_val = nn.Parameter(values_t.clone())
        layer.W_idx = (torch.from_numpy(crow.astype(np.int32)),
                       torch.from_numpy(col.astype(np.int32)))
        layer.bias = nn.Parameter(torch.zeros(n_out))

        return _wrap(layer, "W_val")

    raise KeyError(f"unknown implementation {name!r}; choose from {sorted(IMPLS)}")
