"""PyTorch linear layers whose connectivity is a sparse graph.

The weight holds only the values at the edges of an adjacency pattern; forward and backward run
through sparse kernels and never allocate anything of size ``out_features x in_features``.

The package is laid out by stage, each subpackage with one job: [`io`][sparselinear.io] reads
graphs into plain arrays, [`pattern`][sparselinear.pattern] wraps them as a
[`Connectivity`][sparselinear.Connectivity], [`datasets`][sparselinear.datasets] loads shipped
connectomes, [`ops`][sparselinear.ops] runs the products, [`nn`][sparselinear.nn] holds the modules,
[`constraints`][sparselinear.constraints] the value constraints, [`memory`][sparselinear.memory]
estimates and measures, [`cli`][sparselinear.cli] is the command line.
"""

import sys

from . import constraints, datasets, errors, functional, memory, structured
from .errors import SparseLinearError
from .nn import ConnectomeRNN, PositiveDefiniteLinear, SparseLinear, TriangularLinear
from .ops import policy as kernels
from .pattern import Connectivity

# The kernel settings (backend, tuning constants) keep their 0.1 name: `sparselinear.kernels` is
# the dispatch policy module that holds them, so that assigning `kernels.CACHE_BYTES = 0` takes
# effect.
sys.modules[__name__ + ".kernels"] = kernels

__all__ = [
    "Connectivity",
    "ConnectomeRNN",
    "PositiveDefiniteLinear",
    "SparseLinear",
    "SparseLinearError",
    "TriangularLinear",
    "constraints",
    "datasets",
    "errors",
    "functional",
    "kernels",
    "memory",
    "structured",
]
__version__ = "0.1.0"
