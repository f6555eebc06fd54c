"""Byte counts and durations written for people."""

from __future__ import annotations

__all__ = ["format_bytes", "format_seconds"]


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


def format_seconds(s: float) -> str:
    """A duration with about three significant digits, in milliseconds (or microseconds) below a
    second, so that a short step never reads ``'0.00 s'``.

    Examples:
        >>> format_seconds(0.2083), format_seconds(0.0042), format_seconds(3.14159)
        ('208 ms', '4.20 ms', '3.14 s')
        >>> format_seconds(0.0000004), format_seconds(125.4)
        ('< 1 µs', '125 s')
    """
    s = float(s)
    for scale, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs")):
        if s >= scale:
            v = s / scale
            return f"{v:.{0 if v >= 100 else 1 if v >= 10 else 2}f} {unit}"
    return "< 1 µs"
