"""Every source a user can hand to Connectivity: read exactly, or refused with a library error."""

import numpy as np
import pytest
import scipy.sparse
import torch

from sparselinear import Connectivity
from sparselinear.errors import PatternError, ShapeError, SparseLinearTypeError


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
                                   np.uint32, np.uint64])
def test_index_arrays_of_every_integer_width(dtype):
    indices = np.array([[0, 2, 1], [1, 0, 3]], dtype=dtype)
    c = Connectivity.from_indices(indices, shape=(3, 4))
    assert c.indices().tolist() == [[0, 1, 2], [1, 3, 0]]
    assert Connectivity.from_indices(torch.from_numpy(indices), shape=(3, 4)) == c


@pytest.mark.parametrize("build", [
    lambda big: Connectivity(np.array([[0, big], [0, 1]], dtype=np.uint64)),
    lambda big: Connectivity.from_indices(np.array([[0, big], [0, 1]], dtype=np.uint64)),
    lambda big: Connectivity.from_csr(np.array([0, 1, 2], dtype=np.uint64),
                                      np.array([0, big], dtype=np.uint64), (2, 2)),
])
def test_unsigned_indices_beyond_int64_are_not_read_as_negative(build):
    with pytest.raises(PatternError, match=r"holds the index 9223372036854775813, beyond"):
        build(2**63 + 5)


def test_unsigned_torch_indices_read_as_their_values():
    crow = torch.tensor([0, 1, 2], dtype=torch.uint64)
    col = torch.tensor([1, 0], dtype=torch.uint64)
    assert Connectivity.from_csr(crow, col, (2, 2)).indices().tolist() == [[0, 1], [1, 0]]


@pytest.mark.parametrize("shape", [(2.7, 3.2), (2.0, 3), ("2", 3), (True, 3), (2,), 5])
def test_shape_must_be_a_pair_of_ints(shape):
    with pytest.raises(ShapeError, match="'shape' must be a pair of ints"):
        Connectivity(torch.tensor([[0], [1]]), shape=shape)


def test_shape_accepts_integer_scalars_of_numpy_and_torch():
    c = Connectivity(torch.tensor([[0], [1]]), shape=(np.int64(2), torch.tensor(3)))
    assert c.shape == (2, 3)


def test_from_csr_refuses_a_two_dimensional_col():
    with pytest.raises(ShapeError, match="col_indices must be 1-D"):
        Connectivity.from_csr(torch.tensor([0, 1, 2]), torch.tensor([[0], [1]]), (2, 2))


def test_from_csr_refuses_float_indices():
    with pytest.raises(SparseLinearTypeError, match="'crow_indices' must hold integers"):
        Connectivity.from_csr(torch.tensor([0.0, 1.0]), torch.tensor([0]), (1, 1))


def test_a_csr_tensor_with_decreasing_crow_is_refused():
    with torch.sparse.check_sparse_tensor_invariants(enable=False):
        bad = torch.sparse_csr_tensor(torch.tensor([0, 2, 1]), torch.tensor([0, 1]),
                                      torch.ones(2), (2, 2))
    with pytest.raises(PatternError, match="crow_indices must start at 0, never decrease"):
        Connectivity(bad)


def test_a_hybrid_coo_tensor_is_refused():
    hybrid = torch.sparse_coo_tensor(torch.tensor([[0, 1]]), torch.ones(2, 3), (2, 3))
    with pytest.raises(ShapeError, match="2 sparse dimensions and no dense ones"):
        Connectivity(hybrid)


def test_the_scipy_reader_names_the_argument():
    with pytest.raises(SparseLinearTypeError, match="'adj' must be a scipy.sparse"):
        from sparselinear.nn.convert import scipy_to_pattern

        scipy_to_pattern(np.eye(2), orientation="out_in")
    complex_matrix = scipy.sparse.coo_array(np.array([[1j, 0], [0, 1]]))
    with pytest.raises(SparseLinearTypeError, match="must hold real numbers"):
        Connectivity(complex_matrix)
