"""Building, caching and loading the compiled kernels (``sparselinear.ops._ext``).

The build logic runs against fake compilers (shell scripts) in a private build folder, so these
tests compile nothing; the few that need the real library reuse the one the session loaded.
Every test that resets the module's load state does it through ``monkeypatch``, which puts the
loaded library back afterwards.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest
import torch
from conftest import needs_ext

from sparselinear import SparseLinear, kernels
from sparselinear.errors import (
    MissingDependencyError,
    PatternError,
    SparseLinearError,
    SparseLinearTypeError,
)
from sparselinear.ops import _ext
from sparselinear.ops._ext import bindings, build


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """``_ext`` with its load state reset, a private build folder and no compiler override."""
    monkeypatch.setattr(_ext, "_lib", None)
    monkeypatch.setattr(_ext, "_tried", False)
    monkeypatch.setattr(_ext, "_openmp", False)
    monkeypatch.setenv("SPARSELINEAR_BUILD_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("SPARSELINEAR_DISABLE_EXTENSION", raising=False)
    return _ext


def _forget(monkeypatch) -> None:
    """What a later process sees: nothing loaded, nothing tried."""
    monkeypatch.setattr(_ext, "_lib", None)
    monkeypatch.setattr(_ext, "_tried", False)


def _fake_compiler(path: Path, *, version: str = "fake c++ 1.0", fails: bool = False) -> Path:
    """A shell script answering ``--version`` with ``version`` and counting its compiles in
    ``<path>.calls``; a compile fails, or writes a file that is no library to its ``-o``."""
    calls = path.with_suffix(".calls")
    compile_step = (
        'echo "fatal: fake failure" >&2; exit 1' if fails
        else 'while [ $# -gt 1 ]; do [ "$1" = -o ] && echo no-library > "$2"; shift; done'
    )
    path.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = --version ]; then echo "{version}"; exit 0; fi\n'
        f'echo compile >> "{calls}"\n'
        f"{compile_step}\n"
        "exit 0\n"
    )
    path.chmod(0o755)
    return path


def _compiles(compiler: Path) -> int:
    calls = compiler.with_suffix(".calls")
    return len(calls.read_text().splitlines()) if calls.exists() else 0


# ---------------------------------------------------------------- the cache folder and key
def test_cache_root_order(monkeypatch, tmp_path):
    monkeypatch.setenv("SPARSELINEAR_BUILD_DIR", str(tmp_path / "own"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert build.cache_root() == tmp_path / "own"
    monkeypatch.delenv("SPARSELINEAR_BUILD_DIR")
    assert build.cache_root() == tmp_path / "xdg" / "sparselinear"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # ignored, as the XDG spec asks
    assert build.cache_root() == Path.home() / ".cache" / "sparselinear"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert build.cache_root() == Path.home() / ".cache" / "sparselinear"


def test_builds_under_xdg_cache_home(fresh, monkeypatch, tmp_path):
    compiler = _fake_compiler(tmp_path / "c++")
    monkeypatch.setenv("CXX", str(compiler))
    monkeypatch.delenv("SPARSELINEAR_BUILD_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    with pytest.warns(RuntimeWarning, match="could not build"):  # the output is no library
        assert fresh.load() is None
    built = list((tmp_path / "xdg" / "sparselinear").glob(f"*/{build.LIBRARY_NAME}"))
    assert len(built) == len(build.FLAG_SETS)


def test_cache_key_includes_the_compiler_version(tmp_path):
    compiler = str(_fake_compiler(tmp_path / "c++", version="fake c++ 1.0"))
    flags = build.FLAG_SETS[0]
    old = build.library_path(compiler, build.compiler_version(compiler), flags)
    _fake_compiler(tmp_path / "c++", version="fake c++ 2.0")  # upgraded in place
    new = build.library_path(compiler, build.compiler_version(compiler), flags)
    assert build.compiler_version(compiler) == "fake c++ 2.0"
    assert old != new and old.name == new.name == build.LIBRARY_NAME
    other = str(_fake_compiler(tmp_path / "other-c++", version="fake c++ 2.0"))
    assert build.library_path(other, "fake c++ 2.0", flags) != new  # the path counts too
    assert build.library_path(compiler, "fake c++ 2.0", build.FLAG_SETS[1]) != new


# ---------------------------------------------------------------- failures
def test_a_failed_compile_is_not_retried_by_later_processes(fresh, monkeypatch, tmp_path):
    compiler = _fake_compiler(tmp_path / "c++", fails=True)
    monkeypatch.setenv("CXX", str(compiler))
    with pytest.warns(RuntimeWarning, match="(?s)could not build.*fake failure"):
        assert fresh.load() is None
    assert _compiles(compiler) == len(build.FLAG_SETS)
    markers = list((tmp_path / "cache").glob(f"*/{build.FAILURE_NAME}"))
    assert len(markers) == len(build.FLAG_SETS)
    assert all("fake failure" in marker.read_text() for marker in markers)
    assert not list((tmp_path / "cache").rglob("*.so"))  # no half-written library left

    _forget(monkeypatch)
    with pytest.warns(RuntimeWarning, match="(?s)failed before.*delete that file to retry"):
        assert fresh.load() is None
    assert _compiles(compiler) == len(build.FLAG_SETS)  # not run again

    markers[0].unlink()  # deleting a marker retries that flag set
    _forget(monkeypatch)
    with pytest.warns(RuntimeWarning, match="fake failure"):
        assert fresh.load() is None
    assert _compiles(compiler) == len(build.FLAG_SETS) + 1


def test_an_unusable_build_dir_warns_once_and_falls_back(fresh, monkeypatch, tmp_path):
    compiler = _fake_compiler(tmp_path / "c++")
    monkeypatch.setenv("CXX", str(compiler))
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the build folder should be")
    monkeypatch.setenv("SPARSELINEAR_BUILD_DIR", str(blocker))
    layer = SparseLinear(12, 7, torch.tensor([[0, 1, 3, 6, 6], [2, 11, 0, 5, 9]]), mode="sparse")
    x = torch.randn(4, 12)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        y = layer(x)
        y_again = layer(x)
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1 and "unusable" in messages[0], messages
    assert "SPARSELINEAR_BUILD_DIR" in messages[0]
    assert _compiles(compiler) == 0 and not fresh.available()
    with kernels.use_backend("torch"):
        torch.testing.assert_close(y, layer(x))
    torch.testing.assert_close(y_again, y)


def test_missing_kernels_raise_a_sparselinear_error(fresh, monkeypatch):
    monkeypatch.setenv("SPARSELINEAR_DISABLE_EXTENSION", "1")
    crow, col = torch.tensor([0, 1, 1]), torch.tensor([0])
    with pytest.raises(MissingDependencyError, match="not available") as raised:
        fresh.spmm(crow, col, torch.ones(1), torch.ones(1, 2))
    assert isinstance(raised.value, SparseLinearError)


def test_pattern_argument_errors_are_pattern_errors():
    crow, col = torch.tensor([0, 1], dtype=torch.int32), torch.tensor([0])
    with pytest.raises(PatternError, match="index dtype"):
        _ext.block_layout(crow, col, 1, 1)
    with pytest.raises(PatternError, match="column blocks"):
        _ext.backward(crow.long(), col, torch.ones(1), torch.ones(1, 2), torch.ones(1, 2), 1,
                      want_gw=True, want_gx=False, run=torch.zeros(1, 1, dtype=torch.int64))


# ---------------------------------------------------------------- ABI version
def test_abi_version_is_read_from_the_source(tmp_path):
    assert bindings.source_abi_version() >= 4
    source = tmp_path / "kernels.cpp"
    source.write_text("// no version here\n")
    with pytest.raises(SparseLinearError, match="SL_ABI_VERSION"):
        bindings.source_abi_version(source)


@needs_ext
def test_the_loaded_library_reports_the_source_abi_version():
    assert _ext.load().sl_abi_version() == bindings.source_abi_version()


@needs_ext
def test_a_library_of_another_abi_version_is_refused(monkeypatch):
    real = Path(_ext.load()._name)
    wanted = bindings.source_abi_version() + 1
    monkeypatch.setattr(bindings, "source_abi_version", lambda source=build.SOURCE: wanted)
    with pytest.raises(bindings.AbiMismatchError, match=f"ABI version {wanted}"):
        bindings.open_library(real)

    _forget(monkeypatch)  # a later process finding the stale library in its cache folder
    monkeypatch.setattr(_ext, "_openmp", False)
    monkeypatch.setattr(build, "find_compiler", lambda: "c++")
    monkeypatch.setattr(build, "compiler_version", lambda compiler: "")
    monkeypatch.setattr(build, "build", lambda compiler, version, flags: real)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert _ext.load() is None
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and f"ABI version {wanted}" in messages[0], messages


# ---------------------------------------------------------------- the signature table
def _cpp_signatures() -> dict[str, list[tuple[str, type]]]:
    """The parameters of every exported kernel as ``kernels.cpp`` declares them."""
    text = build.SOURCE.read_text().replace("\\\n", " ")
    found = {}
    for name, params in re.findall(r'extern "C" void sl_(\w+?)_##SUFFIX\(([^)]*)\)', text):
        found[name] = []
        for param in params.split(","):
            ctype = (bindings.PTR if "*" in param
                     else bindings.I64 if "int64_t" in param else bindings.INT)
            found[name].append((param.split()[-1].lstrip("*"), ctype))
    return found


def test_the_signature_table_matches_the_source():
    declared = _cpp_signatures()
    assert set(declared) == set(bindings.SIGNATURES)
    for kernel, params in bindings.SIGNATURES.items():
        assert list(params) == declared[kernel], kernel


@needs_ext
def test_the_signature_table_sets_the_argument_types():
    lib = _ext.load()
    for kernel, params in bindings.SIGNATURES.items():
        for suffix in bindings.VARIANTS[kernel]:
            fn = getattr(lib, bindings.symbol(kernel, suffix))
            assert fn.argtypes == [ctype for _, ctype in params], (kernel, suffix)


def test_a_call_must_name_every_argument_of_the_table():
    names = [name for name, _ in bindings.SIGNATURES["spmm"]]
    args = dict.fromkeys(names, 0)
    with pytest.raises(SparseLinearTypeError, match=r"missing \['threads'\]"):
        bindings.call(object(), "spmm", "f32_i32", **{k: v for k, v in args.items()
                                                      if k != "threads"})
    with pytest.raises(SparseLinearTypeError, match=r"unexpected \['extra'\]"):
        bindings.call(object(), "spmm", "f32_i32", **args, extra=1)
