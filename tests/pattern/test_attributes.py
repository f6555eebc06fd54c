"""Per-node attributes on a Connectivity: a neuron table's columns, in node order, checked,
read-only, kept by the operations that keep the node order (and swapped by the transpose), on a
layer built on the pattern, and read by ``Dale.from_attribute``."""

import gzip

import numpy as np
import pytest
import torch

from sparselinear import Connectivity, SparseLinear
from sparselinear.constraints import Dale, constrain
from sparselinear.errors import DataError, ShapeError, SparseLinearTypeError
from sparselinear.io import read_neurons

pd = pytest.importorskip("pandas")

EDGES = [(30, 10, 9.0), (10, 20, 12.0), (20, 30, 5.0)]
NEURONS = {"root_id": [20, 10, 30, 40], "cell_type": ["Tm1", "Mi1", "KC", "LC4"],
           "nt_type": ["GLUT", "GABA", "ACH", "DA"], "size": [1.5, 2.0, 0.5, 3.0]}


def edges_frame():
    return pd.DataFrame(EDGES, columns=["pre", "post", "w"])


def check_order(conn):
    assert conn.in_names.tolist() == [20, 10, 30, 40]  # the table's order, 40 without edges
    for attributes in (conn.in_attributes, conn.out_attributes):
        assert attributes["cell_type"].tolist() == ["Tm1", "Mi1", "KC", "LC4"]
        assert attributes["nt_type"].tolist() == ["GLUT", "GABA", "ACH", "DA"]
        assert attributes["size"].tolist() == [1.5, 2.0, 0.5, 3.0]


@pytest.mark.parametrize("kind", ["NeuronTable", "DataFrame", "csv.gz", "parquet"])
def test_a_neuron_table_as_nodes_gives_attributes_in_node_order(tmp_path, kind):
    frame = pd.DataFrame(NEURONS)
    nodes = {"NeuronTable": lambda: read_neurons(frame, id="root_id"),
             "DataFrame": lambda: frame}.get(kind)
    if nodes is not None:
        nodes = nodes()
    elif kind == "csv.gz":
        nodes = tmp_path / "neurons.csv.gz"
        nodes.write_bytes(gzip.compress(frame.to_csv(index=False).encode()))
    else:
        nodes = tmp_path / "neurons.parquet"
        frame.to_parquet(nodes)
    conn, w = Connectivity.from_edgelist(edges_frame(), source="pre", target="post", weight="w",
                                         nodes=nodes)
    check_order(conn)
    assert {(s, t): x for s, t, x in conn.to_edgelist(w)} == {(s, t): x for s, t, x in EDGES}
    assert not conn.in_attributes["nt_type"].flags.writeable


def test_operations_that_keep_node_order_keep_attributes():
    conn = Connectivity.from_edgelist(edges_frame(), source="pre", target="post",
                                      nodes=pd.DataFrame(NEURONS))
    for kept in (conn.to("cpu"), Connectivity(conn), conn.with_names(None, None),
                 conn | Connectivity.diagonal(4, 4), conn - conn,
                 SparseLinear(4, 4, conn).connectivity):
        assert kept.in_attributes["nt_type"].tolist() == ["GLUT", "GABA", "ACH", "DA"]
    assert Connectivity.diagonal(4, 4).union(conn).in_attributes is conn.in_attributes
    assert Connectivity.diagonal(4, 4).in_attributes is None


def test_transpose_swaps_the_sides():
    c = Connectivity.random(3, 2, density=0.5, seed=0).with_attributes(
        out_attributes={"kind": ["a", "b", "c"]}, in_attributes={"kind": ["x", "y"]})
    assert c.T.out_attributes["kind"].tolist() == ["x", "y"]
    assert c.T.in_attributes["kind"].tolist() == ["a", "b", "c"]
    assert c.T.T.in_attributes["kind"].tolist() == ["x", "y"]


