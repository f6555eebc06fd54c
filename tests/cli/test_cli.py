import json
import re
import sys
import types

import numpy as np
import pytest
import scipy.io
import scipy.sparse
import torch

from sparselinear import Connectivity
from sparselinear.cli import main

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def adjacency(tmp_path):
    """The same (4, 3) pattern as .npz, .mtx, .csv (with header) and .tsv (no header)."""
    rows, cols = np.array([0, 1, 3, 3, 2]), np.array([0, 2, 1, 2, 0])
    m = scipy.sparse.coo_array((np.ones(5), (rows, cols)), shape=(4, 3))
    paths = {
        "npz": tmp_path / "a.npz",
        "mtx": tmp_path / "a.mtx",
        "csv": tmp_path / "a.csv",
        "tsv": tmp_path / "a.tsv",
    }
    scipy.sparse.save_npz(paths["npz"], m.tocsr())
    scipy.io.mmwrite(paths["mtx"], m)
    pairs = list(zip(rows, cols, strict=True))
    paths["csv"].write_text("post,pre,count\n" + "".join(f"{r},{c},7\n" for r, c in pairs))
    paths["tsv"].write_text("".join(f"{r}\t{c}\n" for r, c in pairs))
    return paths


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_profile_shape_nnz(capsys):
    code, out, _ = run(capsys, "profile", "--shape", "138639", "138639", "--nnz", "15091983",
                       "--batch", "16")
    assert code == 0
    assert "pattern buffers" in out and "76.9 GB" in out and "dense equivalent" in out
    assert "the sparse layer fits, the dense one does not" in out


def test_profile_density_and_options(capsys):
    code, out, _ = run(capsys, "profile", "--shape", "300", "200", "--density", "0.05",
                       "--optimizer", "sgd", "--dtype", "float64", "--no-bias", "--json")
    assert code == 0
    d = json.loads(out[: out.rindex("}") + 1])
    assert d["layers"][0]["nnz"] == 3000 and d["optimizer"] == "SGD"
    assert d["layers"][0]["sparse"]["values"] == 8 * 3000  # float64, no bias
    assert d["layers"][0]["sparse"]["optimizer_state"] == 0


@pytest.mark.parametrize("name, slots", [("sgd", 0), ("momentum", 1), ("adam", 2), ("adamw", 2)])
def test_profile_optimizers(capsys, name, slots):
    code, out, _ = run(capsys, "profile", "--shape", "30", "20", "--nnz", "100", "--optimizer",
                       name, "--json")
    assert code == 0
    assert json.loads(out[: out.rindex("}") + 1])["optimizer_slots"] == slots


def test_profile_optimizer_slots(capsys):
    code, out, _ = run(capsys, "profile", "--shape", "30", "20", "--nnz", "100",
                       "--optimizer-slots", "5", "--json")
    d = json.loads(out[: out.rindex("}") + 1])
    assert code == 0 and d["optimizer_slots"] == 5
    assert d["sparse"]["optimizer_state"] == 5 * d["sparse"]["values"]


@pytest.mark.parametrize("kind", ["npz", "mtx", "csv", "tsv"])
def test_profile_adjacency_files(capsys, adjacency, kind):
    code, out, _ = run(capsys, "profile", "--adjacency", str(adjacency[kind]), "--json")
    assert code == 0
    d = json.loads(out[: out.rindex("}") + 1])
    assert d["layers"][0]["shape"] == [4, 3] and d["layers"][0]["nnz"] == 5


def test_profile_adjacency_transpose(capsys, adjacency):
    for kind in ("csv", "npz"):
        code, out, _ = run(capsys, "profile", "--adjacency", str(adjacency[kind]),
                           "--transpose", "--json")
        assert code == 0
        assert json.loads(out[: out.rindex("}") + 1])["layers"][0]["shape"] == [3, 4]


@pytest.mark.parametrize("kind", ["npz", "mtx", "csv", "tsv"])
def test_load_adjacency_edges_match(adjacency, kind):
    from sparselinear.io.adjacency import load_adjacency

    expected = Connectivity(torch.tensor([[0, 1, 3, 3, 2], [0, 2, 1, 2, 0]]), shape=(4, 3))
    assert Connectivity(load_adjacency(adjacency[kind])) == expected
    assert Connectivity(load_adjacency(adjacency[kind], transpose=True)) == expected.T
    assert Connectivity(load_adjacency(adjacency[kind], shape=(5, 3)), shape=(5, 3)).shape == (5, 3)


def test_profile_measure(capsys):
    code, out, _ = run(capsys, "profile", "--shape", "200", "300", "--nnz", "2000", "--batch",
                       "8", "--measure", "--steps", "2", "--no-progress", "--optimizer", "adamw")
    assert code == 0
    assert "measured peak:" in out and "measured/estimated" in out


def test_profile_measure_adjacency(capsys, adjacency):
    code, out, _ = run(capsys, "profile", "--adjacency", str(adjacency["mtx"]), "--measure",
                       "--steps", "1", "--no-progress")
    assert code == 0 and "measured peak:" in out


