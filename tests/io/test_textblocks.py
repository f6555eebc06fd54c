"""Text files read in blocks (``textblocks``), forced into blocks of a few bytes so that every
file spans many: the same pattern as the line reader, and every flaw named by its file line
(not its data row), whatever block it falls in; blank and comment lines, byte-order marks,
CRLF, gzip; ``where=`` applied block by block; Parquet read batch by batch."""

import bz2
import gzip
import lzma
import re

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from test_edgelist_fuzz import files

from sparselinear import Connectivity
from sparselinear.errors import DataError, DuplicateEdgeError, SparseLinearError
from sparselinear.io import columnar, table, textblocks
from sparselinear.io.lines import LineMap
from sparselinear.io.stream import Selection

pa = pytest.importorskip("pyarrow")


@pytest.fixture
def blocks(monkeypatch):
    """Every text file read in blocks: ``blocks(size)`` sets the bytes per block."""
    monkeypatch.setattr(columnar, "COLUMNAR_MIN_BYTES", 0)

    def size(n: int) -> None:
        monkeypatch.setattr(textblocks, "BLOCK_BYTES", n)

    size(64)
    return size


@pytest.fixture
def no_line_reader(monkeypatch):
    """The whole-file line reader must not be used."""
    def refuse(*args, **kwargs):
        raise AssertionError("the whole file was read by the line reader")

    monkeypatch.setattr(table, "_read_file", refuse)


PACK = {".gz": gzip.compress, ".bz2": bz2.compress, ".xz": lzma.compress}


def edges_file(tmp_path, lines, name="e.csv"):
    """A file of ``lines`` (plus a final newline), compressed as its suffix says."""
    data = ("\n".join(lines) + "\n").encode()
    path = tmp_path / name
    path.write_bytes(PACK.get(path.suffix, bytes)(data))
    return path


def numbered(n=300):
    """A header and ``n`` edges ``i -> i + 1`` with weight ``i`` (line ``i + 2``)."""
    return ["pre,post,w"] + [f"{i},{i + 1},{i}" for i in range(n)]


def read(path, **kw):
    return Connectivity.from_edgelist(path, source="pre", target="post", weight="w", **kw)


def test_line_map_counts_skipped_lines():
    lines = LineMap(2, [4, 5, 9])
    assert [lines.line(i) for i in range(6)] == [2, 3, 6, 7, 8, 10]
    assert LineMap.join(1, [np.array([2]), np.array([], dtype=np.int64), np.array([4])]).line(
        2) == 5


@pytest.mark.parametrize("name", ["e.csv", "e.csv.gz", "e.csv.bz2", "e.csv.xz"])
@pytest.mark.parametrize("size", [7, 64, 4096])
def test_many_blocks_read_the_same_pattern(tmp_path, blocks, no_line_reader, name, size):
    blocks(size)
    conn, w = read(edges_file(tmp_path, numbered(), name), duplicates="error")
    assert conn.nnz == 300 and torch.equal(w, torch.arange(300, dtype=w.dtype))
    assert conn.in_names.dtype == np.int64 and conn.in_names.tolist() == list(range(301))


@pytest.mark.parametrize("name", ["e.csv", "e.csv.gz"])
@pytest.mark.parametrize("size", [7, 64, 4096])
@pytest.mark.parametrize("flaw,line,message", [
    ("250,,3", 220, "empty target name"),
    ("250,251,heavy", 220, "weight column 'w' holds 'heavy'"),
    ("250,251,1e400", 220, "weight column 'w' holds "),
    ("250,251", 220, "2 field(s) where the header has 3"),
    ('250,"251,3', 220, "a quoted field is not closed on its line"),
])
def test_flaws_deep_in_a_file_name_their_file_line(tmp_path, blocks, no_line_reader, name, size,
                                                   flaw, line, message):
    blocks(size)
    lines = numbered()
    lines.insert(3, "")  # a blank line, a comment and a blank line before the flaw
    lines.insert(50, "# a comment, with commas, in it")
    lines.insert(100, "   ")
    lines[line - 1] = flaw
    with pytest.raises(DataError, match=rf"e\.csv(\.gz)?, line {line}: {re.escape(message)}"):
        read(edges_file(tmp_path, lines, name))


