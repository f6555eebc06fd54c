"""PyTorch linear layers whose connectivity is a sparse graph.

The weight holds only the values at the edges of an adjacency pattern; forward and backward run
through sparse kernels and never allocate anything of size ``out_features x in_features``.
"""

from . import (
    constraints,
    convert,
    datasets,
    edgelist,
    errors,
    functional,
    kernels,
    memory,
    patterns,
    setops,
    structured,
)
from .connectivity import Connectivity
from .errors import SparseLinearError
from .linear import SparseLinear
from .structured import PositiveDefiniteLinear, TriangularLinear

__all__ = [
    "Connectivity",
    "PositiveDefiniteLinear",
    "SparseLinear",
    "SparseLinearError",
    "TriangularLinear",
    "constraints",
    "convert",
    "datasets",
    "edgelist",
    "errors",
    "functional",
    "kernels",
    "memory",
    "patterns",
    "setops",
    "structured",
]
__version__ = "0.1.0"
