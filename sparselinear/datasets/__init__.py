"""Connectomes shipped with the project, loaded as patterns in one line (see ``data/README.md``
for their sources and licences)."""

from .celegans import DATA_DIR, celegans_path, load_celegans

__all__ = ["DATA_DIR", "celegans_path", "load_celegans"]
