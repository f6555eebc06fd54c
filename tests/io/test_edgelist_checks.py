"""No edge vanishes and no library error escapes: header rows that read as edges, ``where=``
filters that match nothing, weights that overflow their dtype, and ids the reader once
crashed on."""

import gzip

import numpy as np
import pytest
import torch

from sparselinear import Connectivity
from sparselinear.errors import DataError, SparseLinearTypeError
from sparselinear.io.table import is_number

BOM = "\ufeff"


def write(tmp_path, text, name="edges.csv"):
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


# ---------------------------------------------------------------------- item 4: header rows
@pytest.mark.parametrize("text,kwargs,reason", [
    ("0\t1\n1\t2\n2\t0", {}, r"\['0', '1'\] holds only numbers"),
    (BOM + "0,1\n1,2\n", {}, r"\['0', '1'\] holds only numbers"),
    (BOM + BOM + "0,1\n1,2\n", {}, r"\['0', '1'\] holds only numbers"),
    ("+0,+1\n1,2\n", {}, r"\['\+0', '\+1'\] holds only numbers"),
    ("0.0,1.0\n1,2\n", {}, r"\['0.0', '1.0'\] holds only numbers"),
    (" -1 ;  2e3 ; nan\n1;2;3\n", {}, r"\['-1', '2e3', 'nan'\] holds only numbers"),
    ("0 1\r\n1 2\r\n", {}, r"\['0', '1'\] holds only numbers"),
    ("x,y,1\ny,z,2\n", {"weight": 2}, r"\['x', 'y', '1'\] has the number '1' in the weight "
     "column 2"),
    ("a,b\nb,c\n", {}, r"\['a', 'b'\] names node 'b', a node of the edge on line 2"),
    ("a\tb\nc\td\nd\ta\n", {"source": 1, "target": 0}, r"\['a', 'b'\] names node 'a', .* "
     "line 3"),
])
def test_first_row_that_reads_as_an_edge_is_refused(tmp_path, text, kwargs, reason):
    path = write(tmp_path, text)
    with pytest.raises(DataError, match=r"edges.csv, line 1: the header row " + reason
                       + r": it looks like an edge.* Pass header=False"):
        Connectivity.from_edgelist(path, **kwargs)
    lines = [line for line in text.splitlines() if line.strip()]
    conn = Connectivity.from_edgelist(path, header=False, source=kwargs.get("source", 0),
                                      target=kwargs.get("target", 1))
    assert conn.nnz == len(lines)  # every line is an edge


def test_a_header_selected_by_name_is_a_header(tmp_path):
    path = write(tmp_path, "0,1\n5,6\n")
    # integer ids stay integers (an int64 array)
    assert Connectivity.from_edgelist(path, source="0", target="1").in_names.tolist() == [5, 6]
    path = write(tmp_path, "a,b\nb,c\n")
    assert Connectivity.from_edgelist(path, source="a", target=1).nnz == 1
    path = write(tmp_path, "s,t,1\nx,y,1\n")  # where= by name confirms the header too
    assert Connectivity.from_edgelist(path, where={"1": 1}).nnz == 1
    path = write(tmp_path, "pre,post\na,b\nb,c\n")  # a header that names no node stays
    assert Connectivity.from_edgelist(path).nnz == 2


def test_byte_order_marks_are_removed_never_a_row(tmp_path):
    conn = Connectivity.from_edgelist(write(tmp_path, BOM + "pre,post\na,b\n"), source="pre")
    assert conn.in_names == ("a", "b")
    # concatenated files: a second mark at the start of a line
    text = BOM + "pre,post\na,b\n" + BOM + "b,c\n"
    assert Connectivity.from_edgelist(write(tmp_path, text), source="pre").in_names == (
        "a", "b", "c")
    path = tmp_path / "e.csv.gz"
    path.write_bytes(gzip.compress((BOM + "pre\tpost\nx\ty\n").encode()))
    assert Connectivity.from_edgelist(path, source="pre", target="post").nnz == 1
    path = write(tmp_path, BOM + "a,b\nc,d\n")
    assert Connectivity.from_edgelist(path, header=False).in_names == ("a", "b", "c", "d")


def test_a_file_with_a_header_and_no_edge_raises(tmp_path):
    with pytest.raises(DataError, match=r"line 2 \['a', 'b'\] is read as the header row and no "
                       "edge follows it. If it is an edge, pass header=False"):
        Connectivity.from_edgelist(write(tmp_path, "# c\na,b\n\n"))
    assert Connectivity.from_edgelist(write(tmp_path, "a,b\n"), header=False).nnz == 1


