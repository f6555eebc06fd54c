"""Process-memory helpers shared by the benchmark scripts (Linux /proc; CPU only), and the
launch of one measurement in a process of its own, so that peaks do not mix."""

from __future__ import annotations

import json
import resource
import subprocess
from pathlib import Path

_STATUS = Path("/proc/self/status")


def _status_kib(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak() -> bool:
    """Reset the process high-water mark (VmHWM) to the current RSS; False where unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_bytes() -> int:
    """Peak resident memory since the last ``reset_peak`` (or process start)."""
    kib = _status_kib("VmHWM")
    if kib is None:
        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib * 1024


def worker_result(cmd: list[str], impl: str, cwd: Path, error_lines: int = 3) -> dict:
    """Run one measurement's process ``cmd``: the JSON object its last output line prints, or
    ``{"impl": impl, "error": [the last error_lines lines of its stderr]}`` if it failed."""
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
    if out.returncode != 0:
        return {"impl": impl, "error": out.stderr.strip().splitlines()[-error_lines:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def file_bytes() -> int:
    """Resident pages backed by files (the code of the libraries loaded: torch, MKL, the
    kernels), which processes running the same libraries on one machine share."""
    return (_status_kib("RssFile") or 0) * 1024


def current_bytes() -> int:
    kib = _status_kib("VmRSS")
    return (kib or 0) * 1024


def timed_steps(step, repeats: int, tracker, base: int) -> tuple[list[float], int]:
    """Run ``step`` ``repeats + 1`` times (the first a warm-up) under ``tracker`` (a started-here
    ``sparselinear.memory.peak.PeakTracker``): the seconds of every run, and the peak above
    ``base``."""
    import time

    tracker.start(trim=True)
    times = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    peak = tracker.peak() - base
    tracker.stop()
    return times, peak
