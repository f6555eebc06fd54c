"""Fuzzed edge-list files: byte-order marks, CRLF, quoting, unicode names, blank and comment
lines, numeric first lines, NaN/inf and overflowing weights, huge and negative ids, repeated
edges. Each file is read either into exactly the pattern that a plain reading of its rows
gives, or into a ``SparseLinearError``; never another exception. Files without a flaw must
read."""

import csv
import io
import math
import re

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sparselinear import Connectivity
from sparselinear.errors import SparseLinearError

QUICK = settings(max_examples=50, deadline=None, derandomize=True,
                 suppress_health_check=[HealthCheck.too_slow])
LONG = settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])

HEADER = ["@src", "@dst", "@w"]  # "@" is in no node name: the header never names a node
DIGITS = re.compile(r"[0-9]+")
CANONICAL = re.compile(r"-?(0|[1-9][0-9]*)")
WORD = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\ufeff@#"),
               min_size=1, max_size=5)
NAMES = st.one_of(
    st.sampled_from(["a", "b", "c", "AVAL", " d ", "é", "名前", "x,y", 'q"t', "0", "1", "007",
                     "-3", "+4", "2.5", str(2**63), str(2**70), "²", " "]),
    st.integers(0, 2**80).map(str),
    WORD,
)
WEIGHTS = st.one_of(
    st.floats(-1e30, 1e30, allow_nan=False).map(repr),
    st.sampled_from(["1", " 2 ", "+3", "-0.5", "nan", "inf", "-inf", "1e39", "1e400", "x"]),
)


@st.composite
def files(draw):
    """A file's bytes, how to read it, its rows ``(source, target, weight text)``, whether it
    has a header and its separator (``None``: whitespace)."""
    sep = draw(st.sampled_from([",", "\t", ";", None]))
    rows = draw(st.lists(st.tuples(NAMES, NAMES, WEIGHTS), min_size=1, max_size=8))
    if sep is None:  # whitespace-separated: names are single words
        rows = [r for r in rows if all(len(f.split()) == 1 and '"' not in f for f in r)]
        if not rows:
            rows = [("a", "b", "1")]
    written_header = draw(st.booleans())
    lines = [HEADER] * written_header + [list(r) for r in rows]
    if sep is None:
        body = [" ".join(f.strip() for f in line) for line in lines]
    else:
        out = io.StringIO()
        quoting = draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]))
        csv.writer(out, delimiter=sep, quoting=quoting, lineterminator="\n").writerows(lines)
        body = out.getvalue().split("\n")[:-1]
    extra = draw(st.lists(st.tuples(st.integers(0, len(body)), st.sampled_from(
        ["", "   ", "# comment", "  #, x"])), max_size=3))
    for at, text in sorted(extra, reverse=True):
        body.insert(at, text)
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    text = draw(st.sampled_from(["", "\ufeff"])) + newline.join(body) + newline
    read = {
        "header": draw(st.booleans()),
        "weight": draw(st.sampled_from([None, 2])),
        "duplicates": draw(st.sampled_from(["error", "sum"])),
        "sep": draw(st.sampled_from([None, sep])),
    }
    if read["header"] and written_header and draw(st.booleans()):
        read.update(source="@src", target="@dst", weight="@w" if read["weight"] else None)
    return text.encode("utf-8"), read, rows, written_header, sep


def plain_reading(rows, written_header, read):
    """The pattern the rows mean, read without the library: ``{(target, source): weight}`` and
    the sorted node names, or ``"error"`` when the rows cannot make one."""
    data = [HEADER, *rows] if written_header else list(rows)
    if read["header"]:
        data = data[1:]  # a first row read as the header (an edge only if it looks like one)
    if not data:
        return "error"
    edges, dtype = {}, torch.get_default_dtype()
    for source, target, weight in data:
        s, t = source.strip(), target.strip()
        if not s or not t:
            return "error"
        w = 0.0
        if read["weight"] is not None:
            if not re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(inf|nan)",
                                weight.strip()):
                return "error"
            w = float(weight)
            if not math.isfinite(w) or not torch.isfinite(torch.tensor(w).to(dtype)):
                return "error"
        if (t, s) in edges and read["duplicates"] == "error":
            return "error"
        edges[(t, s)] = edges.get((t, s), 0.0) + w
    if any(not torch.isfinite(torch.tensor(w).to(dtype)) for w in edges.values()):
        return "error"
    names = {n for pair in edges for n in pair}
    if integer_ids(names):  # canonical integers are integer ids, in numeric order
        return ({k: float(torch.tensor(v).to(dtype)) for k, v in edges.items()},
                tuple(sorted(names, key=int)))
    numeric = all(DIGITS.fullmatch(n) for n in names)
    names = sorted(names, key=(lambda n: (int(n), n)) if numeric else None)
    return {k: float(torch.tensor(v).to(dtype)) for k, v in edges.items()}, tuple(names)


def integer_ids(names):
    """Whether the reader keeps these names as integer ids: all canonical integers (no sign,
    padding or point) that fit int64, or uint64 when none is negative."""
    if not all(CANONICAL.fullmatch(n) for n in names):
        return False
    values = [int(n) for n in names]
    return all(-2**63 <= v < 2**63 for v in values) or all(0 <= v < 2**64 for v in values)


def flawless(rows, written_header, read, expected):
    """Files the reader must accept: rows that make a pattern, the header read as written,
    no field that could need a quote or has surrounding blanks."""
    return (expected != "error" and read["header"] == written_header
            and all(f == f.strip() and not re.search(r'[,;\t"\s]', f) for r in rows for f in r))


def detected(raw):
    """The separator the reader detects from the first line that is not blank or a comment."""
    lines = raw.decode("utf-8").lstrip("\ufeff").replace("\r\n", "\n").split("\n")
    first = next(x for x in lines if x.strip() and not x.strip().startswith("#"))
    return next((sep for sep in ("\t", ",", ";") if sep in first), None)


def check_file(tmp_path, case):
    raw, read, rows, written_header, sep = case
    path = tmp_path / "fuzz.csv"
    path.write_bytes(raw)
    expected = plain_reading(rows, written_header, read)
    try:
        result = Connectivity.from_edgelist(path, **read)
    except SparseLinearError:
        assert not flawless(rows, written_header, read, expected), raw
        return
    if read["sep"] is None and detected(raw) != sep:
        return  # another separator comes first on the first line: fields split differently
    assert expected != "error", (raw, read)
    conn, weights = result if isinstance(result, tuple) else (result, None)
    edges, names = expected
    # integer ids are kept as an integer array; compare them by their text
    text = tuple(str(n) for n in conn.in_names.tolist()) if isinstance(
        conn.in_names, np.ndarray) else conn.in_names
    assert text == names, raw
    assert conn.in_names is conn.out_names or list(conn.in_names) == list(conn.out_names), raw
    got = {(str(t), str(s)): w[0] if w else 0.0 for s, t, *w in conn.to_edgelist(weights)}
    assert got == edges, raw


@QUICK
@given(files())
def test_fuzzed_files_read_exactly_or_raise(tmp_path_factory, case):
    check_file(tmp_path_factory.mktemp("fuzz"), case)


@pytest.mark.fuzz
@LONG
@given(files())
def test_fuzzed_files_read_exactly_or_raise_long(tmp_path_factory, case):
    check_file(tmp_path_factory.mktemp("fuzz"), case)
