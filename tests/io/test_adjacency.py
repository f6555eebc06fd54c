import gzip

import numpy as np
import pytest
import scipy.io
import scipy.sparse

from sparselinear.errors import DataError
from sparselinear.io import adjacency_kind, read_matrix


@pytest.fixture
def matrix():
    return scipy.sparse.coo_array((np.ones(3), ([0, 2, 3], [1, 0, 1])), shape=(4, 2))


@pytest.mark.parametrize(
    "name, kind",
    [("a.csv", "edgelist"), ("a.TSV", "edgelist"), ("a.txt.gz", "edgelist"),
     ("a.edges", "edgelist"), ("a.npz", "matrix"), ("a.mtx", "matrix"), ("a.mtx.gz", "matrix")],
)
def test_adjacency_kind(tmp_path, name, kind):
    (tmp_path / name).write_text("")
    assert adjacency_kind(tmp_path / name) == kind


@pytest.mark.parametrize("name, match", [("a.xyz", "unknown file kind '.xyz'"),
                                         ("a.npz.gz", "unknown file kind '.gz'"),
                                         ("noext", r"unknown file kind '\(none\)'")])
def test_adjacency_kind_unknown(tmp_path, name, match):
    (tmp_path / name).write_text("")
    with pytest.raises(DataError, match=match):
        adjacency_kind(tmp_path / name)


def test_read_matrix_as_stored(tmp_path, matrix):
    scipy.sparse.save_npz(tmp_path / "m.npz", matrix.tocsr())
    scipy.io.mmwrite(tmp_path / "m.mtx", matrix)
    (tmp_path / "m.mtx.gz").write_bytes(gzip.compress((tmp_path / "m.mtx").read_bytes()))
    for name in ("m.npz", "m.mtx", "m.mtx.gz"):
        read = read_matrix(tmp_path / name)
        assert isinstance(read, scipy.sparse.coo_array) and read.shape == (4, 2)
        assert (read.toarray() == matrix.toarray()).all()


def test_read_matrix_errors(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_matrix(tmp_path / "missing.npz")
    (tmp_path / "e.csv").write_text("a,b\nx,y\n")
    with pytest.raises(DataError, match="as a matrix: expected a .npz or .mtx file"):
        read_matrix(tmp_path / "e.csv")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="Cannot read .*bad.npz' as npz"):
        read_matrix(tmp_path / "bad.npz")
