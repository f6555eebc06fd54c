"""MkDocs hooks of the documentation site (``mkdocs.yml``: ``hooks``).

* Links from a docs page to a repository file outside ``docs/`` (``../BENCHMARKS.md``,
  ``../examples/...``) work on GitHub and in the test of the docs pages, but the site holds only
  ``docs/``: in the site they become the file's path, linked to ``repo_url`` when one is
  configured. A link to a file that does not exist is reported (an error under ``--strict``).
* A line ``<!-- sparselinear-help: ARGS -->`` is replaced by the output of
  ``sparselinear ARGS --help``, so the command-line reference is the parser's own text.
* ``CommentDocstrings`` (a griffe extension, ``mkdocs.yml``: ``extensions``): a module or class
  attribute documented by ``#:`` comment lines right above it, as the tuning constants of
  ``sparselinear.kernels`` are, gets those lines as its docstring.

Nothing here reaches the network.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import posixpath
import re
import shlex
from pathlib import Path

import griffe

log = logging.getLogger("mkdocs.hooks.sparselinear")

LINK = re.compile(r"\[([^\]]+)\]\(([^)#\s]+)(#[^)\s]*)?\)")
HELP = re.compile(r"^<!-- sparselinear-help:(.*?)-->$", re.M)


def _outside_links(markdown: str, page, config) -> str:
    docs_dir = Path(config.docs_dir).resolve()
    root = docs_dir.parent
    page_dir = (docs_dir / page.file.src_uri).parent

    def replace(m: re.Match) -> str:
        text, target, anchor = m.group(1), m.group(2), m.group(3) or ""
        if "://" in target or target.startswith("mailto:"):
            return m.group(0)
        path = (page_dir / target).resolve()
        if path.is_relative_to(docs_dir):
            return m.group(0)  # mkdocs checks these itself
        if not path.is_relative_to(root) or not path.exists():
            log.warning("Doc file '%s' links to '%s', which does not exist", page.file.src_uri,
                        target)
            return m.group(0)
        rel = posixpath.join(*path.relative_to(root).parts)
        shown = text if text.strip("`") == rel else f"{text} (`{rel}`)"
        if config.repo_url:
            return f"[{shown}]({config.repo_url.rstrip('/')}/blob/HEAD/{rel}{anchor})"
        return shown

    return LINK.sub(replace, markdown)


def _help(args: str) -> str:
    from sparselinear.cli import main

    out = io.StringIO()
    env = {"COLUMNS": "80", "NO_COLOR": "1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        with contextlib.redirect_stdout(out):
            main([*shlex.split(args), "--help"])
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return out.getvalue().rstrip()


def on_page_markdown(markdown: str, page, config, files) -> str:
    markdown = _outside_links(markdown, page, config)
    return HELP.sub(lambda m: f"```text\n{_help(m.group(1).strip())}\n```", markdown)


class CommentDocstrings(griffe.Extension):
    """Docstrings of attributes from the ``#:`` comment lines right above them."""

    def on_attribute_instance(self, *, node, attr, agent, **kwargs) -> None:
        if attr.docstring is not None or attr.lineno is None:
            return
        try:
            lines = attr.lines_collection[attr.filepath]
        except (KeyError, AttributeError):
            return
        comment: list[str] = []
        i = attr.lineno - 2  # the line above, 0-based
        while i >= 0 and lines[i].lstrip().startswith("#:"):
            comment.insert(0, lines[i].lstrip()[2:].removeprefix(" "))
            i -= 1
        if comment:
            attr.docstring = griffe.Docstring("\n".join(comment), lineno=i + 2,
                                              endlineno=attr.lineno - 1, parent=attr)