def test_comment_lines_before_the_header_and_crlf(tmp_path, blocks, no_line_reader):
    blocks(16)
    text = "\ufeff# made by hand\r\n\r\npre,post,w\r\n1,2,3\r\n# skip\r\n\r\n2,x3,oops\r\n"
    path = tmp_path / "e.csv"
    path.write_bytes(text.encode())
    with pytest.raises(DataError, match=r"e\.csv, line 7: weight column 'w' holds 'oops'"):
        read(path)
    path.write_bytes(text.replace("oops", "4").encode())
    conn, w = read(path)
    assert conn.in_names == ("1", "2", "x3") and w.tolist() == [3.0, 4.0]


def test_repeated_edges_in_different_blocks_are_named_by_their_lines(tmp_path, blocks,
                                                                     no_line_reader):
    lines = numbered()
    lines.append("5,6,1")  # line 302 repeats the edge of line 7
    with pytest.raises(DuplicateEdgeError, match=r"'5' -> '6' \(e\.csv, line 7 and e\.csv, "
                                                 r"line 302\)"):
        read(edges_file(tmp_path, lines), duplicates="error")


def test_unknown_node_deep_in_a_file(tmp_path, blocks, no_line_reader):
    with pytest.raises(DataError, match=r"e\.csv, line 301: unknown target name '300'"):
        read(edges_file(tmp_path, numbered()), nodes=np.arange(300))


def test_nul_and_bad_utf8_name_their_line(tmp_path, blocks):
    lines = numbered()
    path = edges_file(tmp_path, lines)
    data = path.read_bytes()
    at = data.index(b"\n200,201")
    path.write_bytes(data[:at + 1] + b"2\x0000" + data[at + 4:])
    with pytest.raises(DataError, match=r"e\.csv, line 202: a NUL character"):
        read(path)
    path.write_bytes(data[:at + 1] + b"2\xff00" + data[at + 4:])
    with pytest.raises(DataError, match=r"e\.csv, line 202: bytes that are not UTF-8"):
        read(path)


def test_where_is_applied_block_by_block(tmp_path, blocks, no_line_reader):
    lines = ["pre,post,w,hood"] + [f"{i},{i + 1},{i % 10},{'AL' if i % 3 else 'MB'}"
                                   for i in range(300)]
    path = edges_file(tmp_path, lines, "e.csv.gz")
    conn, w = read(path, where=[("w", ">=", 5), ("hood", "in", ["MB"])])
    expected = [i for i in range(300) if i % 10 >= 5 and i % 3 == 0]
    assert conn.to_edgelist(w) == [(i, i + 1, float(i % 10)) for i in expected]
    with pytest.raises(DataError, match=r"'where' selects 'LO' in column 'hood', but no row of "
                                        r"file 'e\.csv\.gz' holds it; the column has 2 "
                                        r"distinct value\(s\): 'AL', 'MB'"):
        read(path, where={"hood": ["MB", "LO"]})
    with pytest.raises(DataError, match="No row of file 'e.csv.gz' matches every condition"):
        read(path, where=[("w", ">", 9)])
    with pytest.raises(DataError, match=r"compares column 'hood' .* holds 'AL' \(e\.csv\.gz, "
                                        r"line 3\), which is not a number"):
        read(path, where=[("hood", ">", 9)])


def test_blocks_with_no_kept_row_leave_the_ids_integers(tmp_path, blocks):
    lines = ["pre,post,w"] + [f"{i},{i + 1},{9 if i < 20 else 0}" for i in range(300)]
    selection = Selection(["pre", "post", "w"], ["pre", "post"], [("w", ">", 5)])
    kept = columnar.read_columns(edges_file(tmp_path, lines), selection, None, True, "#")
    assert kept.column("pre", "pre").dtype == np.int64 and kept.size == 20
    assert kept.label(19) == "e.csv, line 21"


def test_rows_filtered_out_are_never_checked(tmp_path, blocks, no_line_reader):
    lines = [*numbered(), "9,,nan"]  # an empty target and a NaN weight, filtered out
    conn, _ = read(edges_file(tmp_path, lines), where=[("w", "<", 1000)])
    assert conn.nnz == 300


def test_header_that_names_a_node_in_a_later_block(tmp_path, blocks):
    lines = ["a,b"] + [f"n{i},n{i + 1}" for i in range(200)] + ["a,zz"]
    with pytest.raises(DataError, match=r"line 1: the header row \['a', 'b'\] names node 'a', "
                                        r"a node of the edge on line 202"):
        Connectivity.from_edgelist(edges_file(tmp_path, lines))


