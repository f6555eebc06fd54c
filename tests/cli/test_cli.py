import gzip
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


# how each fixture file is read as the (4, 3) pattern: outputs 0..3, inputs 0..2
READ_AS = {
    "npz": [],
    "mtx": [],
    "csv": ["--source", "pre", "--target", "post", "--bipartite"],
    "tsv": ["--no-header", "--source", "1", "--target", "0", "--bipartite"],
}


def shape_nnz(out):
    layer = json.loads(out[: out.rindex("}") + 1])["layers"][0]
    return tuple(layer["shape"]), layer["nnz"]


@pytest.mark.parametrize("kind", ["npz", "mtx", "csv", "tsv"])
def test_profile_adjacency_files(capsys, adjacency, kind):
    code, out, _ = run(capsys, "profile", "--adjacency", str(adjacency[kind]), *READ_AS[kind],
                       "--json")
    assert code == 0
    assert shape_nnz(out) == ((4, 3), 5)


@pytest.mark.parametrize("kind", ["npz", "mtx", "csv", "tsv"])
def test_adjacency_edges_match(adjacency, kind):
    from sparselinear.cli.adjacency import read_adjacency
    from sparselinear.cli.profile import _parser

    expected = Connectivity(torch.tensor([[0, 1, 3, 3, 2], [0, 2, 1, 2, 0]]), shape=(4, 3))
    args = _parser().parse_args(["profile", "--adjacency", str(adjacency[kind]), *READ_AS[kind]])
    assert read_adjacency(args) == expected


def test_profile_matrix_orientation(capsys, adjacency):
    for kind in ("npz", "mtx"):
        for orientation, shape in (("target_source", (4, 3)), ("out_in", (4, 3)),
                                   ("source_target", (3, 4)), ("in_out", (3, 4))):
            code, out, _ = run(capsys, "profile", "--adjacency", str(adjacency[kind]),
                               "--orientation", orientation, "--json")
            assert code == 0 and shape_nnz(out) == (shape, 5)


def test_profile_edge_list_orientation(capsys, tmp_path):
    """An edge list is read as the API reads it: source (first column) -> target (second)."""
    path = tmp_path / "ff.csv"
    path.write_text("gene,protein\ng1,p1\ng2,p1\ng3,p2\n")
    code, out, _ = run(capsys, "profile", "--adjacency", str(path), "--bipartite", "--json")
    assert code == 0 and shape_nnz(out) == ((2, 3), 3)  # outputs = targets, inputs = sources
    code, out, _ = run(capsys, "profile", "--adjacency", str(path), "--source", "protein",
                       "--target", "gene", "--bipartite", "--json")
    assert code == 0 and shape_nnz(out) == ((3, 2), 3)
    code, out, _ = run(capsys, "profile", "--adjacency", str(path), "--json")
    assert code == 0 and shape_nnz(out) == ((5, 5), 3)  # one node set by default


def test_profile_celegans(capsys):
    from sparselinear.datasets import celegans_path

    code, out, err = run(capsys, "profile", "--adjacency", str(celegans_path()), "--source",
                         "pre", "--target", "post", "--batch", "4")
    assert code == 0, err
    assert "batch 4" in out and "layer: 309 x 309, nnz 2,818" in out
    # chemical synapses only, each pair once: --duplicates error does not fire
    code, out, err = run(capsys, "profile", "--adjacency", str(celegans_path()), "--source",
                         "pre", "--target", "post", "--where", "type=chemical", "--duplicates",
                         "error", "--json")
    assert code == 0, err
    assert shape_nnz(out) == ((303, 303), 2386)
    code, out, _ = run(capsys, "profile", "--adjacency", str(celegans_path()), "--source",
                       "pre", "--target", "post", "--where", "type=chemical", "--where",
                       "type=electrical", "--where", "2=chemical", "--json")
    assert code == 0 and shape_nnz(out) == ((303, 303), 2386)  # where: OR within, AND across


def test_profile_duplicates(capsys, tmp_path):
    path = tmp_path / "dup.csv"
    path.write_text("src,dst,type\na,b,x\na,b,y\nb,c,x\n")
    for policy in ("sum", "max", "first"):
        code, out, _ = run(capsys, "profile", "--adjacency", str(path), "--duplicates", policy,
                           "--json")
        assert code == 0 and shape_nnz(out) == ((3, 3), 2)
    code, _, err = run(capsys, "profile", "--adjacency", str(path), "--duplicates", "error")
    assert code == 1 and "1 edge(s) appear more than once: 'a' -> 'b'" in err


