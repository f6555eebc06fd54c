"""Reading graphs into plain arrays: edge lists with named nodes (files, DataFrames, rows,
networkx graphs), node names, and scipy matrix files (``.npz``, Matrix Market ``.mtx``).
:class:`~sparselinear.Connectivity` wraps what they return (``Connectivity.from_edgelist``)."""

from .adjacency import adjacency_kind, read_matrix
from .edgelist import Edges, edge_rows, networkx_edges, read_edges

__all__ = ["Edges", "adjacency_kind", "edge_rows", "networkx_edges", "read_edges", "read_matrix"]
