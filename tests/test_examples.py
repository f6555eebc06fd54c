"""Each example's main() runs end to end with small settings, so the examples keep working."""

import importlib.util
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_quickstart_learns(capsys):
    ratio = load("quickstart").main(steps=60)
    out = capsys.readouterr().out
    assert "SparseLinear(in_features=2000" in out and "dense nn.Linear weight" in out
    assert ratio < 0.9  # test error well below predicting the mean


def test_lower_triangular(capsys):
    result = load("lower_triangular").main(["--features", "48", "--steps", "30", "--batch", "16"])
    assert result["causal"]
    assert result["loss_end"] < result["loss_start"]
    assert "unchanged by it: True" in capsys.readouterr().out


def test_pruned_linear(capsys):
    result = load("pruned_linear").main(
        ["--in-features", "256", "--out-features", "128", "--amount", "0.9"]
    )
    assert result["max_abs_diff"] < 1e-5
    assert result["nnz"] == round(0.1 * 256 * 128)
    assert result["sparse_bytes"] < result["dense_bytes"] / 2
    assert "smaller than dense" in capsys.readouterr().out


def test_celegans_network(capsys):
    result = load("celegans_network").main(["--steps", "15", "--time", "3", "--batch", "32"])
    assert 0.0 <= result["accuracy"] <= 1.0
    assert result["loss_end"] < result["loss_start"]
    assert "->" in capsys.readouterr().out


@pytest.mark.slow
def test_celegans_network_learns():
    result = load("celegans_network").main([])
    assert result["accuracy"] > 0.7


def test_celegans_dynamics_learns(capsys):
    result = load("celegans_dynamics").main(["--epochs", "15", "--steps", "30"])
    assert result["loss_end"] < 0.8 * result["loss_start"]
    assert "sensory -> 18 motor neurons" in capsys.readouterr().out


def test_fly_scale_dynamics_small(capsys):
    result = load("fly_scale_dynamics").main(
        ["--neurons", "2000", "--edges", "40000", "--groups", "50", "--steps", "10",
         "--train-steps", "2"]
    )
    assert result["seconds"] > 0 and result["estimate"] > 0
    assert "gather/scatter_add" in capsys.readouterr().out
