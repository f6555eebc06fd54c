"""``where=`` conditions (``RowFilter``): the vectorised text matching through pyarrow agrees
with the plain numpy reading on every kind of column, works block by block with the checks made
once all blocks are seen, and never handles one Python string per row."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sparselinear.errors import DataError
from sparselinear.io import where as where_module
from sparselinear.io.table import Table
from sparselinear.io.where import RowFilter, apply_where

pa = pytest.importorskip("pyarrow")

CELLS = st.sampled_from(["5", " 5 ", "5.0", "05", "+5", "5e0", "6", "nan", "NaN", "inf",
                         "-inf", "AL_L", "al_l", " AL_L", "MB", "", "é", "1e400", "0.1",
                         "0.10000000000000001", "True"])
WANTED = st.sampled_from(["5", 5, 5.0, "5.00", "nan", "inf", "AL_L", "MB", "0.1", 0.1, True,
                          "True", "é", "  MB  "])
OPS = st.sampled_from(["in", "not in", "==", ">=", ">", "<=", "<", "!="])
THRESHOLDS = st.sampled_from([5, 5.5, "5", -1, 0.1, "inf"])


def block(column, rows=None):
    return Table(["c"], [column], None, "row", "the table", rows=len(column) if rows is None
                 else rows)


def mask_or_error(column, conditions):
    rows = RowFilter(conditions)
    try:
        keep = rows.mask(block(column))
        rows.finish("the table")
    except DataError as exc:
        return str(exc)
    return keep.tolist()


@settings(max_examples=200, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(CELLS, min_size=1, max_size=12), OPS, WANTED, THRESHOLDS)
def test_text_columns_match_alike_with_and_without_pyarrow(monkeypatch, cells, op, wanted,
                                                           threshold):
    value = threshold if op in (">=", ">", "<=", "<") else wanted
    conditions = [("c", op, [value] if op in ("in", "not in") else value)]
    text = np.array(cells, dtype=object)
    arrow = mask_or_error(pa.array(cells, type=pa.string()), conditions)
    assert mask_or_error(text, conditions) == arrow
    with monkeypatch.context() as m:
        m.setattr(where_module, "pyarrow_or_none", lambda: None)
        assert mask_or_error(text, conditions) == arrow


@pytest.mark.parametrize("values", [np.array([3, 5, 7, 5]), np.array([0.5, 5.0, np.nan, 5.0]),
                                    np.array([True, False, True, True])])
@pytest.mark.parametrize("conditions", [{"c": 5}, {"c": ["5.0", True]}, {"c": "True"},
                                        [("c", ">=", 5)], [("c", "!=", "x")]])
def test_numeric_columns_match_their_text(monkeypatch, values, conditions):
    as_text = np.array([str(v) for v in values.tolist()], dtype=object)
    expected = mask_or_error(values, conditions)
    if values.dtype.kind != "b":
        assert mask_or_error(as_text, conditions) == expected
    monkeypatch.setattr(where_module, "pyarrow_or_none", lambda: None)
    assert mask_or_error(values, conditions) == expected


def test_checks_wait_for_every_block():
    rows = RowFilter({"c": ["AL", "MB"]})
    assert rows.mask(block(pa.array(["AL", "LO"]))).tolist() == [True, False]
    assert rows.mask(block(np.array(["MB"], dtype=object))).tolist() == [True]
    rows.finish("the table")  # 'MB' came in the second block
    rows = RowFilter({"c": ["AL", "ME"]})
    rows.mask(block(pa.array(["AL", "LO"])))
    rows.mask(block(pa.array(["MB", "me"])))
    with pytest.raises(DataError, match=r"selects 'ME' .* the column has 4 distinct value\(s\): "
                                        r"'AL', 'LO', 'MB', 'me'\. Did you mean 'me'\?"):
        rows.finish("the table")
    rows = RowFilter([("c", ">", 5)])
    rows.mask(block(np.array([1, 2])))
    with pytest.raises(DataError, match="No row of the table matches every condition"):
        rows.finish("the table")


def test_integer_thresholds_are_exact_for_large_ids():
    ids = np.array([720575940000000000, 720575940000000001, 720575940000000002])
    table = block(ids)
    kept = apply_where(table, [("c", ">=", 720575940000000001)])
    assert kept.size == 2 and kept.column("c", "c").tolist() == ids[1:].tolist()


def test_text_is_matched_through_its_distinct_values(monkeypatch):
    calls = []
    real = where_module.is_number
    monkeypatch.setattr(where_module, "is_number", lambda t: calls.append(t) or real(t))
    column = pa.array(["AL_L", "AL_R", " 5 ", "MB"] * 50_000)
    keep = RowFilter([("c", "in", ["AL_R", 5])]).mask(block(column))
    assert keep.sum() == 100_000 and len(calls) <= 4  # the wanted values, never a row
