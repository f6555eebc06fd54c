"""Byte counts written for people."""

from __future__ import annotations

__all__ = ["format_bytes"]


def format_bytes(n: float) -> str:
    """``n`` bytes in decimal units, e.g. ``'76.9 GB'``.

    Examples:
        >>> format_bytes(138_639 ** 2 * 4)
        '76.9 GB'
        >>> format_bytes(512)
        '512 B'
    """
    n = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")