def test_attributes_are_checked():
    c = Connectivity.diagonal(2, 3)
    with pytest.raises(ShapeError, match=r"'in_attributes' column 'nt' must hold 3 values"):
        c.with_attributes(in_attributes={"nt": ["ACH", "GABA"]})
    with pytest.raises(SparseLinearTypeError, match="'out_attributes' must be a mapping"):
        c.with_attributes(out_attributes=["ACH", "GABA"])
    with pytest.raises(SparseLinearTypeError, match="column 'nt' must be a sequence"):
        c.with_attributes(out_attributes={"nt": "ACH"})
    with pytest.raises(SparseLinearTypeError, match="column names must be strings"):
        c.with_attributes(out_attributes={0: [1, 2]})
    values = np.array([1, -1, 0])
    attached = c.with_attributes(in_attributes={"sign": values, "t": torch.tensor([1, 2, 3])})
    values[0] = 5  # a copy is kept
    assert attached.in_attributes["sign"].tolist() == [1, -1, 0]
    assert attached.in_attributes["t"].tolist() == [1, 2, 3]


def test_dale_from_the_neurotransmitter_attribute():
    conn = Connectivity.from_edgelist(edges_frame(), source="pre", target="post",
                                      nodes=pd.DataFrame(NEURONS))
    layer = constrain(SparseLinear(4, 4, conn), Dale.from_attribute(conn))
    signs = torch.tensor([-1, -1, 1, 0])  # GLUT, GABA, ACH, DA in node order
    w, col = layer.weight.detach(), conn.col_indices().long()
    assert bool((w[signs[col] < 0] < 0).all() and (w[signs[col] > 0] > 0).all())
    dale = Dale.from_attribute(layer, "nt_type", {"glut": 1})  # the layer carries them too
    assert sorted(set(dale.signs.tolist())) == [-1, 1] and dale.signs.numel() == conn.nnz
    numeric = conn.with_attributes(in_attributes={"sign": [1, -1, 1, 0]})
    assert Dale.from_attribute(numeric, "sign").signs.tolist() == [
        [1, -1, 1, 0][int(i)] for i in numeric.col_indices()]


def test_dale_from_a_missing_attribute_says_how_to_attach_one():
    with pytest.raises(DataError, match=r"attribute 'nt_type', but the pattern has no per-node "
                                        r"attributes\. .*nodes=read_neurons"):
        Dale.from_attribute(Connectivity.diagonal(2, 2))
    c = Connectivity.diagonal(2, 2).with_attributes(in_attributes={"side": ["l", "r"]})
    with pytest.raises(DataError, match=r"has the attributes \['side'\]"):
        Dale.from_attribute(c, "nt")
    c = c.with_attributes(in_attributes={"nt": ["ACH", "histamine"]})
    with pytest.raises(DataError, match="No sign for neurotransmitter"):
        Dale.from_attribute(c, "nt")
    assert Dale.from_attribute(c, "nt", unknown=0).signs.tolist() == [1, 0]


def test_a_neuron_file_read_in_blocks_types_each_column_once(tmp_path, monkeypatch):
    from sparselinear.io import columnar, textblocks

    monkeypatch.setattr(columnar, "COLUMNAR_MIN_BYTES", 0)
    monkeypatch.setattr(textblocks, "BLOCK_BYTES", 32)
    rows = [f"{i},{i if i < 10 else f'T{i}'},{i / 2},ACH" for i in range(40)]
    path = tmp_path / "neurons.csv"
    path.write_text("\n".join(["root_id,cell_type,size,nt_type", *rows]) + "\n")
    neurons = read_neurons(path)
    assert neurons.ids.tolist() == list(range(40))
    assert neurons.attributes["cell_type"].tolist()[8:12] == ["8", "9", "T10", "T11"]
    assert neurons.attributes["size"].dtype == np.float64
    assert neurons.attributes["nt_type"].tolist() == ["ACH"] * 40