def test_is_number_is_ascii_decimal():
    assert all(map(is_number, ["0", "+1", "-2.", ".5", "1E-3", " inf ", "NaN", "Infinity"]))
    assert not any(map(is_number, ["", "²", "١", "1_000", "0x1", "1e", "e3", "--1", "in"]))


# ---------------------------------------------------------------------- item 5: where=
CELLS = "pre,post,type,synapses,w\na,b,chemical,5,0.5\nb,c,electrical,2,1.0\nc,a,chemical,5,2\n"


@pytest.mark.parametrize("where,match", [
    ({"type": "Chemical"}, r"'where' selects 'Chemical' in column 'type', but no row of file "
     r"'edges.csv' holds it; the column has 2 distinct value\(s\): 'chemical', 'electrical'\. "
     r"Did you mean 'chemical'\?"),
    ({"type": ["chemical", "Electrical"]}, r"selects 'Electrical'"),
    ({"synapses": 7}, r"selects 7 in column 'synapses'.* 2 distinct value\(s\): '2', '5'"),
    ({"w": 3}, r"selects 3 in column 'w'"),
    ({"type": "electrical", "synapses": 5}, r"No row of file 'edges.csv' matches every "
     r"condition of where=\{'type': 'electrical', 'synapses': 5\}"),
    ({"type": []}, r"'where' gives no value for column 'type'"),
])
def test_where_that_selects_nothing_raises(tmp_path, where, match):
    with pytest.raises(DataError, match=match):
        Connectivity.from_edgelist(write(tmp_path, CELLS), source="pre", target="post",
                                   where=where)


@pytest.mark.parametrize("where,nnz", [
    ({"synapses": 5}, 2), ({"synapses": "5"}, 2), ({"synapses": 5.0}, 2),
    ({"synapses": "5.00"}, 2), ({"w": 1}, 1), ({"w": "2.0"}, 1), ({"w": [0.5, 2]}, 2),
    ({"type": " chemical "}, 2), ({2: "electrical"}, 1),
])
def test_where_compares_text_or_numbers(tmp_path, where, nnz):
    conn = Connectivity.from_edgelist(write(tmp_path, CELLS), source="pre", target="post",
                                      where=where)
    assert conn.nnz == nnz


def test_where_on_dataframes_and_rows():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"s": ["a", "b"], "t": ["b", "c"], "n": [5.0, 2.0], "k": [1, 2]})
    assert Connectivity.from_edgelist(frame, source="s", target="t", where={"n": 5}).nnz == 1
    assert Connectivity.from_edgelist(frame, source="s", target="t", where={"k": "2"}).nnz == 1
    with pytest.raises(DataError, match=r"selects 5 in column 'k'.*'1', '2'"):
        Connectivity.from_edgelist(frame, source="s", target="t", where={"k": 5})
    with pytest.raises(DataError, match="no row of the edge list holds it"):
        Connectivity.from_edgelist([("a", "b", "x")], where={2: "y"})


# ---------------------------------------------------------------------- item 6: weight dtypes
def test_weights_are_checked_in_the_dtype_they_are_stored_in(tmp_path):
    path = write(tmp_path, "s,t,w\nx,y,1\nx,z,1e39\n")
    with pytest.raises(DataError, match=r"edges.csv, line 3: weight 1e\+39 overflows "
                       r"torch.float32 \(largest finite value 3.403e\+38\)"):
        Connectivity.from_edgelist(path, weight="w")
    with pytest.raises(DataError, match=r"row 0: weight -1e\+39 overflows torch.float32"):
        Connectivity.from_edgelist([("a", "b", -1e39)], weight=2)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        _, w = Connectivity.from_edgelist(path, weight="w")
        assert w.dtype == torch.float64 and w.tolist() == [1.0, 1e39]
    finally:
        torch.set_default_dtype(previous)


def test_merged_weights_that_overflow_raise():
    rows = [("a", "b", 3e38), ("a", "b", 3e38), ("b", "a", 1.0)]
    with pytest.raises(DataError, match=r"row 0: the repeats of edge 'a' -> 'b' merged with "
                       r"duplicates='sum': weight 6e\+38 overflows torch.float32"):
        Connectivity.from_edgelist(rows, weight=2, duplicates="sum")
    _, w = Connectivity.from_edgelist(rows, weight=2, duplicates="max")
    assert w.tolist() == [1.0, pytest.approx(3e38)]


