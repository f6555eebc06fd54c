import numpy as np
import pytest
import scipy.sparse
import torch

from sparselinear import Connectivity
from sparselinear.errors import (
    DuplicateEdgeError,
    PatternError,
    ShapeError,
    SparseLinearError,
    SparseLinearTypeError,
)
from sparselinear.pattern.connectivity import index_dtype_for


def brute_force_edges(mask: np.ndarray) -> list[tuple[int, int]]:
    return [(int(r), int(c)) for r, c in zip(*np.nonzero(mask))]  # row-major = CSR order


@pytest.fixture
def mask():
    rng = np.random.default_rng(0)
    m = rng.random((6, 9)) < 0.3
    m[2] = False
    m[:, 4] = False
    return m


def edges_of(c: Connectivity) -> list[tuple[int, int]]:
    return [tuple(e) for e in c.indices().t().tolist()]


@pytest.mark.parametrize(
    "make",
    [
        lambda m: scipy.sparse.csr_matrix(m),
        lambda m: scipy.sparse.coo_array(m.astype(np.float32)),
        lambda m: scipy.sparse.csc_matrix(m),
        lambda m: scipy.sparse.lil_matrix(m),
        lambda m: torch.from_numpy(m),
        lambda m: m,
        lambda m: torch.from_numpy(m).to_sparse(),
        lambda m: torch.from_numpy(m).float().to_sparse_csr(),
        lambda m: Connectivity(m),
    ],
    ids=["csr", "coo", "csc", "lil", "torch-mask", "numpy-mask", "torch-coo", "torch-csr", "conn"],
)
def test_every_source_gives_the_same_canonical_pattern(make, mask):
    c = Connectivity(make(mask))
    assert c.shape == mask.shape
    assert c.nnz == mask.sum()
    assert edges_of(c) == brute_force_edges(mask)
    assert torch.equal(c.to_dense(), torch.from_numpy(mask))


def test_index_list_is_sorted_into_csr_order(mask):
    edges = np.array(brute_force_edges(mask)).T
    shuffled = edges[:, np.random.default_rng(1).permutation(edges.shape[1])]
    c = Connectivity(torch.from_numpy(shuffled), shape=mask.shape)
    assert edges_of(c) == brute_force_edges(mask)
    assert Connectivity(shuffled.tolist(), shape=mask.shape) == c


def test_transposed_order_and_permutation(mask):
    c = Connectivity(mask)
    (crow, col), (crow_t, row_t, perm) = c._fields(), c.transposed_csr()
    rows = c.row_indices()
    # the transposed CSR lists edges column by column, rows sorted, and perm maps to them
    assert torch.equal(row_t, rows[perm.long()])
    assert torch.equal(col[perm.long()], torch.sort(col, stable=True).values)
    assert torch.equal(crow_t.diff(), torch.from_numpy(mask.sum(0)).to(crow_t.dtype))
    assert torch.equal(c.fan_in(), torch.from_numpy(mask.sum(1)).to(crow.dtype))
    t = c.T
    assert t.shape == (9, 6)
    assert torch.equal(t.to_dense(), torch.from_numpy(mask.T.copy()))
    assert c.T.T == c


def holds_transposed(c: Connectivity) -> bool:
    return c._transpose_cache.peek(*c._fields()) is not None


def test_the_transposed_pattern_is_built_on_first_use_only(mask):
    built = [
        Connectivity(mask),
        Connectivity(scipy.sparse.csr_array(mask)),
        Connectivity.from_indices(np.array(np.nonzero(mask))),
        Connectivity.from_csr(*(Connectivity(mask)._fields()), mask.shape),
        Connectivity.random(6, 9, nnz=20, seed=0),
        Connectivity.tril(6, 9),
        Connectivity(mask) | Connectivity.diagonal(6, 9),
    ]
    for c in built:
        assert not holds_transposed(c)
    c = built[0]
    assert torch.equal(c.fan_out(), torch.from_numpy(mask.sum(0)).to(c.index_dtype))
    assert not holds_transposed(c)  # fan_out counts columns; it needs no transposed pattern
    triple = c.transposed_csr()
    assert holds_transposed(c) and c.transposed_csr() is triple
    assert torch.equal(c.fan_out(), triple[0].diff())


