import gzip

import numpy as np
import pytest
import torch

from sparselinear import Connectivity, SparseLinear
from sparselinear.errors import DataError, DuplicateEdgeError, SparseLinearTypeError

EDGES = [("a", "b", 2.0), ("b", "c", 1.5), ("c", "a", -1.0), ("a", "c", 4.0), ("d", "d", 0.5)]


def brute_force(edges, out_names, in_names):
    """Dense (out, in) weight from (source, target, weight) rows with a Python loop."""
    w = np.zeros((len(out_names), len(in_names)))
    for s, t, v in edges:
        w[out_names.index(t), in_names.index(s)] = v
    return w


def dense_weights(conn, values):
    w = np.zeros(conn.shape)
    rows, cols = conn.indices().numpy()
    w[rows, cols] = values.numpy()
    return w


def write(tmp_path, text, name="edges.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_sequence_of_rows_orientation_and_names():
    conn, w = Connectivity.from_edgelist(EDGES, weight=2)
    names = ["a", "b", "c", "d"]
    assert conn.shape == (4, 4)
    assert conn.in_names == conn.out_names == tuple(names)
    np.testing.assert_array_equal(dense_weights(conn, w), brute_force(EDGES, names, names))
    # the edge a -> b feeds input a into output b: W[b, a]
    assert conn.to_dense()[conn.out_index("b"), conn.in_index("a")]
    assert not conn.to_dense()[conn.out_index("a"), conn.in_index("b")]
    assert w.dtype == torch.get_default_dtype()


def test_pattern_only_and_bipartite():
    conn = Connectivity.from_edgelist([(s, t) for s, t, _ in EDGES], shared_nodes=False)
    assert isinstance(conn, Connectivity)
    assert conn.in_names == ("a", "b", "c", "d") and conn.out_names == ("a", "b", "c", "d")
    conn = Connectivity.from_edgelist([("g1", "p1"), ("g2", "p1"), ("g2", "p2")],
                                      shared_nodes=False)
    assert conn.in_names == ("g1", "g2") and conn.out_names == ("p1", "p2")
    assert conn.to_dense().int().tolist() == [[1, 1], [0, 1]]


def test_explicit_nodes_fix_the_order():
    conn, w = Connectivity.from_edgelist(EDGES, weight=2, nodes=["d", "c", "b", "a", "e"])
    names = ["d", "c", "b", "a", "e"]
    np.testing.assert_array_equal(dense_weights(conn, w), brute_force(EDGES, names, names))
    conn = Connectivity.from_edgelist([("x", "p")], in_names=["y", "x"], out_names=["p"])
    assert conn.shape == (1, 2) and conn.indices().tolist() == [[0], [1]]
    conn = Connectivity.from_edgelist([("x", "p")], in_names=["y", "x"])
    assert conn.out_names == ("p",)


def test_csv_file_with_filter_whitespace_and_comments(tmp_path):
    path = write(
        tmp_path,
        "# a comment line\n"
        "pre , post, type ,count\n"
        " AVAL ,AVBL,chemical, 3\n"
        "AVBL,AVAL,electrical,1\n"
        "\n"
        "AVAL,  RIML ,chemical,2\n",
    )
    conn, w = Connectivity.from_edgelist(path, source="pre", target="post", weight="count",
                            where={"type": "chemical"})
    assert conn.in_names == ("AVAL", "AVBL", "RIML")
    assert conn.to_edgelist(w) == [("AVAL", "AVBL", 3.0), ("AVAL", "RIML", 2.0)]
    both = Connectivity.from_edgelist(str(path), source="pre", target="post",
                         where={"type": ["chemical", "electrical"]})
    assert both.nnz == 3


@pytest.mark.parametrize("sep,text", [
    ("\t", "s\tt\tw\nx\ty\t1\ny\tz\t2\n"),
    (";", "s;t;w\nx;y;1\ny;z;2\n"),
    (" ", "s t w\nx   y 1\ny z\t2\n"),
])
def test_separator_detection(tmp_path, sep, text):
    conn, w = Connectivity.from_edgelist(write(tmp_path, text, "e.tsv"), source="s", target="t",
                                         weight="w")
    assert conn.to_edgelist(w) == [("x", "y", 1.0), ("y", "z", 2.0)]


def test_headerless_file_by_position(tmp_path):
    path = write(tmp_path, "x,y,1\ny,z,2\n")
    conn, w = Connectivity.from_edgelist(path, header=False, weight=2)
    assert conn.to_edgelist(w) == [("x", "y", 1.0), ("y", "z", 2.0)]


def test_gzip_file(tmp_path):
    path = tmp_path / "edges.tsv.gz"
    path.write_bytes(gzip.compress(b"pre\tpost\tn\nx\ty\t1\ny\tz\t2\n"))
    conn, w = Connectivity.from_edgelist(path, source="pre", target="post", weight="n")
    assert conn.to_edgelist(w) == [("x", "y", 1.0), ("y", "z", 2.0)]
    (tmp_path / "plain.csv.gz").write_text("a,b\nx,y\n")
    with pytest.raises(DataError, match="Cannot read edge list file .*plain.csv.gz"):
        Connectivity.from_edgelist(tmp_path / "plain.csv.gz")


def test_integer_first_row_is_not_a_header(tmp_path):
    path = write(tmp_path, "0 1\n1 2\n")
    with pytest.raises(DataError, match=r"edges.csv, line 1: the header row \['0', '1'\] holds "
                       r"only numbers: .* Pass header=False"):
        Connectivity.from_edgelist(path)
    assert Connectivity.from_edgelist(path, header=False).nnz == 2
    mixed = write(tmp_path, "0,b\nx,y\n", "mixed.csv")
    assert Connectivity.from_edgelist(mixed, source="b", target=0).nnz == 1


def test_dataframe_and_mapping():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"src": ["a", "b", "c"], "dst": ["b", "c", "a"], "w": [1, 2, 3],
                          "kind": ["x", "y", "x"]})
    conn, w = Connectivity.from_edgelist(frame, source="src", target="dst", weight="w",
                                         where={"kind": "x"})
    assert conn.to_edgelist(w) == [("c", "a", 3.0), ("a", "b", 1.0)]
    mapping = {"src": ["a", "b"], "dst": ["b", "c"]}
    assert Connectivity.from_edgelist(mapping, source="src", target="dst").nnz == 2
    # integer node ids stay integers (an int64 array), in numeric order
    ints = pd.DataFrame({"u": [1, 2], "v": [2, 10]})
    assert Connectivity.from_edgelist(ints, source="u", target="v").in_names.tolist() == [1, 2, 10]
    assert Connectivity.from_edgelist([("x10", "x9")]).in_names == ("x10", "x9")


