"""Reading graphs into plain arrays: edge lists with named nodes (files, DataFrames, rows,
networkx graphs), node names, and adjacency files (scipy ``.npz``, Matrix Market ``.mtx``).
:class:`~sparselinear.Connectivity` wraps what they return (``Connectivity.from_edgelist``)."""

from .adjacency import load_adjacency
from .edgelist import Edges, edge_rows, networkx_edges, read_edges

__all__ = ["Edges", "edge_rows", "load_adjacency", "networkx_edges", "read_edges"]
