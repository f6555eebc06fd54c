import numpy as np
import pytest
import scipy.sparse
import torch
from torch import nn
from torch.nn.utils import prune

from sparselinear import Connectivity, SparseLinear
from sparselinear.errors import DataError, DuplicateEdgeError, ShapeError, SparseLinearTypeError
from sparselinear.nn.convert import scipy_to_pattern


def adjacency(seed=0, shape=(6, 4), density=0.4):
    """A (source, target) adjacency with one stored explicit zero."""
    m = scipy.sparse.random_array(shape, density=density, rng=seed, format="coo")
    data, row, col = m.data.copy(), m.row.copy(), m.col.copy()
    data[0] = 0.0
    return scipy.sparse.coo_array((data, (row, col)), shape=shape)


# ---------------------------------------------------------------------- scipy
@pytest.mark.parametrize("fmt", ["coo", "csr", "csc"])
def test_source_target_is_the_transpose(fmt):
    adj = adjacency().asformat(fmt)
    layer = SparseLinear.from_scipy(adj, orientation="source_target", use_values=True,
                                    dtype=torch.float64)
    assert (layer.in_features, layer.out_features) == adj.shape  # rows are sources = inputs
    dense = adj.toarray()
    np.testing.assert_array_equal(layer.to_dense().detach().numpy(), dense.T)
    x = torch.randn(5, adj.shape[0], dtype=torch.float64)
    ref = x @ torch.from_numpy(dense) + layer.bias.detach()  # y_j = sum_i x_i A[i, j]
    assert torch.allclose(layer(x), ref)
    same = SparseLinear.from_scipy(adj, orientation="in_out", use_values=True)
    assert same.connectivity == layer.connectivity


def test_target_source_keeps_the_layout():
    adj = adjacency()
    layer = SparseLinear.from_scipy(adj, orientation="target_source", use_values=True,
                                    dtype=torch.float64)
    assert (layer.out_features, layer.in_features) == adj.shape
    np.testing.assert_array_equal(layer.to_dense().detach().numpy(), adj.toarray())
    assert layer.connectivity == Connectivity(adj)  # the constructor's own convention


def test_explicit_zeros_policy():
    adj = adjacency()
    stored = adj.nnz
    keep, values = scipy_to_pattern(adj, orientation="out_in")
    assert keep.nnz == stored and (values == 0).sum() == 1
    drop, values = scipy_to_pattern(adj, orientation="out_in", explicit_zeros="drop")
    assert drop.nnz == stored - 1 and (values != 0).all()
    layer = SparseLinear.from_scipy(adj, orientation="out_in", use_values=True)
    assert layer.nnz == stored and int((layer.weight == 0).sum()) == 1


def test_without_values_uses_the_usual_init():
    adj = adjacency()
    layer = SparseLinear.from_scipy(adj, orientation="out_in", bias=False)
    assert layer.bias is None and not torch.equal(
        layer.weight, torch.from_numpy(scipy_to_pattern(adj, orientation="out_in")[1]).float()
    )


@pytest.mark.parametrize(
    "adj,kwargs,err,match",
    [
        (np.eye(3), {"orientation": "out_in"}, SparseLinearTypeError, "must be a scipy.sparse"),
        (scipy.sparse.eye_array(3), {"orientation": "rows_are_outputs"}, DataError,
         "'orientation' must be one of"),
        (scipy.sparse.eye_array(3), {"orientation": "out_in", "explicit_zeros": "keep"},
         DataError, "'explicit_zeros' must be one of"),
        (scipy.sparse.eye_array(3, dtype=complex), {"orientation": "out_in"},
         SparseLinearTypeError, "must hold real numbers"),
        (scipy.sparse.coo_array(([1.0, 2.0], ([0, 0], [1, 1])), shape=(2, 2)),
         {"orientation": "out_in"}, DuplicateEdgeError, "more than once"),
        (scipy.sparse.coo_array(([np.nan], ([0], [1])), shape=(2, 2)),
         {"orientation": "out_in", "use_values": True}, DataError, "NaN or infinite"),
    ],
)
def test_scipy_errors(adj, kwargs, err, match):
    with pytest.raises(err, match=match):
        SparseLinear.from_scipy(adj, **kwargs)


def test_orientation_is_required():
    with pytest.raises(TypeError, match="orientation"):
        SparseLinear.from_scipy(scipy.sparse.eye_array(2))


# ---------------------------------------------------------------------- nn.Linear
def assert_same_function(sparse, dense, n_in):
    x = torch.randn(7, n_in, dtype=dense.weight.dtype)
    assert torch.allclose(sparse(x), dense(x), atol=1e-12 if x.dtype == torch.float64 else 1e-5)


