"""Run named scenarios on W local gloo processes and collect what each rank returned or raised.

Every process group has a timeout, and the parent kills the ranks after a deadline, so a test
can fail but never hang.
"""

from __future__ import annotations

import datetime
import importlib
import os
import socket
import time
import traceback
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

GROUP_TIMEOUT_S = 30


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(scenarios, names, rank, world, shared, group) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name in names:
        start = time.perf_counter()
        try:
            value = getattr(scenarios, name)(rank, world, Path(shared), group)
            results[name] = ("ok", value)
        except Exception as exc:
            results[name] = ("error", type(exc).__name__, str(exc), traceback.format_exc())
        results[name] += (time.perf_counter() - start,)
    return results


def _worker(rank: int, world: int, port: int, module: str, plan: list[tuple[int, list[str]]],
            out: str, shared: str, backend: str) -> None:
    torch.set_num_threads(1)
    # torch's kernels: loading the compiled ones costs seconds per process, and they are
    # tested on their own; these tests check the collectives around the local product
    os.environ.setdefault("SPARSELINEAR_KERNELS", "torch")
    if backend == "nccl":
        torch.cuda.set_device(rank)
    dist.init_process_group(
        backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
        timeout=datetime.timedelta(seconds=GROUP_TIMEOUT_S),
    )
    scenarios = importlib.import_module(module)
    results: dict[int, dict[str, Any]] = {}
    for size, names in plan:
        # every rank creates every subgroup, members or not (torch's rule)
        group = None if size == world else dist.new_group(list(range(size)))
        if rank < size:
            results[size] = _run(scenarios, names, rank, size, shared, group)
        dist.barrier()
        torch.save(results, os.path.join(out, f"rank{rank}.pt"))
    dist.destroy_process_group()


def run_ranks(world: int, module: str, plan: list[tuple[int, list[str]]], out: Path,
              shared: Path, deadline_s: float = 150,
              backend: str = "gloo") -> dict[int, list[dict[str, Any]]]:
    """``world`` processes run, for each ``(size, names)`` of ``plan`` in turn, every
    ``module.<name>(rank, size, shared, group)`` on the first ``size`` ranks (a subgroup when
    ``size < world``). Returns ``{size: [per rank: {name: ("ok", value, seconds) or ("error",
    type, message, traceback, seconds)}]}``."""
    out.mkdir(parents=True, exist_ok=True)
    context = mp.start_processes(
        _worker, args=(world, free_port(), module, plan, str(out), str(shared), backend),
        nprocs=world, join=False, start_method="spawn",
    )
    waited = 0.0
    try:
        while not context.join(timeout=1):
            waited += 1
            if waited > deadline_s:
                raise TimeoutError(f"{world} ranks did not finish in {deadline_s} s")
    finally:
        for p in context.processes:
            if p.is_alive():
                p.kill()
    found: dict[int, list[dict[str, Any]]] = {size: [] for size, _ in plan}
    for r in range(world):
        path = out / f"rank{r}.pt"
        saved = torch.load(path, weights_only=False) if path.exists() else {}
        for size, _ in plan:
            if r < size:
                found[size].append(saved.get(size, {}))
    return found
