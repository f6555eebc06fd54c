import numpy as np
import pytest
import scipy.sparse
import torch

from sparselinear import Connectivity
from sparselinear.errors import ShapeError, SparseLinearTypeError
from sparselinear.pattern.generators import _distinct_per_group, _solve_exponent

SHAPES = [(5, 7), (7, 5), (6, 6), (1, 4), (4, 1), (0, 3), (3, 0)]
OFFSETS = [-8, -2, -1, 0, 1, 3, 9]


def dense(c: Connectivity) -> np.ndarray:
    return c.to_dense().numpy()


def assert_canonical(c: Connectivity) -> None:
    """Weight order is row-major and every edge is unique."""
    rows, cols = c.indices()
    keys = rows * c.in_features + cols
    assert bool((keys[1:] > keys[:-1]).all())


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("k", OFFSETS)
def test_triangles_and_diagonal_match_numpy(shape, k):
    ones = np.ones(shape, dtype=bool)
    np.testing.assert_array_equal(dense(Connectivity.tril(*shape, k)), np.tril(ones, k))
    np.testing.assert_array_equal(dense(Connectivity.triu(*shape, k)), np.triu(ones, k))
    np.testing.assert_array_equal(
        dense(Connectivity.diagonal(*shape, k)), np.eye(*shape, k, dtype=bool)
    )
    assert_canonical(Connectivity.tril(*shape, k))


def test_tril_default_is_the_causal_mask():
    c = Connectivity.tril(4, 4)
    assert c.nnz == 10
    np.testing.assert_array_equal(dense(c), np.tril(np.ones((4, 4), bool)))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("lower,upper", [(0, 0), (1, 0), (0, 2), (2, 3), (10, 10)])
def test_band_matches_brute_force(shape, lower, upper):
    i, j = np.indices(shape)
    expected = (j >= i - lower) & (j <= i + upper)
    np.testing.assert_array_equal(dense(Connectivity.band(*shape, lower, upper)), expected)


def test_block_diagonal_matches_scipy():
    inner = Connectivity.diagonal(2, 3, 1)
    c = Connectivity.block_diagonal([(1, 2), 2, inner, (0, 3), (2, 0)])
    expected = scipy.sparse.block_diag(
        [np.ones((1, 2)), np.ones((2, 2)), dense(inner), np.ones((0, 3)), np.ones((2, 0))]
    ).toarray().astype(bool)
    assert c.shape == expected.shape
    np.testing.assert_array_equal(dense(c), expected)
    assert_canonical(c)
    assert Connectivity.block_diagonal([]).shape == (0, 0)


@pytest.mark.parametrize(
    "sizes,err,match",
    [
        ("abc", SparseLinearTypeError, "'sizes' must be a list"),
        (3, SparseLinearTypeError, "'sizes' must be a list"),
        ([(1, 2), (-1, 2)], ShapeError, r"'sizes\[1\]' must be a \(rows, cols\) pair"),
        ([(1, 2, 3)], ShapeError, r"'sizes\[0\]'"),
    ],
)
def test_block_diagonal_errors(sizes, err, match):
    with pytest.raises(err, match=match):
        Connectivity.block_diagonal(sizes)


@pytest.mark.parametrize("shape,k", [((50, 10), 3), ((50, 10), 7), ((20, 10), 10), ((5, 4), 0)])
def test_fixed_fan_in_exact_and_distinct(shape, k):
    c = Connectivity.fixed_fan_in(*shape, k, seed=3)
    assert c.nnz == shape[0] * k
    assert bool((c.fan_in() == k).all())
    assert_canonical(c)  # distinct inputs within every row
    assert c == Connectivity.fixed_fan_in(*shape, k, seed=3)


