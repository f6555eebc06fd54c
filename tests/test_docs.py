"""The README and the docs pages run as written: every Python block of a page, in order, in one
fresh namespace (a page's later blocks may use what its earlier ones defined); every shell block
(```bash, ```sh, ```console) in a subprocess, unless an HTML comment ``<!-- not run: why -->``
just above it says why not; their relative links lead to files that exist; and the figures they
derive from the library (the dense cost of the fly layer, what the pruned-layer example saves)
are the ones the library computes."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```python\n(.*?)^```", re.M | re.S)
SHELL_FENCE = re.compile(r"^```(bash|sh|shell|console)\n(.*?)^```", re.M | re.S)
ANY_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
NOT_RUN = re.compile(r"<!--\s*not run:\s*((?:(?!-->).)*?)\s*-->\Z", re.S)
LINK = re.compile(r"\]\(([^)#\s]+)(#[^)\s]*)?\)")
NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")


def python_blocks(page: Path) -> list[str]:
    return FENCE.findall(page.read_text())


@dataclass
class ShellBlock:
    page: Path
    line: int
    lang: str
    text: str
    not_run: str | None  # the reason given in <!-- not run: ... -->, or None: it runs

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT).as_posix()}:{self.line}"


def shell_blocks(page: Path) -> list[ShellBlock]:
    text = page.read_text()
    blocks = []
    for m in SHELL_FENCE.finditer(text):
        marker = NOT_RUN.search(text[: m.start()].rstrip())
        blocks.append(ShellBlock(page, text.count("\n", 0, m.start()) + 1, m.group(1),
                                 m.group(2), marker.group(1) if marker else None))
    return blocks


SHELL_BLOCKS = [b for page in PAGES for b in shell_blocks(page)]


@pytest.mark.parametrize("page", [p for p in PAGES if python_blocks(p)],
                         ids=lambda p: p.relative_to(ROOT).as_posix())
def test_python_blocks_run(page, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # anything a block writes lands here
    namespace: dict = {"__name__": "__main__"}
    for block in python_blocks(page):
        exec(compile(block, str(page), "exec"), namespace)


# ---------------------------------------------------------------------------- shell blocks
@pytest.fixture(scope="module")
def shell(tmp_path_factory):
    """A folder to run shell blocks in, holding the ``.venv`` that ``scripts/setup_env.sh``
    would have made: ``python``, ``sparselinear`` and ``activate`` that run this checkout with
    the test's interpreter. Returns ``run(command) -> CompletedProcess``."""
    where = tmp_path_factory.mktemp("shell")
    bin_dir = where / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    scripts = {
        "python": f'#!/bin/sh\nexec "{sys.executable}" "$@"\n',
        "python3": f'#!/bin/sh\nexec "{sys.executable}" "$@"\n',
        "sparselinear": f'#!/bin/sh\nexec "{sys.executable}" -m sparselinear "$@"\n',
    }
    for name, body in scripts.items():
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod((bin_dir / name).stat().st_mode | stat.S_IEXEC)
    (bin_dir / "activate").write_text(
        f'VIRTUAL_ENV="{where / ".venv"}"\nPATH="$VIRTUAL_ENV/bin:$PATH"\n'
        "export VIRTUAL_ENV PATH\n")
    env = {**os.environ, "MPLBACKEND": "Agg",
           "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": os.pathsep.join(
               p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}

    def run(command: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", "-e", "-o", "pipefail", "-c", command], cwd=where,
                              env=env, capture_output=True, text=True, timeout=300)

    return run


def console_steps(text: str) -> list[tuple[str, list[str]]]:
    """``(command, expected output lines)`` for each ``$ `` prompt of a console block."""
    steps: list[tuple[str, list[str]]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if line.startswith("$ "):
            command = line[2:]
            while command.endswith("\\") and i < len(lines):
                command = command[:-1] + lines[i]
                i += 1
            steps.append((command, []))
        elif steps and line.strip():
            steps[-1][1].append(line)
        elif line.strip():
            raise AssertionError(f"console block output before any '$ ' prompt: {line!r}")
    return steps


def output_pattern(line: str) -> re.Pattern:
    """A line of a transcript as a pattern: any number where it has one (sizes and times differ
    between machines), any run of spaces where it has one (column widths follow the numbers)."""
    parts = NUMBER.split(line.strip())
    literal = [r"\s+".join(re.escape(w) for w in re.split(r"\s+", p)) for p in parts]
    return re.compile(NUMBER.pattern.join(literal))


def assert_transcript(expected: list[str], output: str) -> None:
    actual = [line.strip() for line in output.splitlines()]
    at = 0
    for line in expected:
        pattern = output_pattern(line)
        while at < len(actual) and not pattern.fullmatch(actual[at]):
            at += 1
        assert at < len(actual), f"expected a line like {line!r} in:\n{output}"
        at += 1


@pytest.mark.parametrize("block", SHELL_BLOCKS, ids=lambda b: b.id)
def test_shell_blocks_run(block, shell):
    if block.not_run is not None:
        assert block.not_run, f"{block.id}: say why it is not run: <!-- not run: why -->"
        pytest.skip(f"{block.id} not run: {block.not_run}")
    if block.lang != "console":
        done = shell(block.text)
        assert done.returncode == 0, f"{block.id} failed:\n{done.stdout}\n{done.stderr}"
        assert "Traceback" not in done.stderr, done.stderr
        return
    steps = console_steps(block.text)
    assert steps, f"{block.id}: a console block without a '$ ' prompt"
    for command, expected in steps:
        done = shell(command)
        assert "Traceback" not in done.stderr, done.stderr
        assert_transcript(expected, done.stdout + done.stderr)


def test_every_shell_transcript_is_a_console_block():
    """A ```text block starting with ``$ `` is a shell session that would escape the test."""
    for page in PAGES:
        for lang, body in ANY_FENCE.findall(page.read_text()):
            if lang not in ("console", "bash", "sh", "shell"):
                assert not body.startswith("$ "), f"{page.name}: mark it ```console: {body[:60]}"


def test_the_shell_block_reader():
    page = ROOT / "README.md"
    blocks = shell_blocks(page)
    assert any(b.not_run for b in blocks) and any(b.not_run is None for b in blocks)
    assert console_steps("$ a \\\n  b\nout 1\n\n$ c\n") == [("a   b", ["out 1"]), ("c", [])]
    assert output_pattern("total (peak)     425.3 MB").fullmatch("total (peak)  1,000.0 MB")
    assert not output_pattern("total (peak) 425.3 MB").fullmatch("total 425.3 MB")


# ---------------------------------------------------------------------------- links
@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(page):
    broken = []
    for target, _ in LINK.findall(page.read_text()):
        if "://" in target or target.startswith("mailto:"):
            continue
        if not (page.parent / target).exists():
            broken.append(target)
    assert broken == []


def test_the_block_extractor_finds_blocks():
    assert python_blocks(ROOT / "README.md")


# ---------------------------------------------------------------------------- derived figures
def _flat(text: str) -> str:
    return " ".join(text.split())


def test_dense_figures_of_the_fly_layer_come_from_the_estimate():
    """The README quotes the demo's dense figures as the demo computes them, and every GB figure
    it gives for a dense layer is one of them."""
    from sparselinear.cli.demo import dense_figures, describe_dense, fly_estimate
    from sparselinear.memory import format_bytes

    est = fly_estimate()
    readme = _flat((ROOT / "README.md").read_text())
    assert describe_dense(est) in readme
    allowed = {format_bytes(v) for v in dense_figures(est).values()}
    for clause in re.split(r"[.;](?=\s)", readme):
        if "dense" not in clause:
            continue
        for figure in re.findall(r"\d[\d,]*(?:\.\d+)? (?:GB|TB|GiB)", clause):
            assert figure in allowed, f"{figure} is not one of the estimate's {allowed}: {clause}"


def test_the_demo_writes_no_figure_of_its_own():
    """The demo's source states no dense figure but the ones its doctest reads from the
    estimate (the doctest keeps those equal to the estimate)."""
    from sparselinear.cli.demo import dense_figures, fly_estimate
    from sparselinear.memory import format_bytes

    allowed = {format_bytes(v) for v in dense_figures(fly_estimate()).values()}
    source = (ROOT / "sparselinear" / "cli" / "demo.py").read_text()
    assert set(re.findall(r"\d[\d,]*(?:\.\d+)? (?:GB|TB|GiB)", source)) <= allowed


def test_pruned_linear_figures_match_the_example(capsys):
    """What the README and the Connectivity page say examples/pruned_linear.py saves is what it
    prints with its defaults."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("example_pruned_linear",
                                                  ROOT / "examples" / "pruned_linear.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    result = example.main([])
    out = capsys.readouterr().out
    vs_dense = f"{result['dense_bytes'] / result['sparse_bytes']:.1f}x"
    vs_pruned = f"{result['pruned_bytes'] / result['sparse_bytes']:.1f}x"
    assert f"({vs_dense} smaller than dense, {vs_pruned} smaller than pruned)" in out
    for page in (ROOT / "README.md", ROOT / "docs" / "connectivity.md"):
        text = _flat(page.read_text())
        i = text.index("examples/pruned_linear.py")
        claim = text[i: i + 400]
        assert "2,048 × 4,096" in claim and "95 %" in claim, claim
        assert f"{vs_dense} less" in claim and f"{vs_pruned} less" in claim, claim
