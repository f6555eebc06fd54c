"""Run one (implementation, workload) measurement in its own process, with a cache.

Each measurement runs ``worker.py`` under the implementation's Python: the repository's for ours
and the plain-PyTorch baselines (with the repository on ``PYTHONPATH`` for ours only), the peer's
virtualenv under ``benchmarks/.venv-peers/`` otherwise. Before starting it the runner compares the
implementation's memory estimate with the memory limit and reports "does not fit (needs ~X GB)"
instead of running what cannot fit. While it runs, the child is killed past its time limit or
when its resident memory passes the limit. Results are cached as JSON per measurement, keyed by
everything that could change them (code, pattern, batch, threads, peer versions), so an
interrupted run resumes where it stopped.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import implementations as impls_mod
from workloads import Workload

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
PEERS_DIR = os.path.join(HERE, ".venv-peers")
GB = 1 << 30


@dataclass
class Settings:
    python: str
    cache_dir: str
    pattern_dir: str
    mem_limit_bytes: float
    warmup: int = 1
    steps: int = 5
    min_steps: int = 3
    max_seconds: float = 30.0
    timeout_s: float = 420.0
    input_grad: bool = True
    ours_mode: str | None = None
    adam: str = "fused"  # or "for-loop"
    retry_failed: bool = False
    verbose: bool = True


def mem_available_bytes() -> float:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024.0
    return 8.0 * GB


def _digest_files(paths: list[str]) -> str:
    h = hashlib.sha1()
    for p in sorted(paths):
        h.update(p.encode())
        with open(p, "rb") as f:
            h.update(f.read())
    return h.hexdigest()[:16]


def code_digest(impl: str) -> str:
    """What the result of ``impl`` depends on besides the workload."""
    mine = [os.path.join(HERE, n) for n in ("worker.py", "implementations.py")]
    if impl == "ours":
        pkg = os.path.join(REPO, "sparselinear")
        mine += [p for ext in ("py", "cpp", "c", "h", "cu")
                 for p in glob.glob(os.path.join(pkg, "**", f"*.{ext}"), recursive=True)]
    info = impls_mod.IMPLS[impl]
    if info.venv:
        ok = os.path.join(PEERS_DIR, info.venv, ".ok")
        if os.path.exists(ok):
            mine.append(ok)
    return _digest_files(mine)


def peer_python(impl: str, default: str) -> tuple[str | None, str | None]:
    """``(python, None)`` if the implementation can run, else ``(None, reason)``."""
    info = impls_mod.IMPLS[impl]
    if info.venv is None:
        return default, None
    venv = os.path.join(PEERS_DIR, info.venv)
    if os.path.exists(os.path.join(venv, ".ok")):
        return os.path.join(venv, "bin", "python"), None
    err = os.path.join(PEERS_DIR, info.venv + ".error")
    if os.path.exists(err):
        with open(err) as f:
            first = f.readline().strip()
        return None, f"not installable: {first}"
    return None, f"not installed (run benchmarks/setup_peers.sh {info.venv})"


def _child_rss_bytes(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024.0
    except OSError:
        pass
    return 0.0


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
    proc.wait()


def pool_rounds(records: list[dict]) -> dict:
    """One record from the rounds of one measurement: the steps of every successful round
    pooled (median and best over all of them), the phase times their rounds' median, the peak
    the highest; the first record as is when no round succeeded. Rounds that did not complete
    (failed, timed out, skipped) are counted in the pooled record's ``note``."""
    ok = [r for r in records if r.get("status") == "ok"]
    if not ok:
        return records[0]
    failed = [r for r in records if r.get("status") != "ok"]
    pooled = dict(ok[0])
    if failed:
        why = failed[0].get("note") or failed[0].get("status")
        missing = f"{len(failed)} of {len(records)} rounds did not complete ({why}); " \
            f"{len(ok)} pooled"
        pooled["note"] = "; ".join(n for n in (pooled.get("note"), missing) if n)
    if len(ok) < 2:
        return pooled
    pooled["times_s"] = [t for r in ok for t in r["times_s"]]
    pooled["median_s"] = statistics.median(pooled["times_s"])
    pooled["min_s"] = min(pooled["times_s"])
    for part in ("forward_s", "backward_s", "optimizer_s"):
        pooled[part] = statistics.median(r[part] for r in ok)
    pooled["step_peak_mb"] = max(r["step_peak_mb"] for r in ok)
    pooled["rounds"] = len(ok)
    pooled["round_medians_s"] = [r["median_s"] for r in ok]
    return pooled


