"""The benchmark harness in ``benchmarks/``: patterns, estimates, the runner, reports."""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import sys

import numpy as np
import pytest

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
sys.path.insert(0, BENCH)

import gpu_fly  # noqa: E402
import implementations  # noqa: E402
import report  # noqa: E402
import runner  # noqa: E402
import workloads  # noqa: E402
from floor import floor_model  # noqa: E402

GB = 1 << 30


def _coords(p):
    crow, col = p["crow"], p["col"].astype(np.int64)
    rows = np.repeat(np.arange(crow.size - 1), np.diff(crow))
    return rows, col


@pytest.mark.parametrize("kind,n_out,n_in,nnz", [
    ("random", 300, 200, 5000), ("random", 50, 40, 1900), ("tril", 64, 64, 64 * 65 // 2),
])
def test_pattern_is_canonical_csr_and_deterministic(kind, n_out, n_in, nnz):
    w = workloads.Workload("t", n_out, n_in, nnz, 4, kind=kind, seed=3)
    p = workloads.build_pattern(w)
    rows, cols = _coords(p)
    assert p["crow"][0] == 0 and p["crow"][-1] == nnz and p["values"].shape == (nnz,)
    assert p["col"].dtype == np.int32 and p["values"].dtype == np.float32
    keys = rows * n_in + cols
    assert np.all(np.diff(keys) > 0)  # sorted, no duplicates
    assert cols.min() >= 0 and cols.max() < n_in
    if kind == "tril":
        assert np.all(cols <= rows)
    fan_in = np.maximum(np.diff(p["crow"]), 1)
    assert np.all(np.abs(p["values"]) <= 1 / np.sqrt(fan_in[rows]) + 1e-7)
    again = workloads.build_pattern(w)
    assert all(np.array_equal(p[k], again[k]) for k in p)
    other = workloads.build_pattern(workloads.Workload("t", n_out, n_in, nnz, 4, kind=kind,
                                                       seed=4))
    assert kind == "tril" or not np.array_equal(other["col"], p["col"])


def test_bad_tril_workload_raises():
    with pytest.raises(ValueError, match="must be square"):
        workloads.build_pattern(workloads.Workload("t", 4, 5, 10, 1, kind="tril"))
    with pytest.raises(ValueError, match="nnz must lie in"):
        workloads.build_pattern(workloads.Workload("t", 4, 5, 21, 1))
    with pytest.raises(ValueError, match="unknown workload kind"):
        workloads.build_pattern(workloads.Workload("t", 4, 5, 10, 1, kind="band"))


def test_sweeps_keep_the_fan_in_and_the_fly_shape():
    sweep = workloads.nnz_sweep((1e5, 1e7))
    assert [w.nnz for w in sweep] == [100_000, 10_000_000]
    for w in sweep:
        assert abs(w.nnz / w.n_out - workloads.FLY_DEGREE) < 1
    assert workloads.nnz_sweep((1e4,))[0].density <= 0.5
    assert {w.n_out for w in workloads.batch_sweep()} == {workloads.FLY_N}
    assert len({w.key() for w in workloads.batch_sweep() + workloads.thread_sweep()}) == 9


def test_pattern_file_is_written_once(tmp_path):
    w = workloads.Workload("t", 30, 20, 100, 2)
    path = workloads.pattern_file(w, str(tmp_path))
    mtime = os.stat(path).st_mtime_ns
    assert workloads.pattern_file(w, str(tmp_path)) == path
    assert os.stat(path).st_mtime_ns == mtime
    with np.load(path) as f:
        assert list(f["shape"]) == [30, 20] and f["col"].size == 100


def test_memory_estimates_skip_what_cannot_fit():
    fly = (workloads.FLY_N, workloads.FLY_N, workloads.FLY_NNZ, 16)
    est = {n: i.estimate(*fly) / GB for n, i in implementations.IMPLS.items()}
    assert est["dense_masked"] > 500 and est["torch_coo"] > 77
    assert est["ours"] < 2
    assert gpu_fly.estimate_bytes("dense_masked", *fly) / GB > 80
    assert gpu_fly.estimate_bytes("ours", *fly) / GB < 2


def _settings(tmp_path, **kw):
    base = {"python": sys.executable, "cache_dir": str(tmp_path / "cache"),
            "pattern_dir": str(tmp_path / "patterns"), "mem_limit_bytes": 8 * GB, "steps": 2,
            "min_steps": 1, "timeout_s": 240, "verbose": False}
    return runner.Settings(**{**base, **kw})


def test_measure_reports_does_not_fit_without_running(tmp_path):
    w = workloads.Workload("big", 100_000, 100_000, 1000, 4)
    rec = runner.measure("dense_masked", w, "/nonexistent.npz", _settings(tmp_path))
    assert rec["status"] == "does not fit"
    assert rec["note"].startswith("does not fit (needs ~")
    assert not os.path.exists(tmp_path / "cache")


def test_measure_reports_missing_and_broken_peers(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "PEERS_DIR", str(tmp_path))
    w = workloads.Workload("t", 30, 20, 100, 2)
    rec = runner.measure("kpnn2", w, "/nonexistent.npz", _settings(tmp_path))
    assert rec["status"] == "not installed"
    assert "setup_peers.sh kpnn2" in rec["note"]
    (tmp_path / "sparseprop.error").write_text("pip install sparseprop==0.1.14 failed: boom\n")
    rec = runner.measure("sparseprop", w, "/nonexistent.npz", _settings(tmp_path))
    assert rec["status"] == "not installable"
    assert rec["note"] == "not installable: pip install sparseprop==0.1.14 failed: boom"


def test_measure_runs_caches_and_agrees(tmp_path):
    w = workloads.Workload("t", 40, 30, 300, 4)
    path = workloads.pattern_file(w, str(tmp_path / "patterns"))
    s = _settings(tmp_path)
    recs = {impl: runner.measure(impl, w, path, s) for impl in ("ours", "dense_masked")}
    for r in recs.values():
        assert r["status"] == "ok", r.get("note")
        assert r["median_s"] > 0 and len(r["times_s"]) >= 1 and "step_peak_mb" in r
    assert report.check_against(recs["dense_masked"], recs["ours"]) == "yes"
    again = runner.measure("ours", w, path, s)
    assert again.get("cached") and again["median_s"] == recs["ours"]["median_s"]
    with open(os.path.join(s.cache_dir, f"{w.key()}__ours.json")) as f:
        assert json.load(f)["fingerprint"] == again["fingerprint"]
    table = report.workload_table("t", recs)
    assert "| sparselinear (ours) |" in table and "1.00×" in table
    # the optimizer the worker built: torch's fused Adam by default, the for-loop one on request
    # (another measurement, not the cached one)
    assert s.adam == "fused" and all(r["adam"] == "fused" for r in recs.values())
    for_loop = runner.measure("ours", w, path, dataclasses.replace(s, adam="for-loop"))
    assert not for_loop.get("cached") and for_loop["adam"] == "for-loop"
    assert for_loop["fingerprint"] != again["fingerprint"]


def test_rounds_run_in_new_processes_and_pool_their_steps(tmp_path):
    w = workloads.Workload("t", 40, 30, 300, 4)
    path = workloads.pattern_file(w, str(tmp_path / "patterns"))
    s = _settings(tmp_path)
    rounds = [runner.measure("ours", w, path, s, round_index=r) for r in range(2)]
    assert all(r["status"] == "ok" for r in rounds)
    assert rounds[0]["pid"] != rounds[1]["pid"]
    assert os.path.exists(os.path.join(s.cache_dir, f"{w.key()}__ours__r1.json"))
    pooled = runner.pool_rounds(rounds)
    steps = rounds[0]["times_s"] + rounds[1]["times_s"]
    assert pooled["times_s"] == steps and pooled["rounds"] == 2
    assert pooled["median_s"] == statistics.median(steps) and pooled["min_s"] == min(steps)
    assert pooled["step_peak_mb"] == max(r["step_peak_mb"] for r in rounds)
    assert pooled["round_medians_s"] == [r["median_s"] for r in rounds]
    assert "Median of each round: sparselinear (ours)" in report.workload_table(
        "t", {"ours": pooled})
    failed = {"status": "failed", "note": "boom"}
    partial = runner.pool_rounds([rounds[0], failed])
    assert partial["times_s"] == rounds[0]["times_s"]
    assert partial["note"] == "1 of 2 rounds did not complete (boom); 1 pooled"
    assert "1 of 2 rounds did not complete (boom)" in report.workload_table("t", {"ours": partial})
    assert runner.pool_rounds([failed]) is failed


def test_measure_reports_a_crash(tmp_path):
    w = workloads.Workload("t", 40, 30, 300, 4)
    rec = runner.measure("ours", w, str(tmp_path / "missing.npz"), _settings(tmp_path))
    assert rec["status"] == "failed"
    assert "FileNotFoundError" in rec["note"]


def _rec(t, peak=100.0, y=1.0, gw=2.0):
    return {"status": "ok", "median_s": t, "forward_s": t / 3, "backward_s": t / 2,
            "optimizer_s": t / 6, "step_peak_mb": peak, "build_s": 0.1,
            "spec": {"n_out": 10, "n_in": 10, "nnz": 20, "batch": 2, "threads": 2},
            "check": {"y": y, "y_scale": 10.0, "gw": gw, "gw_scale": 10.0}}


def test_check_against_detects_a_different_result():
    ours = _rec(1.0)
    assert report.check_against(_rec(2.0, y=1.0 + 1e-6), ours) == "yes"
    assert report.check_against(_rec(2.0, gw=2.5), ours).startswith("NO: gw off by")
    assert report.check_against({"status": "failed"}, ours) == "–"


def test_targets_and_slopes():
    assert report.loglog_slope([1, 10, 100], [2, 20, 200]) == pytest.approx(1.0)
    assert report.loglog_slope([1, 4], [3, 6]) == pytest.approx(0.5)
    assert report.loglog_slope([1], [1]) is None
    main = {"fly": {"ours": _rec(1.0, 400), "sparseprop": _rec(4.0, 500),
                    "torch_sparse": _rec(10.0, 900)},
            "mid": {"ours": _rec(1.0), "kpnn2": _rec(1.5), "dense_masked": _rec(20.0)},
            "tri": {"ours": _rec(0.7), "dense_masked": _rec(1.0)}}
    rows = {r["target"].split(" (")[0]: r for r in report.targets(
        main, {"nnz_slope": 1.02, "thread_speedup": 1.3})}
    assert rows["fly: ours ÷ fastest peer"]["met"] and rows["fly: ours ÷ torch-sparse"]["met"]
    assert rows["fly: ours peak above input"]["met"]
    assert not rows["mid: ours ÷ fastest peer"]["met"]  # 1/1.5 > 1/2
    assert rows["mid: ours ÷ dense masked"]["met"]
    assert rows["tri: ours ÷ dense masked"]["note"] == "stretch met"
    assert not rows["fly: 2 threads ÷ 1 thread speed-up"]["met"]
    assert "**no**" in report.targets_table(list(rows.values()))


def test_floor_model():
    meas = {"threads": 2, "copy_gbs": {"2": 10.0}, "matmul_gflops": {"2": 100.0},
            "gather": {"w": {"table_gbs": 50.0}}}
    f = floor_model(meas, {"name": "w", "n_out": 1000, "n_in": 1000, "nnz": 10**6,
                           "batch": 16})
    streamed = 48e6 + 8 * 4 * 16 * 2000  # 48 B per edge
    assert f["streamed_gb"] == pytest.approx(streamed / 1e9)
    assert f["stream_floor_s"] == pytest.approx(streamed / 10e9)
    assert f["gathered_gb"] == pytest.approx(3e6 * 64 / 1e9)
    assert f["gather_floor_s"] == pytest.approx(streamed / 10e9 + 3e6 * 64 / 50e9)
    assert f["flop_floor_s"] == pytest.approx(6 * 16 * 1e6 / 100e9)


def test_gpu_script_pattern_matches_its_spec():
    import torch

    crow, col, rows, values = gpu_fly.make_pattern(torch, 50, 40, 700, "random", "cpu")
    assert crow[-1] == 700 and col.numel() == 700 and values.numel() == 700
    keys = rows * 40 + col
    assert bool((keys[1:] > keys[:-1]).all())
    crow, col, rows, _ = gpu_fly.make_pattern(torch, 8, 8, 36, "tril", "cpu")
    assert bool((col <= rows).all()) and crow[-1] == 36


def test_tables_benchmark_paths_agree_at_small_size(tmp_path):
    pytest.importorskip("pyarrow")
    pytest.importorskip("pandas")
    import tables

    files = tables.generate(tmp_path, rows=3000, neurons=200)
    assert all(p.exists() for p in files.values())
    results = [tables.measure(m, files) for m in ("hand_csv", "ours_csv", "preset_parquet")]
    assert len({r["digest"] for r in results}) == 1 and results[0]["nnz"] > 0