def test_networkx_weights_are_checked():
    nx = pytest.importorskip("networkx")
    g = nx.DiGraph()
    g.add_edge("a", "b", w=1e39)
    with pytest.raises(DataError, match=r"graph edge 'a' -> 'b': weight 1e\+39 overflows"):
        Connectivity.from_networkx(g, weight="w")
    g.add_edge("a", "b", w=float("nan"))
    with pytest.raises(DataError, match=r"graph edge 'a' -> 'b': weight nan is not a finite"):
        Connectivity.from_networkx(g, weight="w")


# ---------------------------------------------------------------------- item 11: raw errors
def test_ids_beyond_int64_sort_as_numbers(tmp_path):
    big = [str(2**64), str(2**63), "7", "007", str(10**30)]
    text = "s,t\n" + "".join(f"{b},0\n" for b in big)
    conn = Connectivity.from_edgelist(write(tmp_path, text))
    assert conn.in_names == ("0", "007", "7", str(2**63), str(2**64), str(10**30))


def test_unicode_digits_are_names_not_numbers(tmp_path):
    conn = Connectivity.from_edgelist(write(tmp_path, "s,t\n²,1\n10,2\n"))
    assert conn.in_names == ("1", "10", "2", "²")  # sorted as text: not all ASCII integers


def test_missing_names_in_pandas_columns():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"s": pd.array(["a", pd.NA, "c"], dtype="string"), "t": ["b", "c", "a"]})
    with pytest.raises(DataError, match=r"DataFrame row \(position\) 1: empty source name \(a "
                       r"missing value, <NA>\)"):
        Connectivity.from_edgelist(frame, source="s", target="t")
    frame = pd.DataFrame({"s": ["a"], "t": ["b"], "w": pd.array([pd.NA], dtype="Float64")})
    with pytest.raises(DataError, match=r"row \(position\) 0: weight column 'w' holds <NA>"):
        Connectivity.from_edgelist(frame, source="s", target="t", weight="w")


@pytest.mark.parametrize("text,kwargs,match", [
    ("s,t\n\"a,b\n", {}, r"edges.csv, line 2: a quoted field is not closed on its line"),
    ("s,t\n\"a\nb\",c\nd,e\n", {}, r"edges.csv, line 2: a quoted field is not closed on its "
     "line"),
    ("s,t\n\"a\"b,c\n", {}, r"edges.csv, line 2: .* Check the quoting"),
    ("s,t\na,b\x00\n", {}, r"edges.csv, line 2: a NUL character"),
    ("s,t,w\na,b,1_000\n", {"weight": "w"}, r"line 2: weight column 'w' holds '1_000', which"),
    ("s,t,w\na,b,²\n", {"weight": "w"}, r"holds '²', which is not a number"),
    ("s,t\na,b\n", {"sep": "::"}, r"'sep' must be one character"),
    ("s,t\na,b\n", {"comment": 3}, r"'comment' must be a non-blank string"),
    ("s,t\na,b\n", {"nodes": range(1, 3)}, r"'nodes' as a range must be range\(n\)"),
    ("s,t\n0,5\n", {"nodes": range(3)}, r"line 2: target '5' is not a position 0..2"),
])
def test_bad_input_raises_library_errors(tmp_path, text, kwargs, match):
    with pytest.raises(DataError, match=match):
        Connectivity.from_edgelist(write(tmp_path, text), **kwargs)


def test_bad_sources_raise_library_errors(tmp_path):
    with pytest.raises(SparseLinearTypeError, match="column 's' is int"):
        Connectivity.from_edgelist({"s": 3, "t": [1]})
    path = tmp_path / "e.csv"
    path.write_bytes("s,t\né,b\n".encode("latin-1"))
    with pytest.raises(DataError, match="Cannot read edge list file .* UTF-8 text"):
        Connectivity.from_edgelist(path)
    # names given with surrounding whitespace match the stripped data and stay as given
    conn = Connectivity.from_edgelist([("a", "b")], nodes=[" a", "b "])
    assert conn.in_names == (" a", "b ") and conn.nnz == 1
    with pytest.raises(DataError, match="'a' and ' a' differ only in surrounding whitespace"):
        Connectivity.from_edgelist([("a", "b")], nodes=["a", " a", "b"])


def test_empty_row_sequences_keep_the_given_nodes():
    conn, w = Connectivity.from_edgelist([], weight=2, nodes=["x", "y"])
    assert conn.shape == (2, 2) and conn.nnz == 0 and w.shape == (0,)
    conn = Connectivity.from_edgelist([], out_names=range(3), in_names=range(2))
    assert conn.shape == (3, 2) and conn.in_names is None
    assert np.array_equal(conn.to_dense().numpy(), np.zeros((3, 2), bool))
