"""benchmarks/sharded.py end to end at a tiny size (spawns processes: slow)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_sharded_benchmark_runs_and_reports_every_world(tmp_path):
    out = tmp_path / "r.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "sharded.py"), "--scale", "0.001",
         "--ranks", "1", "2", "--inputs", "sharded", "replicated", "--steps", "1",
         "--warmup", "1", "--json", str(out)],
        capture_output=True, text=True, timeout=300, env=env, check=True,
    )
    assert "sent/rank/step" in done.stdout and "sharded input" in done.stdout
    results = json.loads(out.read_text())
    for layout in ("sharded", "replicated"):
        worlds = results["inputs"][layout]
        assert set(worlds) == {"1", "2"}
        two = worlds["2"]
        assert sum(r["local_nnz"] for r in two) == results["nnz"]
        assert all(r["bytes_sent"] == r["predicted_sent"] > 0 for r in two)
        assert all(0 < r["file_bytes"] < r["peak_bytes"] for r in two)  # code pages, counted
