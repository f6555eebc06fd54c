"""The ``sparselinear`` command line (also ``python -m sparselinear``): ``profile`` (memory of a
layer before building it, from a shape or a pattern file) and ``demo`` (a fly-sized layer and a
C. elegans model, trained and measured)."""

from .profile import main

__all__ = ["main"]
