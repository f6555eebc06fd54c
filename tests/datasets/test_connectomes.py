"""The FlyWire and neuPrint presets on small files written in exactly the published column
layouts (no network), neuron tables and neurotransmitter signs for Dale's law."""

import gzip

import numpy as np
import pytest
import torch

from sparselinear import SparseLinear
from sparselinear.constraints import Dale, constrain
from sparselinear.datasets import load_flywire, load_neuprint
from sparselinear.errors import DataError
from sparselinear.io import NT_SIGNS, neurotransmitter_signs, read_neurons

pytest.importorskip("pyarrow")
B = 720575940_000000000

CONNECTIONS = """pre_root_id,post_root_id,neuropil,syn_count,nt_type
{a},{b},AL_L,4,ACH
{a},{b},AL_R,3,ACH
{a},{b},MB_CA_L,9,ACH
{b},{c},LO_R,12,GABA
{c},{a},ME_L,2,GLUT
{c},{a},ME_R,5,GLUT
""".format(a=B + 30, b=B + 10, c=B + 20)
NEURONS = f"""root_id,cell_type,side,nt_type
{B + 20},Tm1,right,GLUT
{B + 10},Mi1,left,GABA
{B + 30},KC,left,ACH
{B + 40},LC4,right,DA
"""


def gz(tmp_path, name, text):
    path = tmp_path / name
    path.write_bytes(gzip.compress(text.encode()))
    return path


def test_flywire_threshold_is_per_neuropil_row_then_summed(tmp_path):
    conn, counts = load_flywire(gz(tmp_path, "connections.csv.gz", CONNECTIONS))
    assert conn.in_names.tolist() == [B + 10, B + 20, B + 30]
    got = {(int(t), int(s)): float(w) for s, t, w in conn.to_edgelist(counts)}
    assert got == {(B + 10, B + 30): 9.0, (B + 20, B + 10): 12.0, (B + 30, B + 20): 5.0}
    _conn0, counts0 = load_flywire(gz(tmp_path, "c.csv.gz", CONNECTIONS), threshold=0)
    assert sorted(counts0.tolist()) == [7.0, 12.0, 16.0]
    _conn_al, counts_al = load_flywire(gz(tmp_path, "c2.csv.gz", CONNECTIONS), threshold=0,
                                      neuropils=["AL_L", "AL_R"])
    assert counts_al.tolist() == [7.0]


def test_flywire_neuron_table_orders_nodes_and_gives_dale_signs(tmp_path):
    neurons = read_neurons(gz(tmp_path, "neurons.csv.gz", NEURONS), id="root_id")
    assert neurons.ids.tolist() == [B + 20, B + 10, B + 30, B + 40]
    conn, _counts = load_flywire(gz(tmp_path, "connections.csv.gz", CONNECTIONS), neurons)
    assert conn.shape == (4, 4) and conn.in_names.tolist() == neurons.ids.tolist()
    signs = neurotransmitter_signs(neurons.attributes["nt_type"])
    assert signs.tolist() == [-1, -1, 1, 0]
    layer = constrain(SparseLinear(4, 4, conn), Dale(conn, signs))
    col = conn.col_indices().long()
    w = layer.weight.detach()
    assert bool((w[signs[col] < 0] < 0).all() and (w[signs[col] > 0] > 0).all())


def test_flywire_neuron_attributes_travel_with_the_pattern(tmp_path):
    neurons = gz(tmp_path, "neurons.csv.gz", NEURONS)
    conn, _counts = load_flywire(gz(tmp_path, "connections.csv.gz", CONNECTIONS), neurons)
    assert sorted(conn.in_attributes) == ["cell_type", "nt_type", "side"]
    assert conn.out_attributes["cell_type"].tolist() == ["Tm1", "Mi1", "KC", "LC4"]
    by_hand = Dale(conn, neurotransmitter_signs(read_neurons(neurons, id="root_id")
                                                .attributes["nt_type"]))
    assert torch.equal(Dale.from_attribute(conn).signs, by_hand.signs)


def test_neurotransmitter_table_is_overridable():
    assert NT_SIGNS["acetylcholine"] == 1 and NT_SIGNS["gaba"] == -1
    assert neurotransmitter_signs(["DA", "ach"], {"dopamine": 1, "da": 1}).tolist() == [1, 1]
    with pytest.raises(DataError, match="No sign for neurotransmitter"):
        neurotransmitter_signs(["histamine"])
    assert neurotransmitter_signs(["histamine"], unknown=0).tolist() == [0]


def test_neuprint_layout_with_neuron_table(tmp_path):
    pd = pytest.importorskip("pandas")
    edges = tmp_path / "traced-total-connections.csv"
    edges.write_text("bodyId_pre,bodyId_post,weight\n1001,1002,12\n1002,1003,3\n1001,1002,1\n")
    neurons = pd.DataFrame({"bodyId": [1003, 1002, 1001, 1009], "type": ["a", "b", "c", "d"],
                            "instance": ["a_R", "b_L", "c_R", "d_L"]})
    conn, w = load_neuprint(edges, neurons)
    assert conn.out_names.tolist() == [1003, 1002, 1001, 1009]
    got = {(int(t), int(s)): float(x) for s, t, x in conn.to_edgelist(w)}
    assert got == {(1002, 1001): 13.0, (1003, 1002): 3.0}
    conn5, w5 = load_neuprint(edges, min_weight=5)
    assert conn5.nnz == 1 and w5.tolist() == [12.0]


def test_parquet_model_tables(tmp_path):
    pd = pytest.importorskip("pandas")
    path = tmp_path / "edges.parquet"
    pd.DataFrame({"pre": np.array([5, 6], dtype=np.int64), "post": [6, 5], "count": [3, 4],
                  "excitatory": [True, False]}).to_parquet(path)
    from sparselinear import Connectivity

    conn, w = Connectivity.from_edgelist(path, source="pre", target="post", weight="count",
                                         where={"excitatory": True})
    assert conn.nnz == 1 and w.tolist() == [3.0] and isinstance(w, torch.Tensor)
