"""The ``sparselinear`` command line: ``profile`` (memory of a layer before building it) and
``demo`` (a fly-sized layer and a C. elegans model, trained and measured)."""

from .profile import main

__all__ = ["main"]
