"""FlyWire-format connectome tables into a pattern: the path users write by hand (pandas ->
groupby -> factorize -> scipy) against ``Connectivity.from_edgelist`` and the FlyWire preset,
from ``.csv.gz`` and Parquet, each in its own process with its peak memory.

    python benchmarks/tables.py --rows 16800000 --dir /tmp          # full scale (FlyWire v783)
    python benchmarks/tables.py --rows 200000 --neurons 5000 --dir /tmp/small   # a quick check
    python benchmarks/tables.py --rows 16800000 --dir /tmp --out benchmarks/results/tables.json

The generator writes, seeded, ``flywire_<rows>.csv.gz``, ``flywire_<rows>.parquet`` and
``flywire_<rows>_neurons.csv.gz`` under ``--dir`` once (reused after): int64 root ids in the
FlyWire range, ten neuropils so pairs repeat, ``syn_count`` 1-300 (most small), ``nt_type``
strings. Every method must give the identical pattern and weights (checked by digest).
Each method reports its wall seconds, its CPU seconds (all threads; steadier than the wall
time on a shared machine) and its peak resident memory; ``--out`` saves them as JSON with the
time (UTC) and the load average of the machine before and after the run.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

NEUROPILS = ["AL_L", "AL_R", "MB_CA_L", "MB_CA_R", "LO_L", "LO_R", "ME_L", "ME_R", "FB", "EB"]
NT = ["ACH", "GABA", "GLUT", "DA", "SER", "OCT"]
THRESHOLD = 5
METHODS = ("hand_csv", "hand_parquet", "ours_csv", "ours_parquet", "preset_csv",
           "preset_parquet")


def paths(directory: Path, rows: int) -> dict[str, Path]:
    return {"csv": directory / f"flywire_{rows}.csv.gz",
            "parquet": directory / f"flywire_{rows}.parquet",
            "neurons": directory / f"flywire_{rows}_neurons.csv.gz"}


def generate(directory: Path, rows: int, neurons: int, seed: int = 0, chunk: int = 1 << 21):
    """Write the three files (skipped where they exist)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    files = paths(directory, rows)
    if all(p.exists() for p in files.values()):
        return files
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ids = 720575940_000000000 + rng.choice(10**9, size=neurons, replace=False).astype(np.int64)
    n_pairs = max(1, int(rows / 1.6))
    pair_pre = rng.integers(0, neurons, n_pairs)
    pair_post = rng.integers(0, neurons, n_pairs)
    schema = pa.schema([("pre_root_id", pa.int64()), ("post_root_id", pa.int64()),
                        ("neuropil", pa.string()), ("syn_count", pa.int64()),
                        ("nt_type", pa.string())])
    parquet = pq.ParquetWriter(str(files["parquet"]), schema)
    with pa.CompressedOutputStream(str(files["csv"]), "gzip") as out:
        csv = pacsv.CSVWriter(out, schema)
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            pair = rng.integers(0, n_pairs, n)
            syn = np.minimum(1 + rng.geometric(0.15, n), 300)
            table = pa.table({
                "pre_root_id": ids[pair_pre[pair]], "post_root_id": ids[pair_post[pair]],
                "neuropil": np.asarray(NEUROPILS, dtype=object)[rng.integers(0, 10, n)],
                "syn_count": syn.astype(np.int64),
                "nt_type": np.asarray(NT, dtype=object)[pair_pre[pair] % len(NT)],
            }, schema=schema)
            csv.write_table(table)
            parquet.write_table(table)
        csv.close()
    parquet.close()
    neuron_table = pa.table({"root_id": ids, "cell_type": [f"t{i % 500}" for i in range(neurons)],
                             "side": np.asarray(["left", "right"], dtype=object)[ids % 2],
                             "nt_type": np.asarray(NT, dtype=object)[np.arange(neurons) % 6]})
    with pa.CompressedOutputStream(str(files["neurons"]), "gzip") as out:
        pacsv.write_csv(neuron_table, out)
    return files


def _digest(crow, col, weights, names) -> str:
    h = hashlib.sha256()
    for a in (np.asarray(crow, np.int64), np.asarray(col, np.int64),
              np.asarray(weights, np.float32), np.asarray(names, np.int64)):
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def _hand(path: Path, parquet: bool):
    import pandas as pd
    import scipy.sparse

    cols = ["pre_root_id", "post_root_id", "syn_count"]
    df = pd.read_parquet(path, columns=cols) if parquet else pd.read_csv(path, usecols=cols)
    df = df[df.syn_count >= THRESHOLD]
    summed = df.groupby(["pre_root_id", "post_root_id"]).syn_count.sum().reset_index()
    del df
    pre, post = summed.pre_root_id.to_numpy(), summed.post_root_id.to_numpy()
    codes, names = pd.factorize(np.concatenate([pre, post]), sort=True)
    n = len(names)
    m = scipy.sparse.coo_matrix((summed.syn_count.to_numpy(), (codes[pre.size:],
                                codes[:pre.size])), shape=(n, n)).tocsr()
    m.sort_indices()
    return m.indptr, m.indices, m.data, names


def _ours(path: Path, preset: bool):
    from sparselinear import Connectivity
    from sparselinear.datasets import load_flywire

    if preset:
        conn, w = load_flywire(path, threshold=THRESHOLD, progress=False)
    else:
        conn, w = Connectivity.from_edgelist(
            path, source="pre_root_id", target="post_root_id", weight="syn_count",
            where=[("syn_count", ">=", THRESHOLD)], duplicates="sum", progress=False)
    return conn.crow_indices(), conn.col_indices(), w.numpy(), conn.in_names


def measure(method: str, files: dict[str, Path]) -> dict:
    """Run one method in this process: seconds, peak RSS, nnz and the result's digest."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _memory import peak_bytes

    parquet = method.endswith("parquet")
    path = files["parquet" if parquet else "csv"]
    if method.startswith("hand"):  # each side's library imported before the clock starts
        import pandas  # noqa: F401
        import scipy.sparse  # noqa: F401
    else:
        import sparselinear  # noqa: F401
    start, cpu = time.perf_counter(), time.process_time()
    if method.startswith("hand"):
        crow, col, w, names = _hand(path, parquet)
    else:
        crow, col, w, names = _ours(path, method.startswith("preset"))
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"method": method, "seconds": round(seconds, 3), "cpu_seconds": round(cpu, 3),
            "peak_gb": round(peak_bytes() / 1e9, 3), "nnz": int(len(col)),
            "digest": _digest(crow, col, w, names)}


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=16_800_000)
    parser.add_argument("--neurons", type=int, default=138_639)
    parser.add_argument("--dir", type=Path, default=Path("/tmp"))
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--measure", choices=METHODS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    files = paths(args.dir, args.rows)
    if args.measure:
        print(json.dumps(measure(args.measure, files)))
        return []
    generate(args.dir, args.rows, args.neurons)
    started, load_before = _now(), _load()
    results = []
    for method in args.methods:  # each in a fresh process: its own peak memory
        out = subprocess.run([sys.executable, __file__, "--rows", str(args.rows), "--dir",
                              str(args.dir), "--measure", method], capture_output=True,
                             text=True, check=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), flush=True)
    digests = {r["digest"] for r in results}
    print("identical pattern and weights:" if len(digests) == 1 else "RESULTS DIFFER:", digests)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({
            "rows": args.rows, "neurons": args.neurons,
            "bytes": {k: p.stat().st_size for k, p in files.items()},
            "started": started, "finished": _now(), "cpu_count": os.cpu_count(),
            "load_average_before": load_before, "load_average_after": _load(),
            "identical": len(digests) == 1, "results": results}, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