def test_duplicates_policies():
    rows = [("a", "b", 1.0), ("a", "b", 3.0), ("b", "a", 2.0)]
    with pytest.raises(DuplicateEdgeError, match=r"'a' -> 'b' \(row 0 and row 1\)"):
        Connectivity.from_edgelist(rows, weight=2)
    for policy, value in [("sum", 4.0), ("max", 3.0), ("first", 1.0)]:
        conn, w = Connectivity.from_edgelist(rows, weight=2, duplicates=policy)
        assert dict(((s, t), v) for s, t, v in conn.to_edgelist(w))[("a", "b")] == value
    assert Connectivity.from_edgelist([r[:2] for r in rows], duplicates="first").nnz == 2


def test_round_trip_through_rows_and_layer():
    layer = SparseLinear.from_edgelist(EDGES, weight=2)
    rows = layer.to_edgelist()
    assert sorted(rows) == sorted(EDGES)
    again = SparseLinear.from_edgelist(rows, weight=2)
    assert again.connectivity == layer.connectivity
    assert torch.equal(again.weight, layer.weight)
    x = torch.randn(3, 4, dtype=torch.float64)
    names = list(layer.in_names)
    ref = x @ torch.from_numpy(brute_force(EDGES, names, names)).T
    assert torch.allclose(layer.double()(x) - layer.bias.detach(), ref)
    assert Connectivity.tril(2, 2).to_edgelist() == [(0, 0), (0, 1), (1, 1)]


