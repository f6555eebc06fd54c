"""Per-rank estimates of a sharded layer: 1/world of the layer plus activations."""

import pytest
import torch

from sparselinear import Connectivity, memory
from sparselinear.errors import ShapeError, SparseLinearTypeError
from sparselinear.memory.sharded_side import ring_side


def test_per_rank_memory_falls_with_ranks_and_one_rank_is_the_single_process():
    one = memory.estimate_sharded((100_000, 100_000), nnz=1_000_000, world_size=1, batch_size=8)
    four = memory.estimate_sharded((100_000, 100_000), nnz=1_000_000, world_size=4,
                                   batch_size=8)
    assert one.peak == one.single.total and one.communication["total"] == 0
    values = four.ranks[0].category("values")
    assert values == 4 * (250_000 + 25_000)
    assert four.peak < 0.6 * one.peak  # the replicated input stays whole on every rank


def test_communication_follows_the_input_layout():
    kw = {"world_size": 4, "batch_size": 16}
    rep = memory.estimate_sharded((4000, 1000), nnz=40_000, **kw)
    assert rep.communication == {"forward": 0, "backward": 2 * 3 * 16 * 1000 * 4 // 4,
                                 "total": 96_000}
    sharded = memory.estimate_sharded((4000, 1000), nnz=40_000, input="sharded", **kw)
    assert sharded.communication["forward"] == 3 * 16 * 250 * 4 and sharded.buffers > 0
    # the input again for the weight gradient, and the input gradient's partial sums
    assert sharded.communication["backward"] == 2 * sharded.communication["forward"]
    no_grad = memory.estimate_sharded((4000, 1000), nnz=40_000, input_requires_grad=False, **kw)
    assert no_grad.communication["total"] == 0


def test_a_connectivity_is_split_by_edges():
    conn = Connectivity.random(300, 200, nnz=3000, seed=0)
    est = memory.estimate_sharded(conn, world_size=3, batch_size=4)
    assert sum(r.layers[0].nnz for r in est.ranks) == 3000
    assert "per rank (largest)" in str(est) and est.to_dict()["peak"] == est.peak


def test_ranks_needed_finds_the_smallest_world_that_fits():
    one = memory.estimate_sharded((10_000, 10_000), nnz=1_000_000, world_size=1, batch_size=4)
    plan = memory.ranks_needed((10_000, 10_000), one.peak // 3, nnz=1_000_000, batch_size=4)
    assert plan.peak <= one.peak // 3
    assert memory.estimate_sharded((10_000, 10_000), nnz=1_000_000, world_size=plan.world_size - 1,
                                   batch_size=4).peak > one.peak // 3


def test_bad_arguments_are_refused():
    with pytest.raises(SparseLinearTypeError, match="'world_size' must be a positive int"):
        memory.estimate_sharded((10, 10), nnz=5, world_size=0, batch_size=1)
    with pytest.raises(ShapeError, match="Cannot split 3 rows over 4 ranks"):
        memory.estimate_sharded((3, 10), nnz=5, world_size=4, batch_size=1)
    with pytest.raises(SparseLinearTypeError, match="'model' must be a ShardedSparseLinear"):
        memory.estimate_sharded("layer", world_size=2, batch_size=1)


def test_a_sharded_input_divides_the_input_side_too():
    kw = {"nnz": 40_000_000, "batch_size": 32, "optimizer": "adam"}
    shape = (1_000_000, 1_000_000)
    rep = memory.estimate_sharded(shape, world_size=4, **kw)
    ring = memory.estimate_sharded(shape, world_size=4, input="sharded", **kw)
    side = ring.sides[0]
    assert side.input == side.output == 32 * 250_000 * 4  # its shard, its rows
    assert side.pieces == 4 and side.buffers == 3 * 8 * 250_000 * 4  # 8-row chunks in flight
    assert rep.sides[0].input == 32 * 1_000_000 * 4  # the whole input on every rank
    assert ring.peak < 0.2 * ring.single.total < rep.peak
    assert ring.to_dict()["input"] == "sharded" and "sharded input" in str(ring)


def test_one_rank_is_the_single_process_whatever_the_layout():
    kw = {"nnz": 100_000, "batch_size": 8, "world_size": 1}
    ring = memory.estimate_sharded((10_000, 10_000), input="sharded", **kw)
    assert ring.peak == memory.estimate_sharded((10_000, 10_000), **kw).peak == ring.single.total


def test_the_ring_counts_block_gradients_only_where_they_are_not_written_in_place():
    """float32 on one thread: each block's gradients go into the rank's buffers (three pieces
    and the input gradient's shard); bfloat16 computes in float32, so its gradients are
    temporaries, cast and added, and the estimate counts them."""
    rows, nnz, block, sizes, batch = 20_000, 4_000_000, 1_000_000, [20_000] * 4, 32
    common = (rows, nnz, block, sizes, 0, batch)
    kw = {"threads": 1}
    f32 = ring_side(*common, torch.float32, torch.device("cpu"), torch.int32, **kw)
    assert f32.backward == batch * 20_000 * 4 + 3 * 20_000 * batch * 4
    bf16 = ring_side(*common, torch.bfloat16, torch.device("cpu"), torch.int32, **kw)
    assert bf16.backward >= batch * 20_000 * 2 + 3 * 20_000 * batch * 2 + block * 2


def test_windows_of_the_features_bound_the_backward_pieces(monkeypatch):
    """2 MB windows: the backward pass holds three pieces of a quarter of the shard's 8-row
    chunk; the forward pass's pieces stay whole."""
    from sparselinear.distributed import ring

    kw = {"nnz": 40_000_000, "batch_size": 32, "optimizer": "adam", "input": "sharded"}
    whole = memory.estimate_sharded((1_000_000, 1_000_000), world_size=4, **kw).sides[0]
    monkeypatch.setattr(ring, "WINDOW_BYTES", 2 << 20)
    cut = memory.estimate_sharded((1_000_000, 1_000_000), world_size=4, **kw).sides[0]
    assert whole.buffers - cut.buffers == 3 * 8 * (250_000 - 62_500) * 4
    assert cut.forward == whole.forward and cut.backward < whole.backward
