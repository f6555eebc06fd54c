"""``to_edgelist`` rows read back with ``from_edgelist`` and the pattern's names give the same
pattern: shape, node order, nodes without edges and weights, named or not."""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sparselinear import Connectivity

QUICK = settings(max_examples=60, deadline=None, derandomize=True,
                 suppress_health_check=[HealthCheck.too_slow])
LONG = settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])

NAME = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
               min_size=1, max_size=6).filter(lambda s: s.strip() != "")


def names(n):
    """``n`` names, distinct once surrounding whitespace is stripped (as the reader does)."""
    return st.lists(NAME, min_size=n, max_size=n, unique_by=lambda s: s.strip())


@st.composite
def patterns(draw):
    n_out, n_in = draw(st.integers(0, 6)), draw(st.integers(0, 6))
    kind = draw(st.sampled_from(["none", "both", "out", "in"]
                                + (["shared"] if n_out == n_in else [])))
    cells = [(i, j) for i in range(n_out) for j in range(n_in)]
    edges = draw(st.lists(st.sampled_from(cells), unique=True) if cells else st.just([]))
    conn = Connectivity.from_indices(torch.tensor(edges, dtype=torch.int64).reshape(-1, 2).T,
                                     shape=(n_out, n_in))
    out_names = draw(names(n_out)) if kind in ("both", "out", "shared") else None
    in_names = draw(names(n_in)) if kind in ("both", "in") else None
    in_names = out_names if kind == "shared" else in_names
    values = draw(st.lists(st.floats(-1e6, 1e6, width=32), min_size=conn.nnz,
                           max_size=conn.nnz))
    return conn.with_names(out_names, in_names), torch.tensor(values)


def check_round_trip(case):
    c, values = case
    rows = c.to_edgelist(values)
    out = c.out_names if c.out_names is not None else range(c.out_features)
    inp = c.in_names if c.in_names is not None else range(c.in_features)
    back, w = Connectivity.from_edgelist(rows, weight=2, out_names=out, in_names=inp)
    assert back == c and back.shape == c.shape
    assert back.out_names == c.out_names and back.in_names == c.in_names
    assert torch.equal(w, values)
    pattern_only = Connectivity.from_edgelist(c.to_edgelist(), out_names=out, in_names=inp)
    assert pattern_only == c and pattern_only.in_names == c.in_names


@QUICK
@given(patterns())
def test_to_edgelist_reads_back_exactly(case):
    check_round_trip(case)


@pytest.mark.fuzz
@LONG
@given(patterns())
def test_to_edgelist_reads_back_exactly_long(case):
    check_round_trip(case)


def test_isolated_nodes_and_order_survive():
    """The case from the issue: a 3 x 3 pattern with a node in no edge came back 2 x 2."""
    c = Connectivity.from_edgelist([("b", "a")], nodes=["c", "b", "a"])
    rows = c.to_edgelist()
    assert Connectivity.from_edgelist(rows).shape == (2, 2)  # without names: only what rows say
    back = Connectivity.from_edgelist(rows, nodes=c.in_names)
    assert back == c and back.in_names == ("c", "b", "a") and back.shape == (3, 3)
    d = Connectivity.from_indices([[0], [2]], shape=(4, 3))
    back = Connectivity.from_edgelist(d.to_edgelist(), out_names=range(4), in_names=range(3))
    assert back == d and back.shape == (4, 3) and back.in_names is None
