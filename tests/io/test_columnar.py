"""Columnar sources (compressed CSV, Parquet, Feather, pandas/polars/pyarrow tables): the same
pattern, weights and integer ids from every format, against a plain numpy reference; the
columnar text path against the line reader, errors included."""

import bz2
import gzip
import lzma
import zipfile

import numpy as np
import pytest
import torch

from sparselinear import Connectivity
from sparselinear.errors import DataError, DuplicateEdgeError, MissingDependencyError
from sparselinear.io import columnar, files

pa = pytest.importorskip("pyarrow")
pd = pytest.importorskip("pandas")

BASE = 720575940_000000000
PRE = [BASE + 5, BASE + 5, BASE + 9, BASE + 1, BASE + 9, BASE + 5]
POST = [BASE + 9, BASE + 9, BASE + 1, BASE + 5, BASE + 1, BASE + 1]
COUNT = [6, 3, 7, 2, 10, 5]
HOOD = ["AL_L", "AL_R", "MB", "MB", "LO", "LO"]


def frame():
    return pd.DataFrame({"pre_root_id": PRE, "post_root_id": POST, "neuropil": HOOD,
                         "syn_count": COUNT})


def reference(threshold=0):
    """{(post, pre): summed count} over rows with count >= threshold."""
    out = {}
    for s, t, c in zip(PRE, POST, COUNT):
        if c >= threshold:
            out[(t, s)] = out.get((t, s), 0) + c
    return out


def as_dict(conn, weights):
    return {(int(t), int(s)): float(w) for s, t, w in conn.to_edgelist(weights)}


def write(tmp_path, name):
    path = tmp_path / name
    text = frame().to_csv(index=False, sep="\t" if ".tsv" in name else ",")
    data = text.encode()
    if name.endswith(".gz"):
        path.write_bytes(gzip.compress(data))
    elif name.endswith(".bz2"):
        path.write_bytes(bz2.compress(data))
    elif name.endswith(".xz"):
        path.write_bytes(lzma.compress(data))
    elif name.endswith(".zip"):
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("edges.csv", data)
    elif name.endswith(".parquet"):
        frame().to_parquet(path)
    elif name.endswith(".feather"):
        frame().to_feather(path)
    else:
        path.write_bytes(data)
    return path


READ = dict(source="pre_root_id", target="post_root_id", weight="syn_count", duplicates="sum")


@pytest.mark.parametrize("columnar_text", [False, True])
@pytest.mark.parametrize("name", ["e.csv", "e.tsv", "e.csv.gz", "e.csv.bz2", "e.csv.xz",
                                  "e.csv.zip", "e.parquet", "e.feather"])
def test_every_file_format_reads_the_same_pattern(tmp_path, monkeypatch, name, columnar_text):
    if columnar_text:
        monkeypatch.setattr(columnar, "COLUMNAR_MIN_BYTES", 0)
    conn, w = Connectivity.from_edgelist(write(tmp_path, name), **READ,
                                         where=[("syn_count", ">=", 5)])
    assert conn.in_names.dtype == np.int64 and conn.in_names.tolist() == [BASE + 1, BASE + 5,
                                                                         BASE + 9]
    assert as_dict(conn, w) == reference(5)
    assert w.dtype == torch.get_default_dtype()


@pytest.mark.parametrize("kind", ["pandas", "polars", "arrow", "batch"])
def test_tables_in_memory(kind):
    data = frame()
    if kind == "polars":
        pl = pytest.importorskip("polars")
        data = pl.from_pandas(data)
    elif kind in ("arrow", "batch"):
        data = pa.Table.from_pandas(data)
        data = data.to_batches()[0] if kind == "batch" else data
    conn, w = Connectivity.from_edgelist(data, **READ)
    assert as_dict(conn, w) == reference()


def test_where_thresholds_membership_and_errors():
    data = frame()
    conn, w = Connectivity.from_edgelist(data, **READ, where=[("syn_count", ">", 5),
                                                               ("neuropil", "not in", ["LO"])])
    assert as_dict(conn, w) == {(BASE + 9, BASE + 5): 6.0, (BASE + 1, BASE + 9): 7.0}
    conn, w = Connectivity.from_edgelist(data, **READ, where={"neuropil": ["LO", "MB"]})
    assert as_dict(conn, w) == {(BASE + 1, BASE + 9): 17.0, (BASE + 5, BASE + 1): 2.0,
                                (BASE + 1, BASE + 5): 5.0}
    with pytest.raises(DataError, match="threshold must be a number"):
        Connectivity.from_edgelist(data, **READ, where=[("syn_count", ">=", "many")])
    with pytest.raises(ValueError, match="where operator"):
        Connectivity.from_edgelist(data, **READ, where=[("syn_count", "~", 5)])
    with pytest.raises(DataError, match="No row of the DataFrame matches every condition"):
        Connectivity.from_edgelist(data, **READ, where=[("syn_count", ">=", 500)])
    with pytest.raises(DataError, match="'where' selects 'AL' .* Did you mean 'AL_[LR]'"):
        Connectivity.from_edgelist(data, **READ, where={"neuropil": "AL"})
    with pytest.raises(DataError, match="compares column 'neuropil' .* not a number"):
        Connectivity.from_edgelist(data, **READ, where=[("neuropil", ">=", 1)])


