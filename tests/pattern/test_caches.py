"""The transposed pattern and the cache that builds it on demand."""

import copy
import pickle
import threading

import pytest
import torch

from sparselinear import Connectivity
from sparselinear.pattern.caches import DerivedCache, transpose_order


@pytest.mark.parametrize("index_dtype", [torch.int32, torch.int64])
def test_transpose_order_lists_edges_column_by_column(index_dtype):
    c = Connectivity(Connectivity.random(13, 7, density=0.3, seed=0), index_dtype=index_dtype)
    crow, col = c._fields()
    crow_t, row_t, perm = transpose_order(crow, col, 7)
    assert all(t.dtype == index_dtype for t in (crow_t, row_t, perm))
    rows = c.row_indices()
    assert torch.equal(row_t, rows[perm.long()])
    assert torch.equal(col[perm.long()], torch.sort(col).values)
    assert torch.equal(crow_t.diff(), torch.bincount(col, minlength=7).to(index_dtype))
    # rows ascending inside each column: the CSR of the transposed pattern
    key = col[perm.long()].long() * 13 + row_t.long()
    assert bool((key[1:] > key[:-1]).all())


def test_transpose_order_of_an_empty_pattern():
    c = Connectivity(torch.zeros(2, 0, dtype=torch.int64), shape=(4, 3))
    crow_t, row_t, perm = transpose_order(*c._fields(), 3)
    assert crow_t.tolist() == [0, 0, 0, 0] and row_t.numel() == perm.numel() == 0


def test_cache_builds_once_and_rebuilds_when_the_tensors_change():
    crow, col = torch.tensor([0, 1, 2]), torch.tensor([1, 0])
    cache, calls = DerivedCache(), []

    def build():
        calls.append(1)
        return object()

    assert cache.peek(crow, col) is None
    first = cache.get(crow, col, build)
    assert cache.get(crow, col, build) is first and cache.peek(crow, col) is first
    col.copy_(torch.tensor([0, 1]))  # in place, as load_state_dict does: the version moves on
    assert cache.peek(crow, col) is None
    assert cache.get(crow, col, build) is not first
    other = col.clone()  # equal values, another tensor
    assert cache.peek(crow, other) is None
    assert len(calls) == 2
    cache.clear()
    assert cache.peek(crow, col) is None


def test_cache_does_not_keep_its_tensors_alive():
    import weakref

    crow, col = torch.tensor([0, 1]), torch.tensor([0])
    cache = DerivedCache()
    cache.put(crow, col, "value")
    ref = weakref.ref(col)
    del col
    assert ref() is None
    assert cache.peek(crow, torch.tensor([0])) is None


def test_copies_and_pickles_start_empty():
    crow, col = torch.tensor([0, 1]), torch.tensor([0])
    cache = DerivedCache()
    cache.put(crow, col, "value")
    for clone in (copy.copy(cache), copy.deepcopy(cache), pickle.loads(pickle.dumps(cache))):
        assert clone.peek(crow, col) is None
    assert "filled" in repr(cache) and "empty" in repr(DerivedCache())


def test_concurrent_first_use_gives_complete_equal_results():
    c = Connectivity.random(300, 200, density=0.05, seed=1)
    results, barrier = [], threading.Barrier(4)

    def worker():
        barrier.wait()
        results.append(c.transposed_csr())

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4
    for triple in results:
        assert len(triple) == 3
        for got, want in zip(triple, results[0], strict=True):
            assert torch.equal(got, want)
    assert any(c.transposed_csr() is triple for triple in results)
