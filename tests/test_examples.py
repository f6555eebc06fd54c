"""The examples keep running and keep learning (small settings)."""

import importlib.util
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_quickstart_learns(capsys):
    ratio = load_example("quickstart").main(steps=60)
    out = capsys.readouterr().out
    assert "SparseLinear(in_features=2000" in out and "dense nn.Linear weight" in out
    assert ratio < 0.9  # test error well below predicting the mean
