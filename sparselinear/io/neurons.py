"""Neuron tables (one row per neuron: an id column and attributes such as cell type, side or
neurotransmitter) and the signs of neurotransmitters for Dale's law.

A neuron table passed as ``nodes=`` to [`read_edges`][sparselinear.io.read_edges] (a
[`NeuronTable`][sparselinear.io.NeuronTable], a DataFrame or a table file) fixes the node order
(neurons without edges kept); its other columns become per-node attributes of the pattern,
aligned with that order, e.g. for [`Dale`][sparselinear.constraints.Dale]:

    neurons = read_neurons("neurons.csv.gz", id="root_id")
    conn, counts = Connectivity.from_edgelist("connections.csv.gz", source="pre_root_id",
                                              target="post_root_id", weight="syn_count",
                                              nodes=neurons, duplicates="sum")
    conn.in_attributes["cell_type"]                     # one per neuron, in node order
    dale = Dale.from_attribute(conn, "nt_type")         # signs through NT_SIGNS
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DataError, SparseLinearTypeError, describe
from .columnar import is_arrow_source, read_columns
from .intids import text_ids
from .names import check_names
from .stream import Selection
from .table import Column, read_table

__all__ = ["NT_SIGNS", "NeuronTable", "neuron_table", "neurotransmitter_signs", "read_neurons"]

#: Sign of each neurotransmitter (lower-case; FlyWire's abbreviations included), as in the
#: whole-brain fly models: acetylcholine excites, GABA and glutamate inhibit. Modulatory
#: transmitters are 0 (no fixed sign); override any entry with ``neurotransmitter_signs(...,
#: signs={...})``.
NT_SIGNS: dict[str, int] = {
    "acetylcholine": 1, "ach": 1, "gaba": -1, "glutamate": -1, "glut": -1,
    "dopamine": 0, "da": 0, "serotonin": 0, "ser": 0, "octopamine": 0, "oct": 0,
}


@dataclass(frozen=True)
class NeuronTable:
    """Neuron ids (an integer array or a tuple of strings) in node order, and per-neuron
    attributes (``{column: numpy array}``, aligned with ``ids``)."""

    ids: Any
    attributes: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)


def neuron_table(nodes: Any) -> NeuronTable | None:
    """``nodes`` as a ``NeuronTable`` where it is one (or a table: a file path, a
    pandas/polars DataFrame or a pyarrow Table, read with its first column as the ids), else
    ``None`` (a list of names)."""
    if isinstance(nodes, NeuronTable):
        return nodes
    tabular = (isinstance(nodes, (str, os.PathLike)) or is_arrow_source(nodes)
               or (type(nodes).__module__.startswith("pandas") and hasattr(nodes, "columns")))
    return read_neurons(nodes) if tabular else None


def read_neurons(data: Any, *, id: Column = 0, columns: list[Column] | None = None,
                 sep: str | None = None) -> NeuronTable:
    """Read a neuron table (a CSV/TSV/Parquet/Feather file, or a pandas/polars DataFrame or
    pyarrow Table): column ``id`` holds one distinct id per neuron, in node order; ``columns``
    (default: all others) become attributes, numbers typed as numbers.

    Examples:
        >>> t = read_neurons({"root_id": [7, 3], "nt_type": ["ACH", "GABA"]}, id="root_id")
        >>> t.ids.tolist(), t.attributes["nt_type"].tolist()
        ([7, 3], ['ACH', 'GABA'])
    """
    source = Path(data) if isinstance(data, (str, os.PathLike)) else data
    probe = read_columns(source, Selection([id], [id]), sep, True, None)
    names = probe.names if probe is not None else read_table(data, sep, True, None).names
    wanted = [id, *[c for c in (names if columns is None else columns)
                    if c != id and c != (names[id] if isinstance(id, int) else id)]]
    table = read_columns(source, Selection(wanted, [id]), sep, True, None)
    if table is None:
        table = read_table(data, sep, True, None)
    raw = table.column(id, "id")
    ids = raw if raw.dtype.kind in "iu" else text_ids(
        np.char.strip(raw.astype(str)).astype(object))
    ids = check_names(ids if ids.dtype.kind in "iu" else list(ids), len(ids), "neuron ids")
    attributes = {str(c): _typed(table.column(c, "columns")) for c in wanted[1:]}
    return NeuronTable(ids, attributes)


def _typed(values: np.ndarray) -> np.ndarray:
    """An attribute column of one type, whatever reader read it: integers or floats where
    every value is one, else text (a file read in blocks may have typed some blocks as
    numbers and others as text)."""
    if values.dtype != object:
        return values
    items = values.tolist()
    if all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in items):
        return np.asarray(items)
    if not all(isinstance(v, str) for v in items):
        items = [str(v) for v in items]
    text = np.empty(len(items), dtype=object)
    text[:] = items
    for dtype in (np.int64, np.float64):
        try:
            return text.astype(dtype)
        except (ValueError, OverflowError):
            continue
    return text


def neurotransmitter_signs(values: Any, signs: Mapping[str, int] | None = None,
                           *, unknown: int | None = None) -> torch.Tensor:
    """Per-neuron signs (+1, -1 or 0) of neurotransmitter names, for
    [`Dale`][sparselinear.constraints.Dale] (``input_signs``).

    Args:
        values: one neurotransmitter name per neuron (case and surrounding blanks ignored).
        signs: entries that override or extend [`NT_SIGNS`][sparselinear.io.NT_SIGNS], e.g.
            ``{"dopamine": 1}``.
        unknown: the sign of a name in neither table (``None``: such a name raises).

    Examples:
        >>> neurotransmitter_signs(["ACH", "gaba", "Glutamate", "DA"]).tolist()
        [1, -1, -1, 0]
    """
    if isinstance(values, str) or not hasattr(values, "__len__"):
        raise SparseLinearTypeError(f"'values' must be a sequence of names; got "
                                    f"{describe(values)}.")
    table = {**NT_SIGNS, **{str(k).strip().lower(): int(v) for k, v in (signs or {}).items()}}
    keys = np.char.lower(np.char.strip(np.asarray(values, dtype=str)))
    uniq, inverse = np.unique(keys, return_inverse=True)
    missing = [u for u in uniq.tolist() if u not in table]
    if missing and unknown is None:
        raise DataError(f"No sign for neurotransmitter(s) {missing[:5]}; known: "
                        f"{sorted(table)}. Pass signs={{name: +1/-1/0}} or unknown=0.")
    out = np.array([table.get(u, unknown) for u in uniq.tolist()], dtype=np.int8)
    return torch.from_numpy(out[inverse.reshape(-1)].astype(np.int8))