def test_views_of_the_same_tensors_share_the_transposed_pattern(mask):
    c = Connectivity(mask)
    triple = c.transposed_csr()
    for same in (c.to("cpu"), c.with_names(None, None), Connectivity(c),
                 Connectivity(c, index_dtype=torch.int32)):
        assert same.transposed_csr() is triple
    converted = Connectivity(c, index_dtype=torch.int64)
    assert not holds_transposed(converted)
    for got, want in zip(converted.transposed_csr(), triple, strict=True):
        assert got.dtype == torch.int64 and torch.equal(got, want.long())


def test_transpose_gives_both_patterns_their_transposed_pattern(mask):
    c = Connectivity(mask)
    t = c.T
    crow_t, row_t, perm = c.transposed_csr()
    assert t._fields()[0] is crow_t and t._fields()[1] is row_t
    # the transposed pattern's own transposed pattern is the original, for free
    back_crow, back_col, inverse = t.transposed_csr()
    assert back_crow is c._fields()[0] and back_col is c._fields()[1]
    assert torch.equal(perm[inverse.long()], torch.arange(c.nnz, dtype=perm.dtype))
    rebuilt = Connectivity(t.indices(), shape=t.shape).transposed_csr()
    for got, want in zip(t.transposed_csr(), rebuilt, strict=True):
        assert torch.equal(got, want)


def test_index_dtype_is_int32_when_it_fits(mask):
    c = Connectivity(mask)
    assert c.index_dtype == torch.int32
    assert all(t.dtype == torch.int32 for t in c._fields() + c.transposed_csr())


def test_int64_indices_where_int32_does_not_fit(mask):
    assert index_dtype_for((4, 2**31 + 5), 3) == torch.int64
    assert index_dtype_for((4, 5), 2**31) == torch.int64
    assert index_dtype_for((2**31 - 2, 5), 2**31 - 2) == torch.int32
    c = Connectivity(mask, index_dtype=torch.int64)
    assert all(t.dtype == torch.int64 for t in c._fields() + c.transposed_csr())
    assert c == Connectivity(mask) and c.digest == Connectivity(mask).digest
    assert Connectivity(c, index_dtype=torch.int32).index_dtype == torch.int32
    with pytest.raises(SparseLinearTypeError, match="'index_dtype' must be"):
        Connectivity(mask, index_dtype=torch.float32)


def test_shape_inference_and_properties():
    c = Connectivity(torch.tensor([[0, 2], [1, 3]]))
    assert c.shape == (3, 4) and c.nnz == 2
    assert c.density == pytest.approx(2 / 12)
    assert "nnz=2" in repr(c)


def test_nnz_zero():
    c = Connectivity(torch.zeros(2, 0, dtype=torch.long), shape=(3, 5))
    assert c.nnz == 0 and c.density == 0.0
    assert c.indices().shape == (2, 0)
    assert not c.to_dense().any()


def test_digest_is_stable_and_sensitive(mask):
    a = Connectivity(mask)
    b = Connectivity(scipy.sparse.csr_matrix(mask))
    assert a.digest == b.digest and len(a.digest) == 64
    other = mask.copy()
    other[0, 0] = not other[0, 0]
    assert Connectivity(other).digest != a.digest
    wider = np.zeros((6, 10), dtype=bool)
    wider[:, :9] = mask
    assert Connectivity(wider).digest != a.digest  # same edges, other shape
    assert hash(a) == hash(b) and a == b


def test_random_is_exact_and_reproducible():
    a = Connectivity.random(300, 200, nnz=1234, seed=3)
    assert a.nnz == 1234
    assert torch.unique(a.indices(), dim=1).shape[1] == 1234
    assert a == Connectivity.random(300, 200, nnz=1234, seed=3)
    assert a != Connectivity.random(300, 200, nnz=1234, seed=4)
    assert Connectivity.random(10, 10, density=0.25, seed=0).nnz == 25


def test_to_scipy_round_trip(mask):
    c = Connectivity(mask)
    values = torch.arange(c.nnz, dtype=torch.float64)
    s = c.to_scipy(values)
    assert isinstance(s, scipy.sparse.csr_array)
    assert Connectivity(s) == c
    dense = s.toarray()
    r, k = c.indices()
    assert np.array_equal(dense[r.numpy(), k.numpy()], values.numpy())