def test_fixed_fan_in_is_uniform():
    # 4000 rows choosing 3 of 8 inputs: each input is chosen with probability 3/8.
    c = Connectivity.fixed_fan_in(4000, 8, 3, seed=0)
    freq = c.fan_out().double() / 4000
    assert torch.allclose(freq, torch.full((8,), 3 / 8, dtype=torch.float64), atol=0.03)
    # every 3-subset appears (56 of them), none hugely over-represented
    rows = c.col_indices().view(4000, 3).to(torch.int64)
    subsets = torch.unique((1 << rows).sum(1), return_counts=True)[1]
    assert subsets.numel() == 56 and subsets.max() < 2 * 4000 / 56
    assert c != Connectivity.fixed_fan_in(4000, 8, 3, seed=1)


def test_distinct_per_group_mixed_sizes():
    sizes = np.array([0, 1, 5, 5, 100, 7], dtype=np.int64)
    counts = np.array([0, 1, 2, 5, 30, 6], dtype=np.int64)
    group, value = _distinct_per_group(sizes, counts, np.random.default_rng(0))
    np.testing.assert_array_equal(np.bincount(group, minlength=6), counts)
    assert ((value >= 0) & (value < sizes[group])).all()
    key = group * 1000 + value
    assert (np.diff(key) > 0).all()


@pytest.mark.parametrize(
    "args,err,match",
    [
        ((5, 4, 5), ShapeError, "'k' must be at most n_in=4"),
        ((5, 4, -1), ShapeError, "'k' must be >= 0"),
        ((5, 4, 2.0), SparseLinearTypeError, "'k' must be an int"),
        ((-5, 4, 2), ShapeError, "non-negative"),
    ],
)
def test_fixed_fan_in_errors(args, err, match):
    with pytest.raises(err, match=match):
        Connectivity.fixed_fan_in(*args)


@pytest.mark.parametrize(
    "call,err,match",
    [
        (lambda: Connectivity.tril(3, 3, 0.5), SparseLinearTypeError, "'diagonal' must be an int"),
        (lambda: Connectivity.triu(3, 3, True), SparseLinearTypeError, "'diagonal' must be an int"),
        (lambda: Connectivity.diagonal(3, 3, "1"), SparseLinearTypeError, "'offset' must be"),
        (lambda: Connectivity.band(3, 3, -1, 0), ShapeError, "'lower' must be >= 0"),
        (lambda: Connectivity.band(3, 3, 0, -2), ShapeError, "'upper' must be >= 0"),
        (lambda: Connectivity.tril(-1, 3), ShapeError, "non-negative"),
    ],
)
def test_structured_errors(call, err, match):
    with pytest.raises(err, match=match):
        call()


# ---------------------------------------------------------------------- small world
def dense_probability(n_out, n_in, lam):
    """The construction of sparselinear 0.0.5, written densely: positions on a line, the
    shorter layer centred, P = (|distance| + 1) ** -lam."""
    offset = abs(n_out - n_in) / 2
    inputs = np.arange(1, n_in + 1) + offset * (n_out > n_in)
    outputs = np.arange(1, n_out + 1) + offset * (n_out < n_in)
    return (np.abs(inputs[None, :] - outputs[:, None]) + 1.0) ** -lam  # (out, in)


@pytest.mark.parametrize("shape", [(6, 6), (4, 9), (9, 4), (7, 4)])
def test_small_world_exponent_matches_dense_construction(shape):
    from sparselinear.pattern.generators import _diagonal_counts

    target = 0.4 * shape[0] * shape[1]
    k, counts = _diagonal_counts(*shape)
    lam = _solve_exponent(np.abs(k + (shape[0] - shape[1]) / 2.0), counts, target)
    assert dense_probability(*shape, lam).sum() == pytest.approx(target, rel=1e-9)


