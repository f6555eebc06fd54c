"""Reading graphs into plain arrays: edge lists with named nodes (CSV/TSV, compressed, Parquet,
Feather, DataFrames, pyarrow Tables, rows, networkx graphs), neuron tables, node names, the
streaming export of edge lists, and scipy matrix files (``.npz``, Matrix Market ``.mtx``).
[`Connectivity`][sparselinear.Connectivity] wraps what they return
(``Connectivity.from_edgelist``)."""

from .adjacency import adjacency_kind, read_matrix
from .edgelist import Edges, edge_rows, networkx_edges, read_edges
from .neurons import NT_SIGNS, NeuronTable, neurotransmitter_signs, read_neurons
from .writer import write_edges

__all__ = ["NT_SIGNS", "Edges", "NeuronTable", "adjacency_kind", "edge_rows",
           "networkx_edges", "neurotransmitter_signs", "read_edges", "read_matrix",
           "read_neurons", "write_edges"]
