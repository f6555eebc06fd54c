"""RowPartition: edge-balanced boundaries, every rank at least one row."""

import numpy as np
import pytest

from sparselinear.distributed import RowPartition
from sparselinear.errors import ShapeError, SparseLinearTypeError


def test_boundaries_follow_edges_not_rows():
    fan_in = np.array([50, 1, 1, 1, 1, 1, 1, 1, 1, 42])
    crow = np.concatenate([[0], np.cumsum(fan_in)])
    p = RowPartition.balanced(np.arange(11), crow, 2)
    assert p.row_bounds == (0, 1, 10) and p.edge_bounds == (0, 50, 100)
    assert p.sizes() == [1, 9] and p.nnz == 100 and p.out_features == 10


@pytest.mark.parametrize("world", [1, 2, 3, 5, 8])
def test_every_rank_owns_a_row_even_without_edges(world):
    crow = np.array([0, 30, 30, 30, 30, 30, 30, 30, 30])  # all edges in row 0
    p = RowPartition.balanced(np.arange(9), crow, world)
    assert p.world_size == world and all(n >= 1 for n in p.sizes())
    assert p.edges(0) == (0, 30)


def test_random_skewed_patterns_balance_within_one_row():
    rng = np.random.default_rng(0)
    fan_in = rng.zipf(2.0, 1000).clip(max=200)
    crow = np.concatenate([[0], np.cumsum(fan_in)])
    for world in (2, 3, 4, 7):
        p = RowPartition.balanced(np.arange(1001), crow, world)
        per_rank = np.diff(p.edge_bounds)
        assert per_rank.max() - crow[-1] / world <= fan_in.max()


def test_too_many_ranks_and_bad_bounds_are_refused():
    with pytest.raises(ShapeError, match="Cannot split 3 rows .* over 4 ranks"):
        RowPartition.balanced(np.arange(4), np.array([0, 1, 2, 3]), 4)
    with pytest.raises(ShapeError, match="row blocks.*smaller row blocks"):
        RowPartition.balanced(np.array([0, 64, 100]), np.array([0, 5, 9]), 3)
    with pytest.raises(SparseLinearTypeError, match="'world_size' must be a positive int"):
        RowPartition.balanced(np.arange(4), np.arange(4), 0)
    with pytest.raises(ShapeError, match="every rank owns at least one row"):
        RowPartition((0, 2, 2), (0, 1, 1))
    with pytest.raises(ShapeError, match="must run from 0 to out_features=3"):
        RowPartition.from_row_bounds([0, 2], [0, 1, 2, 3])
    assert RowPartition.from_row_bounds([0, 2, 3], [0, 1, 2, 3]).edge_bounds == (0, 2, 3)


def test_an_even_split_of_input_features():
    p = RowPartition.even(10, 4)
    assert p.sizes() == [2, 3, 2, 3] and p.out_features == 10 and p.nnz == 0
    with pytest.raises(ShapeError, match="Cannot split 3 features over 4 ranks"):
        RowPartition.even(3, 4)
    with pytest.raises(SparseLinearTypeError, match="'world_size' must be a positive int"):
        RowPartition.even(3, 0)
