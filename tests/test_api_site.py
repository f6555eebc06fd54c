"""The API reference site (``mkdocs.yml``, ``docs/api/``) builds from the docstrings with
``mkdocs build --strict``: no broken cross-reference, no link between pages that leads nowhere, no
documented parameter that is not in the signature; and every public name has its entry.

Cross-references in docstrings are mkdocs-autorefs links to the public path,
``[`SparseLinear`][sparselinear.SparseLinear]``; names the site does not document are plain
``literals``. Sphinx roles (``:class:`...```) would show as raw text, so none may remain."""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPHINX_ROLE = re.compile(r":(class|func|meth|attr|data|mod|exc|obj|math|ref):`")
# Namespaces whose __all__ the site documents; modules among the names are covered by their own.
NAMESPACES = ["sparselinear", "sparselinear.functional", "sparselinear.structured",
              "sparselinear.nn", "sparselinear.pattern", "sparselinear.io",
              "sparselinear.datasets", "sparselinear.constraints", "sparselinear.memory",
              "sparselinear.distributed", "sparselinear.errors", "sparselinear.cli",
              "sparselinear.kernels", "sparselinear.ops"]


def _docs_tools_missing() -> str | None:
    for module in ("mkdocs", "mkdocstrings", "mkdocstrings_handlers.python"):
        try:
            if importlib.util.find_spec(module) is None:
                raise ImportError(module)
        except ImportError:
            return (f"the docs tools are not installed ({module}): "
                    "pip install -e '.[docs]' (the 'test' extra includes them)")
    return None


def test_docstrings_use_no_sphinx_roles():
    found = [f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
             for path in sorted((ROOT / "sparselinear").rglob("*.py"))
             for n, line in enumerate(path.read_text().splitlines(), 1)
             if SPHINX_ROLE.search(line)]
    assert found == []


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    if (reason := _docs_tools_missing()) is not None:
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    return out


def test_api_site_builds_strict(site):
    for page in ("index.html", "api/index.html", "api/nn/index.html", "api/cli/index.html"):
        assert (site / page).is_file(), page
    cli = (site / "api" / "cli" / "index.html").read_text()
    assert "usage: sparselinear profile" in cli  # the parser's own --help text


def test_every_public_name_has_an_entry(site):
    ids: set[str] = set()
    for page in (site / "api").rglob("*.html"):
        ids |= set(re.findall(r'id="(sparselinear[\w.]*)"', page.read_text()))
    spaces = {name: importlib.import_module(name) for name in NAMESPACES}
    missing = []
    for name, ns in spaces.items():
        for member in ns.__all__:
            obj = getattr(ns, member)
            if isinstance(obj, type(sys)):
                continue
            # documented under any public path of the same object
            if not any(f"{other}.{member}" in ids and getattr(o, member, None) is obj
                       for other, o in spaces.items()):
                missing.append(f"{name}.{member}")
    assert missing == [], "public names without an entry on the site (give them a docstring, " \
        "or a `#:` comment above a constant)"
