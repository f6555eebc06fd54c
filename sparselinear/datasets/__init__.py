"""Connectomes shipped with the package, loaded as patterns in one line (see ``data/README.md``
in this folder for their sources and licences), and presets for the tables that connectome
projects publish (FlyWire, neuPrint)."""

from .celegans import DATA_DIR, celegans_path, load_celegans
from .connectomes import FLYWIRE_THRESHOLD, load_flywire, load_neuprint

__all__ = ["DATA_DIR", "FLYWIRE_THRESHOLD", "celegans_path", "load_celegans", "load_flywire",
           "load_neuprint"]