def test_small_world_edge_frequencies_match_the_probabilities():
    # Edges on each diagonal (fixed distance) must be Binomial(count, p(distance)).
    from sparselinear.pattern.generators import _diagonal_counts

    n_out, n_in, nnz = 300, 200, 6000
    c = Connectivity.small_world(n_out, n_in, nnz=nnz, seed=0)
    k, counts = _diagonal_counts(n_out, n_in)
    lam = _solve_exponent(np.abs(k + (n_out - n_in) / 2.0), counts, nnz)
    p = dense_probability(n_out, n_in, lam)
    rows, cols = c.indices().numpy()
    found = np.bincount(cols - rows + n_out - 1, minlength=k.size)
    expected = np.bincount((np.arange(n_in)[None, :] - np.arange(n_out)[:, None]).ravel()
                           + n_out - 1, weights=p.ravel(), minlength=k.size)
    spread = np.sqrt(expected * (1 - expected / np.maximum(counts, 1))) + 1
    assert (np.abs(found - expected) <= 5 * spread).all()
    # and far diagonals are rarer than near ones
    near = found[np.abs(k + 50) <= 10].sum() / counts[np.abs(k + 50) <= 10].sum()
    far = found[np.abs(k + 50) >= 100].sum() / counts[np.abs(k + 50) >= 100].sum()
    assert near > 5 * far


def test_small_world_nnz_seed_and_locality():
    c = Connectivity.small_world(400, 300, density=0.02, seed=1)
    assert abs(c.nnz - 2400) < 5 * np.sqrt(2400)
    assert_canonical(c)
    assert c == Connectivity.small_world(400, 300, density=0.02, seed=1)
    assert c != Connectivity.small_world(400, 300, density=0.02, seed=2)
    rows, cols = c.indices().double()
    small = (cols - rows + 50).abs().mean()
    r = Connectivity.random(400, 300, nnz=c.nnz, seed=1).indices().double()
    assert small < 0.5 * (r[1] - r[0] + 50).abs().mean()
    assert Connectivity.small_world(5, 5, nnz=0).nnz == 0
    assert Connectivity.small_world(5, 4, density=1.0, seed=0).nnz == 20


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"nnz": 2}, "too small for the small-world pattern"),
        ({}, "exactly one of 'nnz' or 'density'"),
        ({"nnz": 5, "density": 0.1}, "exactly one of"),
        ({"density": 1.5}, r"'density' must lie in \[0, 1\]"),
        ({"nnz": 101}, r"'nnz' must be an integer in \[0, 100\]"),
    ],
)
def test_small_world_errors(kwargs, match):
    with pytest.raises(ShapeError, match=match):
        Connectivity.small_world(10, 10, **kwargs)


# ---------------------------------------------------------------------- random at scale
def test_random_exact_nnz_small():
    c = Connectivity.random(300, 200, nnz=1234, seed=0)
    assert c.nnz == 1234
    assert_canonical(c)
    assert c == Connectivity.random(300, 200, nnz=1234, seed=0)


@pytest.mark.slow
def test_random_at_scale_exact_nnz_no_duplicates():
    import time

    start = time.perf_counter()
    c = Connectivity.random(1_000_000, 1_000_000, nnz=10_000_000, seed=0)
    elapsed = time.perf_counter() - start
    assert c.nnz == 10_000_000
    keys = c.row_indices().to(torch.int64) * 1_000_000 + c.col_indices().to(torch.int64)
    assert bool((keys[1:] > keys[:-1]).all())  # sorted strictly: no duplicates
    assert c.fan_in().sum() == 10_000_000
    assert elapsed < 60, f"random(1M x 1M, 10M) took {elapsed:.1f} s"


@pytest.mark.slow
def test_fixed_fan_in_and_small_world_at_scale():
    c = Connectivity.fixed_fan_in(1_000_000, 1_000_000, 10, seed=0)
    assert c.nnz == 10_000_000 and bool((c.fan_in() == 10).all())
    s = Connectivity.small_world(200_000, 100_000, nnz=2_000_000, seed=0)
    assert abs(s.nnz - 2_000_000) < 5 * np.sqrt(2_000_000)