@pytest.mark.parametrize(
    "text,kwargs,err,match",
    [
        ("a,b\nx,y\n", {"source": "pre"}, DataError,
         r"'source' column 'pre' not found in file 'edges.csv'; its columns are \['a', 'b'\]"),
        ("a,b\nx,y\n", {"weight": "w"}, DataError, "'weight' column 'w' not found"),
        ("a,b\nx,y\n", {"where": {"type": "c"}}, DataError, "'where' column 'type' not found"),
        ("a,b\nx,y\n ,z\n", {}, DataError, r"edges.csv, line 3: empty source name"),
        ("a,b\nx,y\nz,\n", {}, DataError, r"edges.csv, line 3: empty target name"),
        ("a,b,w\nx,y,1\n\nx,z,lots\n", {"weight": "w"}, DataError,
         r"edges.csv, line 4: weight column 'w' holds 'lots', which is not a number"),
        ("a,b,w\nx,y,nan\n", {"weight": "w"}, DataError, "line 2: .* must be finite"),
        ("a,b,w\nx,y,1\nx,z\n", {}, DataError, r"line 3: 2 field\(s\) where the header has 3"),
        ("a,b\nx,y\nq,y\n", {"nodes": ["x", "y"]}, DataError,
         r"line 3: unknown source name 'q'; it is not among the 2 given nodes"),
        ("a,b\nx,y\n", {"duplicates": "mean"}, DataError, "'duplicates' must be one of"),
        ("# only\n\n", {}, DataError, "holds no rows"),
        ("a,b\nx,y\n", {"nodes": ["x", "y"], "in_names": ["x"]}, DataError,
         "either 'nodes'"),
        ("a,b\nx,y\n", {"source": 1.5}, SparseLinearTypeError, "column name .* or position"),
        ("a,b\nx,y\n", {"where": "type"}, SparseLinearTypeError, "'where' must be a mapping"),
    ],
)
def test_file_errors_name_the_line_or_column(tmp_path, text, kwargs, err, match):
    with pytest.raises(err, match=match):
        Connectivity.from_edgelist(write(tmp_path, text), **kwargs)


def test_other_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        Connectivity.from_edgelist(tmp_path / "missing.csv")
    with pytest.raises(SparseLinearTypeError, match="'data' must be a CSV/TSV path"):
        Connectivity.from_edgelist(42)
    with pytest.raises(SparseLinearTypeError, match="row 1 is int"):
        Connectivity.from_edgelist([("a", "b"), 3])
    with pytest.raises(DataError, match="row 1 has 3 field"):
        Connectivity.from_edgelist([("a", "b"), ("a", "c", 1.0)])
    with pytest.raises(DataError, match="different lengths"):
        Connectivity.from_edgelist({"s": ["a", "b"], "t": ["c"]})
    with pytest.raises(DataError, match="row 1: empty target name"):
        Connectivity.from_edgelist([("a", "b"), ("a", None)])
    with pytest.raises(DataError, match="'values' must be a tensor of shape"):
        Connectivity.tril(2, 2).to_edgelist(torch.ones(2))


def test_dataframe_missing_name_reports_the_row():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"s": ["a", None, "c"], "t": ["b", "c", "a"]})
    with pytest.raises(DataError, match=r"DataFrame row \(position\) 1: empty source name"):
        Connectivity.from_edgelist(frame, source="s", target="t")


def test_networkx_graphs():
    nx = pytest.importorskip("networkx")
    g = nx.DiGraph()
    g.add_edge("a", "b", w=2.0)
    g.add_edge("b", "c", w=3.0)
    g.add_edge("c", "c")
    conn, w = Connectivity.from_networkx(g, weight="w")
    assert conn.out_names == ("a", "b", "c")
    assert conn.to_edgelist(w) == [("a", "b", 2.0), ("b", "c", 3.0), ("c", "c", 1.0)]
    undirected = Connectivity.from_networkx(nx.path_graph(4))
    np.testing.assert_array_equal(undirected.to_dense().numpy(),
                                  nx.to_numpy_array(nx.path_graph(4)).astype(bool))
    multi = nx.MultiDiGraph([(0, 1), (0, 1), (1, 2)])
    conn, w = Connectivity.from_networkx(multi, weight="weight")
    assert conn.nnz == 2 and w.tolist() == [2.0, 1.0]
    sub = Connectivity.from_networkx(g, nodes=["b", "c"])
    assert sub.shape == (2, 2) and sub.nnz == 2
    with pytest.raises(SparseLinearTypeError, match="must be a networkx graph"):
        Connectivity.from_networkx({"a": "b"})
    with pytest.raises(DataError, match="Cannot read the graph"):
        Connectivity.from_networkx(g, nodes=["a", "zzz"])
