"""Building from CSR arrays: canonical arrays are taken as they are, others take the general
path (sorted, or rejected with the position of the problem)."""

import numpy as np
import pytest
import scipy.sparse
import torch

from sparselinear import Connectivity
from sparselinear.errors import DuplicateEdgeError, PatternError
from sparselinear.pattern import csr as csr_module


def _random_csr(n_out, n_in, density, seed):
    m = scipy.sparse.random(n_out, n_in, density=density, format="csr", random_state=seed)
    m.sort_indices()
    return torch.from_numpy(m.indptr.astype(np.int64)), torch.from_numpy(m.indices), m


@pytest.mark.parametrize("chunk", [1, 3, 1 << 20])
def test_canonical_csr_is_taken_as_is(monkeypatch, chunk):
    monkeypatch.setattr(csr_module, "CHUNK_EDGES", chunk)  # row boundaries inside chunks
    crow, col, m = _random_csr(50, 30, 0.2, 0)
    c = Connectivity.from_csr(crow, col, (50, 30))
    assert torch.equal(c.crow_indices().long(), crow) and torch.equal(c.col_indices().long(), col)
    assert c == Connectivity(m)
    before = c.col_indices().clone()
    col.zero_()
    assert torch.equal(c.col_indices(), before)


@pytest.mark.parametrize("chunk", [1, 2, 1 << 20])
def test_unsorted_rows_take_the_general_path(monkeypatch, chunk):
    monkeypatch.setattr(csr_module, "CHUNK_EDGES", chunk)
    crow = torch.tensor([0, 3, 3, 5])
    col = torch.tensor([2, 0, 1, 4, 3])  # rows 0 and 2 unsorted, row 1 empty
    c = Connectivity.from_csr(crow, col, (3, 5))
    assert c.indices().tolist() == [[0, 0, 0, 2, 2], [0, 1, 2, 3, 4]]


def test_canonical_check_never_compares_across_rows():
    # Each row sorted, but the next row starts lower: canonical.
    c = Connectivity.from_csr([0, 2, 4], [3, 4, 0, 1], (2, 5))
    assert c.indices().tolist() == [[0, 0, 1, 1], [3, 4, 0, 1]]


@pytest.mark.parametrize(
    "col, error, match",
    [
        ([0, 0, 1], DuplicateEdgeError, "more than once"),
        ([0, 5, 1], PatternError, "out of range"),
        ([0, -1, 1], PatternError, "negative"),
    ],
)
def test_bad_csr_still_reports_the_problem(col, error, match):
    with pytest.raises(error, match=match):
        Connectivity.from_csr([0, 2, 3], col, (2, 5))


def test_empty_and_single_edge_patterns():
    assert Connectivity.from_csr([0, 0, 0], [], (2, 3)).nnz == 0
    assert Connectivity.from_csr([0, 1], [2], (1, 3)).indices().tolist() == [[0], [2]]