def test_profile_headerless_and_gzip(capsys, tmp_path):
    plain = tmp_path / "edges.txt"
    plain.write_text("0 1\n1 2\n2 0\n5 0\n")
    code, out, _ = run(capsys, "profile", "--adjacency", str(plain), "--no-header", "--json")
    assert code == 0 and shape_nnz(out) == ((4, 4), 4)  # nodes 0, 1, 2, 5: names, not positions
    code, _, err = run(capsys, "profile", "--adjacency", str(plain))
    assert code == 1 and "looks like an edge" in err and "--no-header" in err
    packed = tmp_path / "edges.csv.gz"
    packed.write_bytes(gzip.compress(b"pre,post\na,b\nb,c\n"))
    code, out, _ = run(capsys, "profile", "--adjacency", str(packed), "--json")
    assert code == 0 and shape_nnz(out) == ((3, 3), 2)
    matrix = tmp_path / "m.mtx"
    scipy.io.mmwrite(matrix, scipy.sparse.coo_array(np.eye(3)))
    (tmp_path / "m.mtx.gz").write_bytes(gzip.compress(matrix.read_bytes()))
    code, out, _ = run(capsys, "profile", "--adjacency", str(tmp_path / "m.mtx.gz"), "--json")
    assert code == 0 and shape_nnz(out) == ((3, 3), 3)


def test_profile_measure(capsys):
    code, out, _ = run(capsys, "profile", "--shape", "200", "300", "--nnz", "2000", "--batch",
                       "8", "--measure", "--steps", "2", "--no-progress", "--optimizer", "adamw")
    assert code == 0
    assert "measured peak:" in out and "measured/estimated" in out
    assert re.search(r"\d (s|ms|µs) per step", out) and "0.00 s" not in out, out


def test_profile_measure_by_sampling(capsys):
    code, out, _ = run(capsys, "profile", "--shape", "200", "300", "--nnz", "2000", "--measure",
                       "--steps", "1", "--no-progress", "--peak-method", "sample")
    assert code == 0 and "measured peak:" in out


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
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("a,b\n1,2,3\n")
    unknown = tmp_path / "graph.xyz"
    unknown.write_text("1 2\n")
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not a zip")
    packed = tmp_path / "bad.csv.gz"
    packed.write_text("pre,post\na,b\n")  # not gzip data
    celegans = ["--source", "pre", "--target", "post"]
    cases = [
        ([str(ragged)], "ragged.csv, line 2: 3 field(s) where the header has 2"),
        ([str(unknown)], "unknown file kind '.xyz'"),
        ([str(broken)], "Cannot read"),
        ([str(packed)], "Cannot read edge list file"),
        ([str(adjacency["csv"]), "--source", "pree"],
         "'source' column 'pree' not found in file 'a.csv'; its columns are ['post', 'pre', "
         "'count']. Did you mean 'pre'?"),
        ([str(adjacency["csv"]), "--source", "7"], "'source' column 7 not found"),
        ([str(adjacency["tsv"]), "--no-header", "--source", "pre"],
         "its columns are [0, 1]"),
        ([str(adjacency["csv"]), "--where", "kind=x"], "'where' column 'kind' not found"),
        ([str(adjacency["csv"]), "--orientation", "source_target"],
         "--orientation applies to .npz/.mtx matrices"),
        ([str(adjacency["npz"]), *celegans, "--no-header"],
         "--source, --target, --no-header read edge lists; "),
        ([str(adjacency["csv"]), *celegans, "--nnz", "3"], "a file already has its edges"),
    ]
    for argv, match in cases:
        code, _, err = run(capsys, "profile", "--adjacency", *argv)
        assert code == 1, (argv, err)
        assert err.startswith("sparselinear: error: ") and err.count("\n") == 1, err
        assert match in err, err
    code, _, err = run(capsys, "profile", "--shape", "3", "4", "--nnz", "2", "--source", "pre",
                       "--orientation", "in_out")
    assert code == 1 and "--source, --orientation describe an --adjacency file" in err
    assert main(["profile", "--adjacency", str(adjacency["csv"]), "--where", "type"]) == 2
    assert main(["profile", "--adjacency", str(adjacency["npz"]), "--transpose"]) == 2


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
    from sparselinear.cli.demo import PLOT, PLOT_SMALL, describe_dense, fly_estimate

    _fake_celegans(monkeypatch)
    monkeypatch.chdir(tmp_path)
    (tmp_path / PLOT).write_bytes(b"the full-scale plot")
    code, out, _ = run(capsys, "demo", "--small", "--steps", "2", "--no-progress")
    assert code == 0
    # the dense figures are the estimate's, each saying what it counts
    assert f"dense nn.Linear (estimate) — {describe_dense(fly_estimate(small=True))};" in out
    assert "measured peak:" in out
    assert "C. elegans" in out and "loss" in out.split("C. elegans")[1]
    # --small writes its own plot and leaves the full-scale one alone
    assert PLOT_SMALL != PLOT and f"written to {PLOT_SMALL}" in out
    assert (tmp_path / PLOT_SMALL).read_bytes()[:8] == PNG
    assert (tmp_path / PLOT).read_bytes() == b"the full-scale plot"
    # the step time is written in a unit that shows it, never "0.00 s"
    timing = re.search(r"2 steps at (\S+ \S+) each", out)
    assert timing, out
    assert re.fullmatch(r"\d+(\.\d+)? (s|ms|µs)|< 1 µs", timing.group(1)), timing.group(1)
    assert "0.00 s" not in out


