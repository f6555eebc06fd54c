"""Benchmark workloads and their sparsity patterns (numpy only, no torch).

A workload is a layer shape, a pattern and a batch size. Every implementation of one workload
reads the same pattern from one ``.npz`` file: CSR ``crow`` (int64) and ``col`` (int32) in
canonical order (rows sorted, columns sorted inside each row), ``values`` (float32, one initial
weight per edge in that order) and ``shape`` ``(out, in)``. Rows are outputs, columns inputs.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field

import numpy as np

#: FlyWire v783 connectome shape (DESIGN.md).
FLY_N = 138_639
FLY_NNZ = 15_091_983
#: Mean fan-in of the fly workload; the nnz sweep keeps it while the layer grows.
FLY_DEGREE = FLY_NNZ / FLY_N


@dataclass(frozen=True)
class Workload:
    """One benchmark case: ``kind`` is ``"random"`` (uniform edges) or ``"tril"`` (lower
    triangle, diagonal included)."""

    name: str
    n_out: int
    n_in: int
    nnz: int
    batch: int
    kind: str = "random"
    seed: int = 0
    threads: int = 2
    tags: tuple[str, ...] = field(default_factory=tuple)

    @property
    def density(self) -> float:
        return self.nnz / (self.n_out * self.n_in)

    def pattern_key(self) -> str:
        """Identifies the pattern (not the batch or threads): equal keys share one file."""
        text = f"{self.kind}:{self.n_out}x{self.n_in}:{self.nnz}:{self.seed}"
        return hashlib.sha1(text.encode()).hexdigest()[:12]

    def key(self) -> str:
        """Identifies the whole measurement setting."""
        return f"{self.name}-{self.pattern_key()}-b{self.batch}-t{self.threads}"

    def to_json(self) -> dict:
        d = asdict(self)
        d["tags"] = list(self.tags)
        return d


def main_workloads(threads: int = 2) -> list[Workload]:
    """fly / mid / tri of DESIGN.md."""
    tri_n = 2048
    return [
        Workload("fly", FLY_N, FLY_N, FLY_NNZ, 16, threads=threads),
        Workload("mid", 8192, 8192, 671_089, 256, threads=threads),
        Workload("tri", tri_n, tri_n, tri_n * (tri_n + 1) // 2, 256, kind="tril", threads=threads),
    ]


def nnz_sweep(points=(1e5, 3e5, 1e6, 3e6, 1e7, 3e7, 1e8), batch: int = 16) -> list[Workload]:
    """Square layers whose size grows with nnz at the fly workload's mean fan-in (~109), so that
    every part of the step (edges and activations) grows in proportion."""
    out = []
    for p in points:
        nnz = int(p)
        # at least density 1/2, for the smallest points
        n = max(round(nnz / FLY_DEGREE), int(np.ceil(np.sqrt(2 * nnz))))
        out.append(Workload(f"nnz={nnz:.0e}", n, n, nnz, batch, tags=("sweep-nnz",)))
    return out


def batch_sweep(batches=(1, 2, 4, 8, 16, 32, 64, 128)) -> list[Workload]:
    """The fly layer at several batch sizes."""
    return [
        Workload("fly" if b == 16 else f"fly-b{b}", FLY_N, FLY_N, FLY_NNZ, b,
                 tags=("sweep-batch",))
        for b in batches
    ]


def thread_sweep(threads=(1, 2)) -> list[Workload]:
    """The fly layer with 1 and 2 threads."""
    return [
        Workload("fly" if t == 2 else f"fly-t{t}", FLY_N, FLY_N, FLY_NNZ, 16, threads=t,
                 tags=("sweep-threads",))
        for t in threads
    ]


def tiny_workloads(threads: int = 2) -> list[Workload]:
    """Small stand-ins for fly / mid / tri, for checking the harness in seconds."""
    return [
        Workload("fly-tiny", 3000, 3000, 3000 * 109, 16, threads=threads),
        Workload("mid-tiny", 1024, 1024, 10_486, 64, threads=threads),
        Workload("tri-tiny", 256, 256, 256 * 257 // 2, 64, kind="tril", threads=threads),
    ]


# ---------------------------------------------------------------------------- patterns
def _sorted_unique(a: np.ndarray) -> np.ndarray:
    # np.sort + a mask: much faster than np.unique on large int64 arrays in numpy 2.x.
    a = np.sort(a)
    if a.size < 2:
        return a
    keep = np.empty(a.size, dtype=bool)
    keep[0] = True
    np.not_equal(a[1:], a[:-1], out=keep[1:])
    return a[keep]


def _random_keys(total: int, nnz: int, rng: np.random.Generator) -> np.ndarray:
    """``nnz`` distinct sorted integers in ``[0, total)``, in memory and time ~ nnz."""
    if nnz == 0:
        return np.zeros(0, dtype=np.int64)
    if nnz > total // 4:
        return np.sort(rng.permutation(total)[:nnz]).astype(np.int64)
    keys = _sorted_unique(rng.integers(0, total, size=int(nnz * 1.01) + 64, dtype=np.int64))
    while keys.size < nnz:
        more = rng.integers(0, total, size=2 * (nnz - keys.size) + 64, dtype=np.int64)
        keys = _sorted_unique(np.concatenate([keys, more]))
    if keys.size > nnz:
        keep = np.ones(keys.size, dtype=bool)
        keep[rng.choice(keys.size, keys.size - nnz, replace=False)] = False
        keys = keys[keep]
    return keys


def build_pattern(w: Workload) -> dict[str, np.ndarray]:
    """CSR arrays and initial values of ``w``'s pattern (deterministic in ``w.seed``)."""
    rng = np.random.default_rng(w.seed)
    if not 0 <= w.nnz <= w.n_out * w.n_in:
        raise ValueError(f"nnz must lie in [0, out * in]; got {w}")
    if w.kind == "tril":
        if w.n_out != w.n_in or w.nnz != w.n_out * (w.n_out + 1) // 2:
            raise ValueError(f"a 'tril' workload must be square with n(n+1)/2 edges; got {w}")
        rows, cols = np.tril_indices(w.n_out)
        rows = rows.astype(np.int64)
        cols = cols.astype(np.int32)
    elif w.kind == "random":
        keys = _random_keys(w.n_out * w.n_in, w.nnz, rng)
        rows = keys // w.n_in
        cols = (keys % w.n_in).astype(np.int32)
        del keys
    else:
        raise ValueError(f"unknown workload kind {w.kind!r}")
    counts = np.bincount(rows, minlength=w.n_out)
    crow = np.zeros(w.n_out + 1, dtype=np.int64)
    np.cumsum(counts, out=crow[1:])
    # U(-1/sqrt(fan_in), 1/sqrt(fan_in)) per edge, as every layer would initialise it.
    bound = 1.0 / np.sqrt(np.maximum(counts, 1)).astype(np.float32)
    values = rng.uniform(-1.0, 1.0, size=rows.size).astype(np.float32)
    values *= np.repeat(bound, counts)
    return {"crow": crow, "col": cols, "values": values,
            "shape": np.array([w.n_out, w.n_in], dtype=np.int64)}


def pattern_file(w: Workload, directory: str) -> str:
    """Path of ``w``'s pattern under ``directory``, written once (atomically) and reused."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"pattern-{w.pattern_key()}.npz")
    if not os.path.exists(path):
        arrays = build_pattern(w)
        tmp = path + ".partial.npz"
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
        with open(path + ".json", "w") as f:
            json.dump({"kind": w.kind, "shape": [w.n_out, w.n_in], "nnz": w.nnz,
                       "seed": w.seed}, f)
    return path
