"""Building the compiled kernels: the compiler, the flag sets, the cache folder and its keys.

The shared library is cached in ``$SPARSELINEAR_BUILD_DIR``, else ``$XDG_CACHE_HOME/sparselinear``,
else ``~/.cache/sparselinear``, in a folder named after a hash of everything the binary depends
on (``cache_key``): the source, the compiler's path and ``--version`` output, the flags, the
machine and the CPU model. A change to any of them builds into a fresh folder.

Compiling is atomic (the library is written under a temporary name, then renamed), so
concurrent processes never load a half-written file. A compile that fails leaves a marker file
(``FAILURE_NAME``, holding the compiler output) in its folder, and later processes skip that
flag set instead of spending seconds failing again; delete the marker to retry.

Nothing here warns: failures are raised as ``BuildError`` and reported by the loader.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ...errors import SparseLinearError

__all__ = [
    "COMMON_FLAGS",
    "FAILURE_NAME",
    "FLAG_SETS",
    "LIBRARY_NAME",
    "SOURCE",
    "BuildDirError",
    "BuildError",
    "build",
    "cache_key",
    "cache_root",
    "compiler_version",
    "find_compiler",
    "library_path",
]

#: The C++ source of the kernels.
SOURCE = Path(__file__).with_name("kernels.cpp")
#: File name of the built library inside its key folder.
LIBRARY_NAME = "sparselinear_kernels.so"
#: File name of the marker a failed compile leaves inside its key folder.
FAILURE_NAME = "build-failed.txt"
#: Flag sets tried in turn, fastest first: the first that compiles and loads is used.
FLAG_SETS: tuple[tuple[str, ...], ...] = (
    ("-O3", "-march=native", "-fopenmp"),
    ("-O3", "-fopenmp"),
    ("-O3",),
)
#: Flags every compile takes.
COMMON_FLAGS = ("-fPIC", "-shared", "-std=c++17")
#: Seconds a compile may take, and a ``--version`` query.
COMPILE_TIMEOUT_S = 300
VERSION_TIMEOUT_S = 30


class BuildError(SparseLinearError, RuntimeError):
    """The kernels could not be compiled with one flag set (now, or in an earlier process)."""


class BuildDirError(BuildError):
    """The build folder cannot be created or written: no flag set can be built there."""


def find_compiler() -> str | None:
    """The full path of the C++ compiler: ``$CXX``, else ``c++``, ``g++`` or ``clang++``."""
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        path = shutil.which(name) if name else None
        if path:
            return path
    return None


def compiler_version(compiler: str) -> str:
    """What ``compiler --version`` prints (empty if it cannot run): part of the cache key, so
    that upgrading the compiler in place rebuilds."""
    try:
        done = subprocess.run([compiler, "--version"], capture_output=True, text=True,
                              timeout=VERSION_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return ""
    return (done.stdout + done.stderr).strip()


def cache_root() -> Path:
    """The folder holding every build: ``$SPARSELINEAR_BUILD_DIR``, else
    ``$XDG_CACHE_HOME/sparselinear`` (an absolute ``XDG_CACHE_HOME`` only, as the XDG
    specification asks), else ``~/.cache/sparselinear``."""
    root = os.environ.get("SPARSELINEAR_BUILD_DIR")
    if root:
        return Path(root)
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "sparselinear"


def _cpu_model() -> bytes:
    """What ``-march=native`` depends on: the CPU's model name and feature flags."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor().encode()
    wanted = [ln for ln in lines if ln.startswith(("model name", "flags", "Features"))]
    return "\n".join(dict.fromkeys(wanted)).encode()


def cache_key(compiler: str, version: str, flags: Sequence[str]) -> str:
    """16 hex digits naming the build of the source with ``compiler`` (of ``version``) and
    ``flags`` on this machine and CPU model."""
    key = hashlib.sha256()
    for part in (SOURCE.read_bytes(), compiler.encode(), version.encode(),
                 " ".join((*flags, *COMMON_FLAGS)).encode(), platform.machine().encode(),
                 _cpu_model()):
        key.update(part)
        key.update(b"\0")
    return key.hexdigest()[:16]


def library_path(compiler: str, version: str, flags: Sequence[str]) -> Path:
    """Where the library built with ``compiler`` and ``flags`` is cached."""
    return cache_root() / cache_key(compiler, version, flags) / LIBRARY_NAME


def build(compiler: str, version: str, flags: Sequence[str]) -> Path:
    """The cached library for ``flags``, compiled first if absent.

    Raises ``BuildError`` if the compile fails now, or failed in an earlier process (its
    marker is present), and ``BuildDirError`` if the build folder is unusable.
    """
    target = library_path(compiler, version, flags)
    if target.is_file():
        return target
    marker = target.with_name(FAILURE_NAME)
    if marker.is_file():
        raise BuildError(
            f"skipped: it failed before (compiler output in {marker}; delete that file to "
            "retry)"
        )
    _compile(compiler, flags, target)
    return target


def _compile(compiler: str, flags: Sequence[str], target: Path) -> None:
    """Compile the source into ``target`` atomically; a failure leaves its marker."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    except OSError as exc:
        raise BuildDirError(
            f"the build folder {cache_root()} is unusable ({exc}). Set SPARSELINEAR_BUILD_DIR "
            "to a writable folder"
        ) from exc
    os.close(fd)
    cmd = [compiler, *flags, *COMMON_FLAGS, str(SOURCE), "-o", tmp]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError) as exc:  # not remembered: may be transient
        os.unlink(tmp)
        raise BuildError(str(exc)) from exc
    if done.returncode != 0:
        os.unlink(tmp)
        output = (done.stdout + done.stderr).strip()[-2000:] or f"exit status {done.returncode}"
        _write_marker(target.with_name(FAILURE_NAME), " ".join(cmd) + "\n" + output + "\n")
        raise BuildError(output)
    os.replace(tmp, target)  # atomic: concurrent builders never see a half-written library


def _write_marker(marker: Path, text: str) -> None:
    """Write ``marker`` atomically; a folder that refuses it only costs a retry next time."""
    try:
        fd, tmp = tempfile.mkstemp(suffix=".txt", dir=marker.parent)
        with os.fdopen(fd, "w") as file:
            file.write(text)
        os.replace(tmp, marker)
    except OSError:
        pass
