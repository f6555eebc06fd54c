"""Row sources read any row range alone, identical to the rows of the whole pattern."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import scipy.sparse
import torch

from sparselinear import Connectivity
from sparselinear.distributed import ConnectivitySource, CSRFile, ParquetEdges, RandomBlocks
from sparselinear.distributed.sources import RowBlock, local_pattern
from sparselinear.errors import (
    DataError,
    DuplicateEdgeError,
    PatternError,
    ShapeError,
    SparseLinearTypeError,
)


@pytest.mark.parametrize("block_rows", [1, 7, 64])
def test_random_blocks_row_ranges_equal_the_whole_pattern(block_rows):
    src = RandomBlocks(100, 80, nnz=900, seed=3, block_rows=block_rows)
    whole = src.connectivity()
    assert whole.nnz == 900 and whole == RandomBlocks(100, 80, nnz=900, seed=3,
                                                      block_rows=block_rows).connectivity()
    crow = whole.crow_indices().long()
    for start, stop in [(0, 13), (13, 50), (50, 100), (99, 100)]:
        part = src.read(start, stop)
        e0, e1 = int(crow[start]), int(crow[stop])
        assert part.col.tolist() == whole.col_indices()[e0:e1].tolist()
        assert (part.crow == (crow[start:stop + 1] - e0).numpy()).all()
    assert RandomBlocks(100, 80, nnz=900, seed=4, block_rows=block_rows).connectivity() != whole


def test_random_blocks_are_stratified_and_validated():
    src = RandomBlocks(10, 10, density=1.0, seed=0, block_rows=3)
    assert src.connectivity().nnz == 100
    rows, edges = src.boundaries()
    assert rows.tolist() == [0, 3, 6, 9, 10] and edges.tolist() == [0, 30, 60, 90, 100]
    with pytest.raises(SparseLinearTypeError, match="'seed' must be a non-negative int"):
        RandomBlocks(10, 10, nnz=5, seed=None)
    with pytest.raises(ShapeError, match="'block_rows' must be at least 1"):
        RandomBlocks(10, 10, nnz=5, seed=0, block_rows=0)
    with pytest.raises(ShapeError, match="'nnz' must be an integer in"):
        RandomBlocks(10, 10, nnz=101, seed=0)


def test_connectivity_source_keeps_values_with_their_edges():
    conn = Connectivity.random(20, 10, nnz=50, seed=0)
    values = torch.arange(50.0)
    part = ConnectivitySource(conn, values).read(5, 12)
    e0, e1 = int(conn.crow_indices()[5]), int(conn.crow_indices()[12])
    assert part.values.tolist() == values[e0:e1].tolist()
    with pytest.raises(ShapeError, match="one value per edge"):
        ConnectivitySource(conn, torch.zeros(3))


def test_local_pattern_sorts_inputs_within_rows_with_their_values():
    block = RowBlock(np.array([0, 3]), np.array([4, 1, 2]), np.array([40.0, 10.0, 20.0]))
    conn, values = local_pattern(block, 1, 5)
    assert conn.col_indices().tolist() == [1, 2, 4] and values.tolist() == [10.0, 20.0, 40.0]
    with pytest.raises(DuplicateEdgeError):
        local_pattern(RowBlock(np.array([0, 2]), np.array([1, 1]), None), 1, 5)


@pytest.fixture
def adj():
    a = scipy.sparse.random(40, 30, density=0.1, format="csr", random_state=1)
    a.sort_indices()
    return a


@pytest.mark.parametrize("compressed", [False, True])
def test_csr_npz_reads_rows_by_range(tmp_path, adj, compressed):
    scipy.sparse.save_npz(tmp_path / "a.npz", adj, compressed=compressed)
    src = CSRFile(tmp_path / "a.npz", orientation="target_source", use_values=True)
    assert src.shape == (40, 30) and src.nnz == adj.nnz
    part = src.read(7, 21)
    ref = adj[7:21]
    assert (part.col == ref.indices).all() and np.allclose(part.values, ref.data)


def test_csr_file_errors(tmp_path, adj):
    scipy.sparse.save_npz(tmp_path / "a.npz", adj)
    with pytest.raises(PatternError, match="rows are inputs.*Transpose it once"):
        CSRFile(tmp_path / "a.npz", orientation="source_target")
    with pytest.raises(DataError, match="'orientation' must be one of"):
        CSRFile(tmp_path / "a.npz", orientation="rows")
    with pytest.raises(DataError, match="No such file"):
        _ = CSRFile(tmp_path / "missing.npz", orientation="target_source").shape
    scipy.sparse.save_npz(tmp_path / "c.npz", adj.tocsc())
    with pytest.raises(DataError, match="holds a 'csc' matrix"):
        _ = CSRFile(tmp_path / "c.npz", orientation="target_source").nnz
    (tmp_path / "d").mkdir()
    np.save(tmp_path / "d" / "crow_indices.npy", adj.indptr)
    np.save(tmp_path / "d" / "col_indices.npy", adj.indices)
    with pytest.raises(ShapeError, match="does not store its shape"):
        _ = CSRFile(tmp_path / "d", orientation="target_source").nnz
    with pytest.raises(PatternError, match="outside \\[0, 3\\)"):
        CSRFile(tmp_path / "d", orientation="target_source", shape=(40, 3)).read(0, 40)
    with pytest.raises(PatternError, match="row pointers must have out_features \\+ 1 = 11"):
        _ = CSRFile(tmp_path / "d", orientation="target_source", shape=(10, 30)).nnz


def test_parquet_edges_filter_rows_and_sort_them(tmp_path, adj):
    coo = adj.tocoo()
    order = np.random.default_rng(0).permutation(coo.nnz)
    pq.write_table(pa.table({"s": coo.col[order], "t": coo.row[order], "w": coo.data[order]}),
                   tmp_path / "e.parquet")
    src = ParquetEdges(tmp_path / "e.parquet", source="s", target="t", weight="w",
                       shape=(40, 30))
    assert src.nnz == adj.nnz
    part = src.read(10, 25)
    assert (part.col == adj[10:25].indices).all() and np.allclose(part.values, adj[10:25].data)
    with pytest.raises(DataError, match="missing \\['x'\\]"):
        _ = ParquetEdges(tmp_path / "e.parquet", source="x", target="t", shape=(40, 30)).nnz
    with pytest.raises(PatternError, match="column 't' holds index"):
        _ = ParquetEdges(tmp_path / "e.parquet", source="s", target="t", shape=(5, 30)).nnz
