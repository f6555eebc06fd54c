"""Structured sparse layers (they live in ``sparselinear.nn.structured``)."""

from .nn.structured import PositiveDefiniteLinear, TriangularLinear, triangular_pattern

__all__ = ["PositiveDefiniteLinear", "TriangularLinear", "triangular_pattern"]
