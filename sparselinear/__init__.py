"""PyTorch linear layers whose connectivity is a sparse graph.

The weight holds only the values at the edges of an adjacency pattern; forward and backward run
through sparse kernels and never allocate anything of size ``out_features x in_features``.
"""

from . import errors, functional
from .connectivity import Connectivity
from .errors import SparseLinearError
from .linear import SparseLinear

__all__ = ["Connectivity", "SparseLinear", "SparseLinearError", "errors", "functional"]
__version__ = "0.1.0"
