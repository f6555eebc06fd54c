import numpy as np
import pytest
import torch

from sparselinear import Connectivity
from sparselinear.errors import DataError, ShapeError, SparseLinearTypeError


def random_mask(shape, density, seed):
    return np.random.default_rng(seed).random(shape) < density


@pytest.mark.parametrize("shape", [(7, 9), (1, 5), (0, 4), (6, 6)])
@pytest.mark.parametrize("seed", [0, 1])
def test_set_operations_match_boolean_masks(shape, seed):
    ma, mb = random_mask(shape, 0.4, seed), random_mask(shape, 0.5, seed + 10)
    a, b = Connectivity(torch.from_numpy(ma)), Connectivity(torch.from_numpy(mb))
    for result, expected in [
        (a | b, ma | mb),
        (a & b, ma & mb),
        (a - b, ma & ~mb),
        (b - a, mb & ~ma),
        (a | b, ma | mb),
        (a & b, ma & mb),
        (a - b, ma & ~mb),
        (a.union(b), ma | mb),
        (a.intersection(b), ma & mb),
        (a.difference(b), ma & ~mb),
    ]:
        assert result.shape == shape
        np.testing.assert_array_equal(result.to_dense().numpy(), expected)
        assert result == Connectivity(torch.from_numpy(expected))  # canonical order


def test_transpose_and_identities():
    a = Connectivity.random(8, 5, density=0.3, seed=0)
    np.testing.assert_array_equal(a.T.to_dense().numpy(), a.to_dense().numpy().T)
    assert a.T.T == a
    assert (a | a) == a and (a & a) == a and (a - a).nnz == 0
    assert (Connectivity.tril(5, 5) | Connectivity.triu(5, 5)).nnz == 25


def test_names_are_kept_and_must_agree():
    a = Connectivity.diagonal(2, 2).with_names(["o0", "o1"], ["i0", "i1"])
    b = Connectivity.tril(2, 2)
    assert (a | b).out_names == ("o0", "o1") and (b & a).in_names == ("i0", "i1")
    c = b.with_names(["x", "y"], None)
    with pytest.raises(DataError, match="different out_names"):
        a | c


def test_errors():
    a = Connectivity.tril(3, 3)
    with pytest.raises(ShapeError, match=r"same shape; got \(3, 3\) and \(3, 4\)"):
        a | Connectivity.tril(3, 4)
    with pytest.raises(SparseLinearTypeError, match="'other' of union must be a Connectivity"):
        a.union(torch.ones(3, 3, dtype=torch.bool))
    with pytest.raises(TypeError):
        a | 3


def test_transposed_pattern_trains_like_its_dense_reference():
    from sparselinear import SparseLinear

    c = Connectivity.random(6, 9, density=0.4, seed=2).T  # (9, 6)
    rows, cols = c.indices()
    assert c.T.T == c and c == Connectivity(torch.stack([rows, cols]), shape=(9, 6))
    layer = SparseLinear(6, 9, c, dtype=torch.float64)
    x = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    dense = torch.zeros(9, 6, dtype=torch.float64).index_put((rows, cols), layer.weight)
    (layer(x) ** 2).sum().backward()
    grad_w, grad_x = layer.weight.grad.clone(), x.grad.clone()
    x.grad = None
    layer.weight.grad = None
    w = layer.weight.detach().clone().requires_grad_()
    dense = torch.zeros(9, 6, dtype=torch.float64).index_put((rows, cols), w)
    ((x @ dense.T + layer.bias.detach()) ** 2).sum().backward()
    assert torch.allclose(grad_w, w.grad) and torch.allclose(grad_x, x.grad)