def test_from_pruned_linear():
    torch.manual_seed(0)
    linear = nn.Linear(20, 12).double()
    prune.l1_unstructured(linear, "weight", amount=0.8)
    sparse = SparseLinear.from_linear(linear)
    mask = linear.weight_mask.bool()
    assert sparse.nnz == int(mask.sum()) and sparse.weight.dtype == torch.float64
    assert torch.equal(sparse.connectivity.to_dense(), mask)
    assert torch.equal(sparse.to_dense(), linear.weight.detach())
    assert_same_function(sparse, linear, 20)


def test_from_linear_masks_thresholds_and_topk():
    torch.manual_seed(1)
    linear = nn.Linear(10, 6, dtype=torch.float64)
    w = linear.weight.detach()
    mask = torch.rand(6, 10) < 0.3
    for given in (mask, mask.double(), mask.numpy(), Connectivity(mask)):
        sparse = SparseLinear.from_linear(linear, given)
        assert torch.equal(sparse.connectivity.to_dense(), mask)
        assert torch.equal(sparse.to_dense(), w * mask)
    sparse = SparseLinear.from_linear(linear, threshold=0.2)
    assert torch.equal(sparse.connectivity.to_dense(), w.abs() > 0.2)
    sparse = SparseLinear.from_linear(linear, topk=7)
    order = sorted(range(60), key=lambda i: -abs(float(w.flatten()[i])))[:7]  # brute force
    expected = torch.zeros(60, dtype=torch.bool)
    expected[order] = True
    assert torch.equal(sparse.connectivity.to_dense(), expected.view(6, 10))
    assert torch.equal(sparse.bias, linear.bias)
    # thresholds act inside a prune mask
    prune.custom_from_mask(linear, "weight", mask)
    sparse = SparseLinear.from_linear(linear, threshold=0.1)
    assert torch.equal(sparse.connectivity.to_dense(), mask & (w.abs() > 0.1))
    assert SparseLinear.from_linear(linear, topk=3).nnz == 3


def test_from_linear_defaults_to_nonzeros():
    linear = nn.Linear(4, 3, bias=False)
    with torch.no_grad():
        linear.weight.zero_()
        linear.weight[0, 1] = 2.0
        linear.weight[2, 3] = -1.0
    sparse = SparseLinear.from_linear(linear)
    assert sparse.bias is None and sparse.connectivity.indices().tolist() == [[0, 2], [1, 3]]
    assert sparse.weight.tolist() == [2.0, -1.0]


def test_to_linear_round_trip():
    layer = SparseLinear(8, 5, Connectivity.random(5, 8, density=0.4, seed=0),
                         dtype=torch.float64)
    with torch.no_grad():
        layer.weight[0] = 0.0  # a zero-valued edge stays an edge with keep_mask
    dense = layer.to_linear()
    assert isinstance(dense, nn.Linear) and dense.weight.dtype == torch.float64
    assert_same_function(layer, dense, 8)
    assert SparseLinear.from_linear(dense).nnz == layer.nnz - 1
    masked = layer.to_linear(keep_mask=True)
    back = SparseLinear.from_linear(masked)
    assert back.connectivity == layer.connectivity
    assert torch.equal(back.weight, layer.weight) and torch.equal(back.bias, layer.bias)


@pytest.mark.parametrize(
    "kwargs,err,match",
    [
        ({"mask": torch.ones(3, 4)}, ShapeError, r"'mask' must have the weight's shape \(4, 3\)"),
        ({"mask": Connectivity.tril(3, 4)}, ShapeError, r"'mask' has shape \(3, 4\)"),
        ({"mask": [[1, 0]]}, SparseLinearTypeError, "'mask' must be a tensor"),
        ({"threshold": -1.0}, DataError, "'threshold' must be a number >= 0"),
        ({"topk": 13}, DataError, r"'topk' must lie in \[0, 12\]"),
        ({"topk": 2.5}, SparseLinearTypeError, "'topk' must be an int"),
        ({"topk": 2, "threshold": 0.1}, DataError, "at most one of"),
    ],
)
def test_from_linear_errors(kwargs, err, match):
    linear = nn.Linear(3, 4)
    mask = kwargs.pop("mask", None)
    with pytest.raises(err, match=match):
        SparseLinear.from_linear(linear, mask, **kwargs)


def test_from_linear_type_and_conflict_errors():
    with pytest.raises(SparseLinearTypeError, match=r"'linear' must be an nn\.Linear"):
        SparseLinear.from_linear(nn.Conv1d(2, 2, 1))
    linear = nn.Linear(3, 4)
    prune.random_unstructured(linear, "weight", amount=0.5)
    with pytest.raises(DataError, match=r"carries a torch\.nn\.utils\.prune mask"):
        SparseLinear.from_linear(linear, torch.ones(4, 3))