def test_from_csr_round_trip(mask):
    c = Connectivity(mask)
    assert Connectivity.from_csr(c.crow_indices(), c.col_indices(), c.shape) == c
    with pytest.raises(ShapeError, match="crow_indices must have 7 entries"):
        Connectivity.from_csr(c.crow_indices()[:-1], c.col_indices(), c.shape)
    bad = c.crow_indices().clone()
    bad[1] = 100
    with pytest.raises(PatternError, match="never decrease"):
        Connectivity.from_csr(bad, c.col_indices(), c.shape)


# ------------------------------------------------------------------ errors
def test_errors_share_the_library_base_and_builtins():
    with pytest.raises(SparseLinearError):
        Connectivity(torch.tensor([[0], [-1]]), shape=(2, 2))
    with pytest.raises(ValueError):
        Connectivity(torch.tensor([[0], [-1]]), shape=(2, 2))
    with pytest.raises(TypeError):
        Connectivity("edges.csv")


def test_negative_index():
    with pytest.raises(PatternError, match="Edge 1 has negative input index -1"):
        Connectivity(torch.tensor([[0, 1], [1, -1]]), shape=(2, 2))


def test_out_of_range_index():
    with pytest.raises(PatternError, match=r"out of range output index 5.*\[0, 3\)"):
        Connectivity(torch.tensor([[0, 5], [1, 1]]), shape=(3, 2))


def test_non_integer_indices():
    with pytest.raises(SparseLinearTypeError, match="boolean mask or \\(2, nnz\\) integer"):
        Connectivity(torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
    with pytest.raises(SparseLinearTypeError, match="booleans or integers"):
        Connectivity(np.array([["a", "b"], ["c", "d"]]))


def test_duplicates_are_named_with_a_fix():
    idx = torch.tensor([[0, 1, 0, 1], [2, 0, 2, 0]])
    with pytest.raises(
        DuplicateEdgeError, match=r"2 edge\(s\).*\(0, 2\), \(1, 0\).*sum_duplicates"
    ):
        Connectivity(idx, shape=(2, 3))


def test_duplicates_in_scipy_coo():
    coo = scipy.sparse.coo_matrix(([1.0, 2.0], ([0, 0], [1, 1])), shape=(2, 2))
    with pytest.raises(DuplicateEdgeError, match=r"\(0, 1\)"):
        Connectivity(coo)


def test_wrong_index_shape():
    with pytest.raises(ShapeError, match=r"\(2, nnz\).*transpose"):
        Connectivity(torch.tensor([[0, 1, 2]] * 3))


def test_shape_disagreement():
    with pytest.raises(ShapeError, match=r"has shape \(2, 3\).*\(3, 2\) was requested"):
        Connectivity(np.ones((2, 3), dtype=bool), shape=(3, 2))
    with pytest.raises(ShapeError, match="pair"):
        Connectivity(np.ones((2, 3), dtype=bool), shape=5)
    with pytest.raises(ShapeError, match="empty index list"):
        Connectivity(torch.zeros(2, 0, dtype=torch.long))


def test_mask_must_be_2d():
    with pytest.raises(ShapeError, match="2-D"):
        Connectivity(torch.ones(2, 3, 4, dtype=torch.bool))


def test_a_two_row_zero_one_integer_array_is_ambiguous():
    with pytest.raises(SparseLinearTypeError, match=r"ambiguous.*mask\.bool\(\).*from_indices"):
        Connectivity(np.eye(2, dtype=int))
    with pytest.raises(SparseLinearTypeError, match="ambiguous"):
        Connectivity(np.array([[1, 0, 1, 0, 0, 0], [0, 1, 0, 1, 1, 1]]), shape=(2, 6))
    eye = Connectivity(np.eye(2, dtype=bool))
    assert eye.indices().tolist() == [[0, 1], [0, 1]]
    anti = Connectivity.from_indices(np.eye(2, dtype=int), shape=(2, 2))
    assert anti.indices().tolist() == [[0, 1], [1, 0]]
    # not ambiguous once the shape says it cannot be a mask
    assert Connectivity(torch.tensor([[0, 1], [1, 0]]), shape=(3, 3)).nnz == 2
    with pytest.raises(SparseLinearTypeError, match="Indices must be integers"):
        Connectivity.from_indices(np.ones((2, 2), dtype=bool), shape=(2, 2))
