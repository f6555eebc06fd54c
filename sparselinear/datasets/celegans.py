"""The *C. elegans* connectome shipped with the project, loaded as a pattern in one line.

The files ship inside the package, in ``sparselinear/datasets/data/`` (so every installation has
them); see ``data/README.md`` there for their sources and licences.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import DataError, check_choice
from ..pattern.connectivity import Connectivity

__all__ = ["DATA_DIR", "celegans_path", "load_celegans"]

# Package data (pyproject's package-data): the same place in a source checkout, an editable
# install and a wheel, wherever it is installed (a venv, --user, --target).
#: The folder the shipped data files are read from: ``data/`` inside this package
#: (``sparselinear/datasets/data/``), in a source checkout and in every installation.
DATA_DIR = Path(__file__).resolve().parent / "data"
_CELEGANS = "celegans_white1986.csv"
_SYNAPSE_TYPES = ("chemical", "electrical", "all")


def celegans_path() -> Path:
    """Path of the *C. elegans* connectome file (White et al. 1986, via ``cect`` 0.3.5)."""
    path = DATA_DIR / _CELEGANS
    if not path.is_file():
        raise DataError(
            f"The C. elegans data file is missing: expected {path}. It ships inside the "
            "package (sparselinear/datasets/data/); reinstall the package."
        )
    return path


def load_celegans(
    synapse_type: str = "chemical", *, symmetric_electrical: bool = True
) -> tuple[Connectivity, torch.Tensor]:
    """The *C. elegans* hermaphrodite connectome (White et al. 1986) as an ``N x N`` pattern.

    Rows are postsynaptic neurons (outputs), columns presynaptic neurons (inputs): the pattern
    plugs straight into ``SparseLinear(N, N, connectivity)`` as a recurrent weight. The same
    ``N`` neurons (every neuron in the file, sorted by name) index both sides whatever
    ``synapse_type`` is, so patterns of different types can be combined.

    Args:
        synapse_type: ``"chemical"`` (directed synapses), ``"electrical"`` (gap junctions) or
            ``"all"`` (both; counts of the same pre/post pair are added).
        symmetric_electrical: gap junctions conduct both ways but the file lists each pair once;
            if ``True`` (default) each is added in both directions with the same count.

    Returns:
        ``(connectivity, counts)``: the [`Connectivity`][sparselinear.Connectivity] with
        ``in_names``/``out_names`` set to the neuron names, and the synapse counts as a float tensor
        of shape ``(nnz,)`` aligned with the weight order (``connectivity.indices()``).

    Examples:
        >>> from sparselinear import SparseLinear
        >>> from sparselinear.datasets import load_celegans
        >>> c, counts = load_celegans("chemical")
        >>> c.shape, c.nnz
        ((309, 309), 2386)
        >>> c.out_names[:3]
        ('ADAL', 'ADAR', 'ADEL')
        >>> layer = SparseLinear(309, 309, c)  # recurrent weight: output = post, input = pre
    """
    check_choice(synapse_type, _SYNAPSE_TYPES, "synapse_type")
    path = celegans_path()
    columns = {"source": "pre", "target": "post", "weight": "synapses"}
    everything, _ = Connectivity.from_edgelist(path, **columns, duplicates="sum")
    nodes = everything.in_names

    def rows_of(kind: str) -> list[tuple]:
        conn, counts = Connectivity.from_edgelist(path, **columns, where={"type": kind},
                                                  nodes=nodes)
        return conn.to_edgelist(counts)

    rows: list[tuple] = []
    if synapse_type in ("chemical", "all"):
        rows += rows_of("chemical")
    if synapse_type in ("electrical", "all"):
        electrical = rows_of("electrical")
        if symmetric_electrical:
            reverse = [(b, a, n) for a, b, n in electrical if a != b]
            both, counts = Connectivity.from_edgelist(
                electrical + reverse, weight=2, nodes=nodes, duplicates="max"
            )
            electrical = both.to_edgelist(counts)
        rows += electrical
    return Connectivity.from_edgelist(rows, weight=2, nodes=nodes, duplicates="sum")