def test_header_alone_and_text_ids(tmp_path, blocks, no_line_reader):
    with pytest.raises(DataError, match="line 2 .* is read as the header row and no edge"):
        read(edges_file(tmp_path, ["# only a header", "pre,post,w", "", "# and comments"]))
    lines = ["pre,post,w"] + [f"{i},{'007' if i == 150 else i + 1},1" for i in range(200)]
    conn, _ = read(edges_file(tmp_path, lines))  # one padded id: every id stays text
    assert "007" in conn.in_names and "7" in conn.in_names


def test_ids_of_mixed_signs_and_sizes_across_blocks(tmp_path, blocks, no_line_reader):
    lines = ["pre,post,w", f"{2**64 - 1},1,1"] + [f"{i},{i + 1},1" for i in range(2, 200)]
    conn, _ = read(edges_file(tmp_path, lines))
    assert conn.in_names.dtype == np.uint64 and conn.in_names[-1] == 2**64 - 1
    lines.append("-5,1,1")  # a negative id beside one past int64: text names
    conn, _ = read(edges_file(tmp_path, lines))
    assert isinstance(conn.in_names, tuple) and "-5" in conn.in_names


def test_a_lone_carriage_return_leaves_the_file_to_the_line_reader(tmp_path, blocks):
    path = tmp_path / "e.csv"
    path.write_bytes(b"pre,post,w\r1,2,3\r2,3,4\r")
    _conn, w = read(path)
    assert w.tolist() == [3.0, 4.0]


@pytest.mark.parametrize("rows", [3, 1000])
def test_parquet_batches_are_filtered_and_numbered(tmp_path, monkeypatch, rows):
    pd = pytest.importorskip("pandas")
    monkeypatch.setattr(columnar, "BATCH_ROWS", rows)
    frame = pd.DataFrame({"pre": np.arange(20), "post": np.arange(1, 21),
                          "w": np.arange(20) % 4, "hood": ["AL", "MB"] * 10})
    path = tmp_path / "e.parquet"
    frame.to_parquet(path)
    conn, w = read(path, where=[("w", ">=", 2), ("hood", "==", "MB")])
    assert conn.to_edgelist(w) == [(i, i + 1, float(i % 4)) for i in range(20)
                                   if i % 4 >= 2 and i % 2]
    frame.loc[17, "post"] = frame.loc[3, "post"]
    frame.loc[17, "pre"] = 3
    frame.to_parquet(path)
    with pytest.raises(DuplicateEdgeError, match=r"e\.parquet, row 3 and e\.parquet, row 17"):
        read(path)


def outcome(path, options):
    """The pattern read from ``path``, or the line an error names (``"header"`` for the
    header check, which a reader in blocks runs on the first block)."""
    try:
        result = Connectivity.from_edgelist(path, **options)
    except SparseLinearError as exc:
        if "the header row" in str(exc):
            return "header"
        found = re.search(r"line (\d+)", str(exc))
        return ("error", found.group(1) if found else None)
    conn, w = result if isinstance(result, tuple) else (result, None)
    names = conn.in_names.tolist() if isinstance(conn.in_names, np.ndarray) else conn.in_names
    return names, conn.indices().tolist(), None if w is None else w.tolist()


def failed(result):
    return result == "header" or result[0] == "error"


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(files())
def test_blocks_agree_with_the_line_reader(tmp_path, monkeypatch, case):
    raw, options, *_ = case
    path, packed = tmp_path / "f.csv", tmp_path / "f.csv.gz"
    path.write_bytes(raw)
    packed.write_bytes(gzip.compress(raw))
    monkeypatch.setattr(columnar, "COLUMNAR_MIN_BYTES", 1 << 40)
    expected = outcome(path, options)
    monkeypatch.setattr(columnar, "COLUMNAR_MIN_BYTES", 0)
    for size in (5, 64):
        monkeypatch.setattr(textblocks, "BLOCK_BYTES", size)
        for source in (path, packed):
            got = outcome(source, options)
            if "header" in (got, expected):  # two flaws: each reader may name either first
                assert failed(got) and failed(expected), (raw, options, size, source.name)
            else:
                assert got == expected, (raw, options, size, source.name)
