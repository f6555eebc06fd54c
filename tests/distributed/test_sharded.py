"""ShardedSparseLinear on 2 and 3 local gloo processes against the single-process layer.

One spawn per world size runs every scenario of dist_scenarios.py (spawning costs seconds;
the scenarios take milliseconds); each test checks one scenario on every rank.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import scipy.sparse
import torch
from dist_harness import run_ranks
from dist_scenarios import TOL, pattern

import sparselinear.distributed as sd
from sparselinear import ops
from sparselinear.distributed.collectives import ProcessGroupError

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available(), reason="torch.distributed is unavailable"
)

COMMON = ["matches_single", "stack", "recurrent", "uneven", "ring_whole_shards",
          "ring_small_pieces", "ring_compiled_kernels", "ring_compiled_wide_chunks",
          "ring_windows_compiled", "ring_windows_torch", "ring_stack_compiled", "ring_edge_cases",
          "random_blocks", "files", "consolidate", "errors"]


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """Files every rank reads: a CSR pattern as .npz (plain and compressed), .npy and Parquet."""
    path = tmp_path_factory.mktemp("shared")
    rng = np.random.default_rng(0)
    adj = scipy.sparse.random(30, 25, density=0.2, format="csr", random_state=rng)
    adj.data = rng.standard_normal(adj.nnz)
    adj.sort_indices()
    scipy.sparse.save_npz(path / "w.npz", adj, compressed=False)
    scipy.sparse.save_npz(path / "wz.npz", adj, compressed=True)
    (path / "npy").mkdir()
    np.save(path / "npy" / "crow_indices.npy", adj.indptr.astype(np.int64))
    np.save(path / "npy" / "col_indices.npy", adj.indices.astype(np.int32))
    coo = adj.tocoo()
    order = rng.permutation(coo.nnz)  # a table in no particular order
    pq.write_table(pa.table({"pre": coo.col[order], "post": coo.row[order],
                             "w": coo.data[order]}), path / "edges.parquet")
    torch.save({"crow": torch.from_numpy(adj.indptr.astype(np.int64)),
                "col": torch.from_numpy(adj.indices.astype(np.int64)),
                "values": torch.from_numpy(adj.data)}, path / "expected.pt")
    return path


@pytest.fixture(scope="module")
def runs(shared, tmp_path_factory):
    """One spawn of 3 ranks: every scenario on a 2-rank subgroup (which also saves a DCP
    checkpoint), then on all 3 (which load it)."""
    plan = [(2, [*COMMON, "dcp_save"]), (3, [*COMMON, "dcp_load"])]
    return run_ranks(3, "dist_scenarios", plan, tmp_path_factory.mktemp("ranks"), shared)


@pytest.fixture
def two(runs):
    return runs[2]


@pytest.fixture
def three(runs):
    return runs[3]


@pytest.fixture(params=[2, 3], ids=["2-ranks", "3-ranks"])
def ranks(request):
    return request.getfixturevalue({2: "two", 3: "three"}[request.param])


def _values(ranks, name):
    out = []
    for r, results in enumerate(ranks):
        assert name in results, f"rank {r} did not run {name}"
        status = results[name]
        assert status[0] == "ok", f"rank {r}: {status[1]}: {status[2]}\n{status[3]}"
        out.append(status[1])
    return out


@pytest.mark.parametrize("scenario", ["matches_single", "stack", "recurrent", "uneven",
                                      "ring_whole_shards", "ring_small_pieces",
                                      "ring_compiled_kernels", "ring_compiled_wide_chunks",
                                      "ring_windows_compiled", "ring_windows_torch",
                                      "ring_stack_compiled",
                                      "ring_edge_cases"])
def test_forward_and_every_gradient_match_the_single_process_layer(ranks, scenario):
    for r, value in enumerate(_values(ranks, scenario)):
        for what, diff in value["diffs"].items():
            assert diff < TOL, f"rank {r}: {scenario} {what} differs by {diff}"


def test_a_sharded_input_goes_round_in_pieces_with_either_kernels(ranks):
    assert all(v["pieces"] == 1 for v in _values(ranks, "ring_whole_shards"))
    assert all(v["pieces"] == 4 for v in _values(ranks, "ring_small_pieces"))
    compiled = _values(ranks, "ring_compiled_kernels")
    assert all(v["pieces"] == 7 and v["compiled"] == ops._ext.build_expected() for v in compiled)
    wide = _values(ranks, "ring_compiled_wide_chunks")
    assert all(v["pieces"] == 2 and v["compiled"] == ops._ext.build_expected() for v in wide)
    assert all(v["windows"] == 1 for v in wide + compiled)
    windowed = _values(ranks, "ring_windows_compiled")
    assert all(v["windows"] == 4 and v["compiled"] == ops._ext.build_expected() for v in windowed)
    assert all(v["windows"] == 3 for v in _values(ranks, "ring_windows_torch"))
    assert not any(v["compiled"] for v in _values(ranks, "ring_small_pieces"))


def test_an_empty_batch_and_a_frozen_weight_go_round_too(ranks):
    for value in _values(ranks, "ring_edge_cases"):
        assert value["empty"] and value["frozen"]


def test_partitions_balance_edges_not_rows(ranks):
    values = _values(ranks, "matches_single")
    edges = values[0]["edges"]
    world = len(values)
    per_rank = [b - a for a, b in zip(edges, edges[1:])]
    # rows 0-2 are dense: an even split by rows would give rank 0 far more edges
    assert max(per_rank) - min(per_rank) <= 17
    assert [v["local_nnz"] for v in values] == per_rank and len(per_rank) == world


@pytest.mark.parametrize("scenario", ["uneven", "ring_small_pieces"])
def test_a_rank_with_no_edges_takes_part(ranks, scenario):
    values = _values(ranks, scenario)
    assert values[-1]["local_nnz"] == 0


@pytest.mark.parametrize("scenario", ["stack", "ring_stack_compiled"])
def test_counted_bytes_equal_the_predicted_volume(ranks, scenario):
    for value in _values(ranks, scenario):
        assert value["bytes"] == value["predicted"] > 0


def test_random_blocks_shards_form_the_single_process_pattern(ranks):
    assert _values(ranks, "random_blocks")[0]["same"]


def test_each_rank_reads_its_rows_from_npz_npy_and_parquet(ranks):
    assert _values(ranks, "files")[0] == {"npz": True, "npz_compressed": True, "npy": True,
                                          "parquet": True}


def test_consolidation_to_and_from_the_single_process_state_dict(ranks):
    values = _values(ranks, "consolidate")
    assert values[0]["same"]
    assert all(v["back"] for v in values)
    assert all(v["refused"] == "WiringMismatchError" for v in values)


def test_node_names_go_with_the_rows_and_come_back_on_consolidation(ranks):
    values = _values(ranks, "consolidate")
    assert values[0]["names"] and all(v["rows_named"] for v in values)
    for value in values:
        assert value["other_names"].startswith("WiringMismatchError") and \
            "other nodes" in value["other_names"]


def test_a_checkpoint_saved_on_two_ranks_loads_on_three(two, three):
    _values(two, "dcp_save")
    for value in _values(three, "dcp_load"):
        assert value["same"]
        assert value["refused"] == "WiringMismatchError"


def test_adam_state_saved_on_two_ranks_resumes_on_three(two, three):
    _values(two, "dcp_save")
    for r, value in enumerate(_values(three, "dcp_load")):
        assert value["adam_state"] < TOL and value["adam_step"] < TOL, (r, value)
        assert value["lr"] == 0.01  # the saved hyperparameters, not the new optimizer's
        assert value["no_state"].startswith("DataError") and "no optimizer state" in \
            value["no_state"]


@pytest.mark.parametrize("case, error, text", [
    ("width", "ShapeError", "last dimension must be in_features = 17"),
    ("sharding", "ShapeError", "rows of the previous layer's output"),
    ("batch", "ShapeError", "different batch sizes"),
    ("not_replicated", "DataError", "the input differs between the ranks"),
    ("seed", "WiringMismatchError", "ranks disagree on the pattern"),
    ("too_many_ranks", "ShapeError", "every rank must own at least one row"),
    ("missing_file", "DataError", "No such file"),
])
def test_bad_input_raises_on_every_rank_and_none_hangs(ranks, case, error, text):
    values = _values(ranks, "errors")
    for r, value in enumerate(values):
        assert value[case] is not None, f"rank {r} did not raise for {case}"
        assert value[case].startswith(error) and text in value[case], value[case]
        assert value["still_works"]


def test_a_process_group_that_is_not_initialised_is_refused():
    with pytest.raises(ProcessGroupError, match="not initialised.*init_process_group"):
        sd.ShardedSparseLinear(17, 23, pattern())


def test_a_finished_exchange_lets_go_of_its_pieces():
    """A request keeps the piece it sent alive; waiting drops it, so that the ring holds three
    pieces at a time, not a fourth already sent."""
    import weakref

    from sparselinear.distributed import ring

    class Request:
        def __init__(self, tensor):
            self.tensor, self.waited = tensor, False

        def wait(self):
            self.waited = True

    piece = torch.zeros(4)
    gone = weakref.ref(piece)
    requests = [Request(piece), Request(torch.zeros(2))]
    waited = list(requests)
    del piece
    ring._wait(requests)
    assert requests == [] and all(r.waited for r in waited)
    del waited
    assert gone() is None