def test_profile_plot(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "m.png"
    code, out, _ = run(capsys, "profile", "--shape", "1000", "1000", "--density", "0.01",
                       "--plot", str(path))
    assert code == 0 and "plot written" in out
    assert path.read_bytes()[:8] == PNG


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--adjacency", "/no/such/file.csv"], "Cannot read '/no/such/file.csv': no such file"),
        (["--shape", "-3", "4", "--nnz", "1"], "must be two positive integers"),
        (["--shape", "3", "4", "--nnz", "13"], r"'nnz' must be an integer in \[0, 12\]"),
        (["--shape", "3", "4", "--density", "2"], r"'density' must lie in \[0, 1\]"),
        (["--shape", "3", "4"], "--shape needs --nnz N or --density D"),
        (["--shape", "3", "4", "--nnz", "2", "--batch", "0"], "'--batch' must be a positive"),
        (["--shape", "3", "4", "--nnz", "2", "--steps", "0"], "'--steps' must be a positive"),
        (["--shape", "3", "4", "--nnz", "2", "--optimizer-slots", "-1"], "must be >= 0"),
        (["--shape", "3", "4", "--nnz", "2", "--measure", "--optimizer-slots", "2"],
         "pass --optimizer instead"),
        (["--shape", "1000000", "1000000", "--density", "0.5", "--measure"],
         r"needs about .* TB but this machine has .* available"),
        (["--shape", "3", "4", "--nnz", "2", "--plot", "/no/such/dir/x.png"], "does not exist"),
        (["--shape", "3", "4", "--nnz", "2", "--plot", "x.jpg"], r"name it '\*.png'"),
    ],
)
def test_profile_errors(capsys, argv, match):
    if any(a.endswith((".png", ".jpg")) for a in argv):
        pytest.importorskip("matplotlib")
    code, _, err = run(capsys, "profile", *argv)
    assert code == 1
    assert err.startswith("sparselinear: error: ") and err.count("\n") == 1
    assert "Traceback" not in err
    assert re.search(match, err), err


def test_profile_file_errors(capsys, tmp_path, adjacency):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,x\n")
    unknown = tmp_path / "graph.xyz"
    unknown.write_text("1 2\n")
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not a zip")
    negative = tmp_path / "neg.csv"
    negative.write_text("0,1\n-1,2\n")
    for path, match in ((bad, "Cannot parse"), (unknown, "unknown file kind '.xyz'"),
                        (broken, "Cannot read"), (negative, "negative output index")):
        code, _, err = run(capsys, "profile", "--adjacency", str(path))
        assert code == 1 and match in err, err
    code, _, err = run(capsys, "profile", "--adjacency", str(adjacency["csv"]), "--nnz", "3")
    assert code == 1 and "a file already has its edges" in err


def test_missing_matplotlib(capsys, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code, _, err = run(capsys, "profile", "--shape", "3", "4", "--nnz", "2", "--plot",
                       str(tmp_path / "x.png"))
    assert code == 1 and "pip install matplotlib" in err


def test_cuda_unavailable(capsys):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    code, _, err = run(capsys, "profile", "--shape", "3", "4", "--nnz", "2", "--device", "cuda")
    assert code == 1 and "CUDA is not available" in err


def test_usage_errors_and_help(capsys):
    assert main(["profile"]) == 2  # no source: argparse usage error
    assert main(["profile", "--shape", "3", "4", "--nnz", "1", "--density", "0.1"]) == 2
    assert main([]) == 2
    assert main(["--help"]) == 0
    assert "profile" in capsys.readouterr().out


def _fake_celegans(monkeypatch):
    n = 40
    conn = Connectivity.random(n, n, nnz=200, seed=3)
    counts = torch.randint(1, 10, (200,)).float()
    module = types.ModuleType("sparselinear.datasets")
    module.load_celegans = lambda synapse_type="chemical": (conn, counts)
    monkeypatch.setitem(sys.modules, "sparselinear.datasets", module)


def test_demo_small_writes_plot(capsys, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    _fake_celegans(monkeypatch)
    path = tmp_path / "demo.png"
    code, out, _ = run(capsys, "demo", "--small", "--steps", "1", "--plot", str(path),
                       "--no-progress")
    assert code == 0
    assert "dense nn.Linear: weight" in out and "measured peak:" in out
    assert "C. elegans" in out and "loss" in out.split("C. elegans")[1]
    assert path.read_bytes()[:8] == PNG


def test_demo_without_dataset_module(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "sparselinear.datasets", None)
    code, out, _ = run(capsys, "demo", "--small", "--steps", "1", "--no-plot", "--no-progress")
    assert code == 0 and "skipped" in out


def test_demo_errors(capsys):
    code, _, err = run(capsys, "demo", "--small", "--steps", "0", "--no-plot")
    assert code == 1 and "'steps' must be a positive integer" in err


def test_python_dash_m(tmp_path):
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-m", "sparselinear", "profile", "--shape", "10", "10",
                          "--nnz", "5"], capture_output=True, text=True, cwd=root, timeout=120)
    assert out.returncode == 0 and "total (peak)" in out.stdout
