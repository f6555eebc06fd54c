"""Presets for the tables that connectome projects publish, each a thin mapping onto
[`Connectivity.from_edgelist`][sparselinear.Connectivity.from_edgelist]:

* FlyWire (whole fly brain): ``pre_root_id, post_root_id, neuropil, syn_count, nt_type``, one
  row per neuron pair *per neuropil* (pairs repeat and are summed), 18-digit int64 root ids;
  neurons ``root_id`` with cell type, side and predicted neurotransmitter.
* neuPrint exports (hemibrain, MANC): ``bodyId_pre, bodyId_post, weight``; neurons
  ``bodyId, type, instance``.

Any format the reader takes works: CSV/TSV (plain or ``.gz``/``.bz2``/``.xz``/``.zip``),
Parquet, Feather, or a DataFrame/pyarrow Table already in memory.
"""

from __future__ import annotations

from typing import Any

import torch

from ..io.neurons import NeuronTable, read_neurons
from ..pattern.connectivity import Connectivity

__all__ = ["FLYWIRE_THRESHOLD", "load_flywire", "load_neuprint"]

#: FlyWire users keep connections of at least 5 synapses (Dorkenwald et al. 2024).
FLYWIRE_THRESHOLD = 5


def _nodes(neurons: Any, id: str) -> NeuronTable | None:
    if neurons is None or isinstance(neurons, NeuronTable):
        return neurons
    return read_neurons(neurons, id=id)


def load_flywire(
    connections: Any,
    neurons: Any = None,
    *,
    threshold: int = FLYWIRE_THRESHOLD,
    neuropils: list[str] | None = None,
    progress: bool | None = None,
) -> tuple[Connectivity, torch.Tensor]:
    """The FlyWire connectome as an ``N x N`` pattern (rows: postsynaptic neurons).

    Args:
        connections: the connections table (``pre_root_id, post_root_id, neuropil, syn_count,
            nt_type``): a file or a table in memory.
        neurons: optional neuron table (``root_id`` and attributes), a file, table or
            [`NeuronTable`][sparselinear.io.NeuronTable]: its order is the node order,
            neurons without edges kept, and its other columns (cell type, side, ``nt_type``)
            become the pattern's per-node attributes (``connectivity.in_attributes``;
            [`Dale.from_attribute`][sparselinear.constraints.Dale.from_attribute] reads the
            signs from ``nt_type``). Default: the neurons of the kept connections, by id.
        threshold: keep rows with ``syn_count >= threshold`` (applied per neuropil row, as
            FlyWire's own tables do), default 5; ``0`` keeps every row.
        neuropils: keep only rows of these neuropils (default: all).

    Returns:
        ``(connectivity, syn_counts)``: names are the int64 root ids; the synapse counts of
        each pair, summed over neuropils, as a float tensor aligned with the weight order.

    Examples:
        >>> rows = {"pre_root_id": [720575940000000001, 720575940000000001, 720575940000000002],
        ...         "post_root_id": [720575940000000002] * 3, "neuropil": ["AL_L", "AL_R", "MB"],
        ...         "syn_count": [6, 9, 2], "nt_type": ["ACH", "ACH", "GABA"]}
        >>> c, counts = load_flywire(rows)
        >>> c.shape, counts.tolist(), c.in_names.tolist()[0]
        ((2, 2), [15.0], 720575940000000001)
    """
    where: list[tuple] = [("syn_count", ">=", threshold)] if threshold > 0 else []
    if neuropils is not None:
        where.append(("neuropil", "in", list(neuropils)))
    return Connectivity.from_edgelist(
        connections, source="pre_root_id", target="post_root_id", weight="syn_count",
        where=where or None, nodes=_nodes(neurons, "root_id"), duplicates="sum",
        progress=progress,
    )


def load_neuprint(
    connections: Any,
    neurons: Any = None,
    *,
    min_weight: int = 0,
    progress: bool | None = None,
) -> tuple[Connectivity, torch.Tensor]:
    """A neuPrint export (hemibrain, MANC) as an ``N x N`` pattern (rows: postsynaptic).

    Args:
        connections: ``bodyId_pre, bodyId_post, weight`` (a file or a table in memory).
        neurons: optional neuron table (``bodyId, type, instance``): node order, neurons
            without edges kept, and per-node attributes (``connectivity.in_attributes``).
        min_weight: keep connections with ``weight >= min_weight`` (default: all).

    Returns:
        ``(connectivity, weights)``: names are the body ids; repeated pairs are summed.

    Examples:
        >>> rows = {"bodyId_pre": [1, 2], "bodyId_post": [2, 3], "weight": [4, 7]}
        >>> c, w = load_neuprint(rows, {"bodyId": [3, 2, 1, 9], "type": ["a", "b", "c", "d"]})
        >>> c.shape, c.out_names.tolist(), w.tolist()
        ((4, 4), [3, 2, 1, 9], [7.0, 4.0])
    """
    where = [("weight", ">=", min_weight)] if min_weight > 0 else None
    return Connectivity.from_edgelist(
        connections, source="bodyId_pre", target="bodyId_post", weight="weight", where=where,
        nodes=_nodes(neurons, "bodyId"), duplicates="sum", progress=progress,
    )
