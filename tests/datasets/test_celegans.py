import csv
from collections import defaultdict

import pytest
import torch

from sparselinear import SparseLinear
from sparselinear.datasets import celegans_path, load_celegans
from sparselinear.errors import DataError


@pytest.fixture(scope="module")
def raw():
    with open(celegans_path(), newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def expected_weights(raw, kinds, symmetric=True):
    """{(post, pre): count} from the file with plain Python, the independent reference."""
    out = defaultdict(float)
    for r in raw:
        if r["type"] not in kinds:
            continue
        out[r["post"], r["pre"]] += float(r["synapses"])
        if r["type"] == "electrical" and symmetric and r["pre"] != r["post"]:
            out[r["pre"], r["post"]] += float(r["synapses"])
    return dict(out)


def as_dict(conn, counts):
    rows, cols = conn.indices().tolist()
    return {
        (conn.out_names[r], conn.in_names[c]): v for r, c, v in zip(rows, cols, counts.tolist(),
                                                                     strict=True)
    }


@pytest.mark.parametrize(
    "synapse_type,kinds",
    [("chemical", {"chemical"}), ("electrical", {"electrical"}),
     ("all", {"chemical", "electrical"})],
)
def test_matches_the_file(raw, synapse_type, kinds):
    conn, counts = load_celegans(synapse_type)
    names = sorted({r["pre"] for r in raw} | {r["post"] for r in raw})
    assert conn.shape == (len(names), len(names)) == (309, 309)
    assert conn.out_names == conn.in_names == tuple(names)
    assert counts.dtype == torch.get_default_dtype() and counts.shape == (conn.nnz,)
    assert as_dict(conn, counts) == expected_weights(raw, kinds)


def test_electrical_symmetry_and_orientation(raw):
    conn, _ = load_celegans("electrical")
    dense = conn.to_dense()
    assert torch.equal(dense, dense.T)
    one_way, _ = load_celegans("electrical", symmetric_electrical=False)
    assert one_way.nnz == sum(r["type"] == "electrical" for r in raw)
    chem, _ = load_celegans()
    first = next(r for r in raw if r["type"] == "chemical")  # pre -> post: W[post, pre]
    assert chem.to_dense()[chem.out_index(first["post"]), chem.in_index(first["pre"])]


def test_plugs_into_a_recurrent_layer():
    conn, counts = load_celegans("all")
    layer = SparseLinear(conn.in_features, conn.out_features, conn)
    with torch.no_grad():
        layer.weight.copy_(counts / counts.max())
    h = layer(torch.zeros(2, 309).index_fill_(1, torch.tensor([conn.in_index("ASHL")]), 1.0))
    assert h.shape == (2, 309) and layer.in_names[0] == "ADAL"


def test_bad_synapse_type():
    with pytest.raises(DataError, match="'synapse_type' must be one of"):
        load_celegans("gap")
