"""ShardedSparseLinear over NCCL, where CUDA and at least two GPUs exist."""

import pytest
import torch
from dist_harness import run_ranks
from dist_scenarios import TOL

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.device_count() < 2,
                       reason="needs CUDA and at least 2 GPUs"),
    pytest.mark.skipif(not (torch.distributed.is_available()
                            and torch.distributed.is_nccl_available()),
                       reason="this torch build has no NCCL"),
]


def test_a_two_layer_stack_on_two_gpus_matches_the_single_process_layers(tmp_path):
    runs = run_ranks(2, "dist_scenarios", [(2, ["nccl_matches_single"])], tmp_path / "out",
                     tmp_path, backend="nccl")
    for r, results in enumerate(runs[2]):
        status = results["nccl_matches_single"]
        assert status[0] == "ok", f"rank {r}: {status[1:4]}"
        for what, diff in status[1]["diffs"].items():
            assert diff < TOL, f"rank {r}: {what} differs by {diff}"
