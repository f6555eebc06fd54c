"""The distribution: its name (torch-sparselinear: PyPI's `sparselinear` is another project with
the same import name), a wheel that carries everything the package reads at run time (the C.
elegans data, the kernel source, py.typed), install hints that name it, and the setup script
that says what it installs."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import sparselinear

ROOT = Path(__file__).resolve().parents[1]
DIST = "torch-sparselinear"
tomllib = pytest.importorskip("tomllib")  # Python >= 3.11


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_pyproject_names_the_distribution_and_its_files():
    meta = _pyproject()
    assert meta["project"]["name"] == DIST
    assert meta["project"]["scripts"] == {"sparselinear": "sparselinear.cli:main"}
    assert "version" in meta["project"]["dynamic"]  # one source: sparselinear.__version__
    tool = meta["tool"]["setuptools"]
    assert tool["dynamic"]["version"] == {"attr": "sparselinear.__version__"}
    assert "py.typed" in tool["package-data"]["sparselinear"]
    assert "data/*.csv" in tool["package-data"]["sparselinear.datasets"]
    assert "data-files" not in tool  # files outside the package miss --user/--target installs


def _package_files() -> list[str]:
    """Every file under sparselinear/ that is not Python source or a build by-product."""
    root = ROOT / "sparselinear"
    return sorted(p.relative_to(ROOT).as_posix() for p in root.rglob("*")
                  if p.is_file() and p.suffix not in (".py", ".pyc", ".so")
                  and "__pycache__" not in p.parts)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the sources (the checkout gets no build/ or egg-info)."""
    setuptools = pytest.importorskip("setuptools")
    if int(setuptools.__version__.split(".")[0]) < 77:
        pytest.skip(f"building needs setuptools >= 77; this has {setuptools.__version__}")
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "sparselinear", src / "sparselinear",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.pyc"))
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
         "--no-index", "-q", "-w", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    if done.returncode != 0:
        pytest.fail(f"pip wheel failed:\n{done.stdout}\n{done.stderr}")
    (path,) = out.glob("*.whl")
    return path


def test_wheel_is_the_distribution_with_its_data(wheel):
    version = sparselinear.__version__
    assert wheel.name == f"torch_sparselinear-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        info = f"torch_sparselinear-{version}.dist-info"
        metadata = z.read(f"{info}/METADATA").decode()
        entry_points = z.read(f"{info}/entry_points.txt").decode()
    assert f"\nName: {DIST}\n" in metadata and f"\nVersion: {version}\n" in metadata
    assert "sparselinear = sparselinear.cli:main" in entry_points
    missing = [f for f in _package_files() if f not in names]
    assert missing == [], "files the package reads at run time are not in the wheel"
    assert {"sparselinear/py.typed", "sparselinear/datasets/data/celegans_white1986.csv",
            "sparselinear/datasets/data/README.md", "sparselinear/ops/_ext/kernels.cpp"} <= names
    assert not any(n.startswith(("tests/", "benchmarks/", "data/", "share/")) or ".data/" in n
                   for n in names)


def test_the_installed_wheel_finds_its_data(wheel, tmp_path):
    """Unpacked elsewhere (as pip installs it), the package loads the C. elegans connectome
    and reports its distribution's version."""
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    code = ("import importlib.metadata as md, json, sparselinear\n"
            "from sparselinear.datasets import DATA_DIR, load_celegans\n"
            "c, _ = load_celegans()\n"
            "print(json.dumps([list(c.shape), str(DATA_DIR), sparselinear.__file__,\n"
            f"                  md.version({DIST!r}), sparselinear.__version__]))\n")
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    shape, data_dir, module, dist_version, version = json.loads(done.stdout.splitlines()[-1])
    assert Path(module).is_relative_to(site)  # the unpacked wheel, not this checkout
    assert shape == [309, 309] and Path(data_dir).is_relative_to(site)
    assert dist_version == version == sparselinear.__version__


INSTALL = re.compile(r"pip install\s+['\"]?(?:-e\s+)?([A-Za-z0-9_.\-]+)(\[[^\]]*\])?")


def test_install_hints_name_the_distribution():
    """No message or page tells anyone to `pip install sparselinear`: that is another project.
    (The benchmarks install PyPI's sparselinear 0.0.5 on purpose, as a peer to compare with.)"""
    files = [*ROOT.joinpath("sparselinear").rglob("*.py"), ROOT / "README.md",
             *ROOT.joinpath("docs").glob("*.md"), *ROOT.joinpath("scripts").glob("*.sh"),
             *ROOT.joinpath("examples").glob("*.py")]
    wrong = []
    for path in files:
        text = path.read_text()
        for m in INSTALL.finditer(text):
            warning = "does not install" in text[m.end(): m.end() + 20]  # the README's warning
            if m.group(1).lower().replace("_", "-") == "sparselinear" and not warning:
                wrong.append(f"{path.relative_to(ROOT)}: {m.group(0)}")
    assert wrong == []
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert f"pip install {DIST}" in readme and "PyPI's `sparselinear` is a different" in readme


# ---------------------------------------------------------------------------- setup script
def _fake_venv(where: Path, log: Path, has_torch: bool, has_old_dist: bool) -> None:
    """A stand-in for .venv/bin/python that records the pip commands it is given."""
    (where / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "setup_env.sh", where / "scripts" / "setup_env.sh")
    bin_dir = where / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    python = bin_dir / "python"
    python.write_text(f"""#!/bin/sh
if [ "$1" = "-c" ]; then exit {0 if has_torch else 1}; fi
if [ "$3" = "show" ]; then exit {0 if has_old_dist else 1}; fi
echo "PIP $*" >&2
echo "$*" >> "{log}"
""")
    python.chmod(0o755)


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize("has_torch, has_old_dist", [(False, True), (True, False)])
def test_setup_env_says_what_it_installs(tmp_path, has_torch, has_old_dist):
    log = tmp_path / "pip.log"
    _fake_venv(tmp_path, log, has_torch, has_old_dist)
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep)
                           if not (Path(p) / "nvidia-smi").exists())
    done = subprocess.run(["bash", str(tmp_path / "scripts" / "setup_env.sh")],
                          env={**os.environ, "PATH": path, "EXTRAS": "test"},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    pips = [i for i, line in enumerate(lines) if line.startswith("PIP ")]
    assert pips, done.stderr
    for i in pips:  # each pip step is announced by the line just before it
        assert i > 0 and lines[i - 1].startswith("setup_env: ") and "..." in lines[i - 1]
    said = "\n".join(lines)
    assert ("installing torch 2.13.0" in said) != has_torch
    assert ("removing the distribution 'sparselinear'" in said) == has_old_dist
    assert "installing sparselinear (torch-sparselinear, editable" in said
    assert "'test' extras" in said and lines[-1].startswith("setup_env: ready:")
    assert log.read_text().splitlines()[-1] == "-m pip install -q -e .[test]"
