"""A progress bar for loads that take more than about a second (tqdm): it appears only once a
load has run that long, so small reads print nothing."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

__all__ = ["Progress"]

#: Seconds a load runs before its progress bar appears.
DELAY = 1.0
_STAGES = ("read", "nodes", "edges")


class Progress:
    """Stages of one load (read, nodes, edges) on a tqdm bar shown after ``DELAY``
    seconds; ``enabled=False`` never shows it, ``None`` shows it for loads that long."""

    def __init__(self, enabled: bool | None, path: Path | None) -> None:
        self.enabled = enabled is not False
        self.name = path.name if path is not None else "edges"
        self.start = time.perf_counter()
        self.bar: Any = None

    def __enter__(self) -> Progress:
        return self

    def step(self, stage: str) -> None:
        """Mark ``stage`` as done."""
        if not self.enabled:
            return
        if self.bar is None and time.perf_counter() - self.start > DELAY:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=len(_STAGES), desc=f"reading {self.name}", leave=False,
                            unit="stage")
            self.bar.update(_STAGES.index(stage))
        if self.bar is not None:
            self.bar.set_postfix_str(stage)
            self.bar.update(1)

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.close()