def test_demo_plot_option_and_one_step(capsys, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    _fake_celegans(monkeypatch)
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "demo.png"
    code, out, _ = run(capsys, "demo", "--small", "--steps", "1", "--plot", str(path),
                       "--no-progress", "--peak-method", "sample")
    assert code == 0 and path.read_bytes()[:8] == PNG
    assert re.search(r"1 step in \S+ \S+;", out), out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo.png"]


def test_step_times_are_written_in_a_unit_that_shows_them():
    from sparselinear.memory import format_seconds

    assert format_seconds(0.0042) == "4.20 ms" and format_seconds(0.00049) == "490 µs"
    assert format_seconds(0.208) == "208 ms" and format_seconds(2.5) == "2.50 s"
    assert format_seconds(0.0) == "< 1 µs"


def test_demo_without_dataset_module(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "sparselinear.datasets", None)
    code, out, _ = run(capsys, "demo", "--small", "--steps", "1", "--no-plot", "--no-progress")
    assert code == 0 and "skipped" in out


def test_demo_errors(capsys):
    code, _, err = run(capsys, "demo", "--small", "--steps", "0", "--no-plot")
    assert code == 1 and "'steps' must be a positive integer" in err
    assert main(["demo", "--small", "--peak-method", "guess"]) == 2  # argparse's usage error


def test_python_dash_m(tmp_path):
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-m", "sparselinear", "profile", "--shape", "10", "10",
                          "--nnz", "5"], capture_output=True, text=True, cwd=root, timeout=120)
    assert out.returncode == 0 and "total (peak)" in out.stdout
    out = subprocess.run([sys.executable, "-m", "sparselinear", "--help"], capture_output=True,
                         text=True, cwd=root, timeout=120)
    assert out.returncode == 0 and "{profile,demo}" in out.stdout


@pytest.mark.parametrize("device", ["tpu", "meta", "not a device"])
def test_profile_refuses_an_unknown_device_in_one_line(capsys, device):
    code, _, err = run(capsys, "profile", "--shape", "10", "10", "--nnz", "5", "--device", device)
    assert code == 1 and "'--device' must be" in err and "Traceback" not in err


@pytest.mark.parametrize("text", ["\ufeff0,1\n1,2\n", "+0 +1\n1 2\n", "0.0,1.0\n1,2\n",
                                  "a,b\nb,c\n"])
def test_profile_first_line_is_never_eaten(capsys, tmp_path, text):
    path = tmp_path / "edges.csv"
    path.write_bytes(text.encode())
    code, _, err = run(capsys, "profile", "--adjacency", str(path))
    assert code == 1 and "edges.csv, line 1: the header row" in err and "--no-header" in err
    code, out, _ = run(capsys, "profile", "--adjacency", str(path), "--no-header", "--json")
    assert code == 0 and shape_nnz(out)[1] == 2


def test_profile_where_typo_and_unicode_column(capsys, adjacency):
    from sparselinear.datasets import celegans_path

    code, _, err = run(capsys, "profile", "--adjacency", str(celegans_path()), "--source", "pre",
                       "--target", "post", "--where", "type=Chemical")
    assert code == 1 and "'where' selects 'Chemical' in column 'type'" in err
    assert "'chemical', 'electrical'" in err and "Did you mean 'chemical'?" in err
    code, _, err = run(capsys, "profile", "--adjacency", str(adjacency["csv"]), "--source", "²")
    assert code == 1 and "'source' column '²' not found" in err


@pytest.mark.parametrize("name", ["fly.csv.bz2", "fly.csv.zip", "fly.parquet", "fly.feather"])
def test_profile_reads_every_table_format(capsys, tmp_path, name):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    frame = pd.DataFrame({"pre_root_id": [720575940000000001, 720575940000000002] * 2,
                          "post_root_id": [720575940000000002, 720575940000000003] * 2,
                          "syn_count": [6, 1, 2, 9]})
    path = tmp_path / name
    if name.endswith(".parquet"):
        frame.to_parquet(path)
    elif name.endswith(".feather"):
        frame.to_feather(path)
    else:
        frame.to_csv(path, index=False, compression="bz2" if name.endswith("bz2") else "zip")
    code, out, err = run(capsys, "profile", "--adjacency", str(path), "--source", "pre_root_id",
                         "--target", "post_root_id", "--weight", "syn_count", "--json")
    assert code == 0, err
    assert shape_nnz(out) == ((3, 3), 2)


def test_version(capsys):
    import sparselinear

    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.strip() == f"sparselinear {sparselinear.__version__}"


def test_a_closed_pipe_exits_quietly(tmp_path):
    import subprocess

    done = subprocess.run(
        f"{sys.executable} -m sparselinear profile --shape 100 100 --nnz 50 --json | head -c 1",
        shell=True, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0 and "Traceback" not in done.stderr and done.stderr == ""