def measure(impl: str, w: Workload, pattern_path: str, s: Settings,
            deadline: float | None = None, round_index: int = 0) -> dict:
    """The cached or fresh result of ``impl`` on ``w`` (a dict with at least ``status``);
    ``round_index`` > 0 is a repeat in a new process, cached on its own."""
    base = {"impl": impl, "workload": w.name, "key": w.key(), "spec": w.to_json()}
    python, reason = peer_python(impl, s.python)
    if python is None:
        return {**base, "status": "not installable" if "installable" in reason
                else "not installed", "note": reason}
    need = impls_mod.IMPLS[impl].estimate(w.n_out, w.n_in, w.nnz, w.batch)
    if need > s.mem_limit_bytes:
        return {**base, "status": "does not fit", "need_gb": need / GB,
                "note": f"does not fit (needs ~{need / GB:,.0f} GB; limit "
                        f"{s.mem_limit_bytes / GB:.0f} GB)"}
    options = {"mode": s.ours_mode} if impl == "ours" and s.ours_mode else None
    spec = {"impl": impl, "pattern": pattern_path, "batch": w.batch, "threads": w.threads,
            "warmup": s.warmup, "steps": s.steps, "min_steps": s.min_steps,
            "max_seconds": s.max_seconds, "input_grad": s.input_grad, "seed": w.seed,
            "options": options, "adam": s.adam}
    if round_index:
        spec["round"] = round_index
    fingerprint = hashlib.sha1(json.dumps(
        [base["key"], {k: v for k, v in spec.items() if k != "pattern"}, code_digest(impl),
         python], sort_keys=True).encode()).hexdigest()[:16]
    os.makedirs(s.cache_dir, exist_ok=True)
    stem = os.path.join(s.cache_dir, f"{w.key()}__{impl}"
                        + (f"__r{round_index}" if round_index else ""))
    if os.path.exists(stem + ".json"):
        with open(stem + ".json") as f:
            cached = json.load(f)
        if cached.get("fingerprint") == fingerprint and (
            cached.get("status") == "ok" or not s.retry_failed
        ):
            cached["cached"] = True
            return cached
    timeout = s.timeout_s
    if deadline is not None:
        timeout = min(timeout, deadline - time.time())
        if timeout < 20:
            return {**base, "status": "skipped", "note": "skipped: the time budget ran out"}
    result = _run_child(python, impl, spec, stem + ".log", timeout, s)
    result.update(base)
    result["fingerprint"] = fingerprint
    result["estimate_gb"] = need / GB
    result["load_before"] = os.getloadavg()
    with open(stem + ".json.tmp", "w") as f:
        json.dump(result, f, indent=1)
    os.replace(stem + ".json.tmp", stem + ".json")
    return result


def _run_child(python: str, impl: str, spec: dict, log_path: str, timeout: float,
               s: Settings, repo: str = REPO) -> dict:
    """Run one measurement in a new process; ours is imported from ``repo``."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if impl == "ours":
        env["PYTHONPATH"] = repo
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(spec["threads"])
    cmd = [python, os.path.join(HERE, "worker.py"), json.dumps(spec)]
    t0 = time.time()
    peak_rss = 0.0
    status, note = None, None
    with open(log_path, "w") as log, tempfile.TemporaryDirectory() as cwd, \
            tempfile.TemporaryFile("w+") as stdout:
        proc = subprocess.Popen(cmd, stdout=stdout, stderr=log, env=env, cwd=cwd, text=True,
                                start_new_session=True)
        while proc.poll() is None:
            rss = _child_rss_bytes(proc.pid)
            peak_rss = max(peak_rss, rss)
            if rss > s.mem_limit_bytes:
                _kill(proc)
                status = "killed"
                note = (f"killed: resident memory passed the limit "
                        f"({rss / GB:.1f} GB > {s.mem_limit_bytes / GB:.1f} GB)")
                break
            if time.time() - t0 > timeout:
                _kill(proc)
                status, note = "timeout", f"timeout after {timeout:.0f} s"
                break
            time.sleep(0.2)
        stdout.seek(0)
        text = stdout.read()
        log.write("\n--- stdout ---\n" + text)
    wall = time.time() - t0
    result = None
    for line in text.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT "):])
    if status is not None:
        result = {"status": status, "note": note}
    elif result is None:
        tail = ""
        try:
            with open(log_path) as f:
                tail = f.read()[-400:].strip().replace("\n", " | ")
        except OSError:
            pass
        result = {"status": "failed",
                  "note": f"crashed (exit code {proc.returncode}): {tail}"[:600]}
    result["wall_s"] = wall
    result["watched_peak_rss_gb"] = peak_rss / GB
    if s.verbose:
        shown = (f"{result['median_s']:.3f} s/step, peak +{result['step_peak_mb']:.0f} MB"
                 if result.get("status") == "ok" else result.get("note", result["status"]))
        print(f"    {impl:<18} {shown}  [{wall:.0f} s]", file=sys.stderr, flush=True)
    return result