@pytest.mark.parametrize("policy,expected", [("max", 6.0), ("first", 6.0), ("sum", 9.0)])
def test_duplicate_policies_with_integer_ids(policy, expected):
    conn, w = Connectivity.from_edgelist(frame(), **{**READ, "duplicates": policy})
    assert as_dict(conn, w)[(BASE + 9, BASE + 5)] == expected


def test_duplicates_error_names_rows():
    with pytest.raises(DuplicateEdgeError, match=r"2 edge\(s\) appear more than once: .*"
                       r"'720575940000000005' -> '720575940000000009' \(DataFrame row "
                       r"\(position\) 0 and DataFrame row \(position\) 1\)"):
        Connectivity.from_edgelist(frame(), source="pre_root_id", target="post_root_id")


def test_ids_stay_lossless():
    # canonical integers become ids; padded ones keep their text, so no two names merge
    assert Connectivity.from_edgelist([("7", "8")]).in_names.tolist() == [7, 8]
    assert Connectivity.from_edgelist([("007", "7")]).in_names == ("007", "7")
    big = Connectivity.from_edgelist([(str(2**64 - 1), "1")]).in_names
    assert big.dtype == np.uint64 and big.tolist() == [1, 2**64 - 1]
    ids = np.array([3, 1], dtype=np.uint64)
    conn = Connectivity.from_edgelist({"s": ids, "t": ids[::-1].copy()}, source="s", target="t")
    assert conn.in_names.dtype == np.uint64 and conn.out_index(3) == 1


def test_columnar_text_errors_name_the_line(tmp_path, monkeypatch):
    monkeypatch.setattr(columnar, "COLUMNAR_MIN_BYTES", 0)
    path = tmp_path / "e.csv"
    path.write_text("s,t,w\n1,2,1\n\n3,,2\n")
    with pytest.raises(DataError, match="e.csv, line 4: empty target name"):
        Connectivity.from_edgelist(path, weight="w")
    path.write_text("s,t,w\n1,2,1\n3,4,x\n")
    with pytest.raises(DataError, match="e.csv, line 3: weight column 'w' holds 'x'"):
        Connectivity.from_edgelist(path, weight="w")
    path.write_text("s,t\n1,2\n# a comment\n2,3\n")  # the line reader skips comments
    assert Connectivity.from_edgelist(path).nnz == 2


def test_text_files_agree_between_readers(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    path = tmp_path / "e.csv"
    rows = rng.integers(0, 50, (300, 2))
    path.write_text("a,b,w\n" + "".join(f"{s},{t},{i % 7}\n" for i, (s, t) in enumerate(rows)))
    line, w1 = Connectivity.from_edgelist(path, weight="w", duplicates="sum")
    monkeypatch.setattr(columnar, "COLUMNAR_MIN_BYTES", 0)
    col, w2 = Connectivity.from_edgelist(path, weight="w", duplicates="sum")
    assert line == col and np.array_equal(line.in_names, col.in_names) and torch.equal(w1, w2)


def test_formats_needing_pyarrow_say_how_to_install(tmp_path, monkeypatch):
    path = write(tmp_path, "e.parquet")
    monkeypatch.setattr(files, "pyarrow_or_none", lambda: None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'torch-sparselinear\[tables\]'"):
        Connectivity.from_edgelist(path, **READ)


@pytest.mark.parametrize("name", ["out.csv", "out.tsv.gz", "out.parquet"])
def test_to_edgelist_streams_to_files_with_original_ids(tmp_path, name):
    conn, w = Connectivity.from_edgelist(frame(), **READ)
    path = conn.to_edgelist(w, tmp_path / name, source="pre", chunk=2)
    back, w2 = Connectivity.from_edgelist(path, source="pre", target="target", weight="weight",
                                          nodes=conn.in_names)
    assert back == conn and torch.equal(w, w2) and np.array_equal(back.in_names, conn.in_names)


def test_writer_chunks_and_quotes(tmp_path):
    from sparselinear.io import write_edges

    path = write_edges(tmp_path / "q.csv", torch.tensor([0, 1, 1]), torch.tensor([1, 0, 1]),
                       ("x", "y"), ("a,b", ' c"'), chunk=2)
    back = Connectivity.from_edgelist(path, out_names=("x", "y"), in_names=("a,b", ' c"'))
    assert back.indices().tolist() == [[0, 1, 1], [1, 0, 1]]
