"""The file line of each data row of a text file read in blocks, kept compactly: the lines that
hold no row (the header, blank and comment lines) are listed, every other line is the next row.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["LineMap"]


class LineMap:
    """Line numbers of the rows of a stretch of a text file.

    Rows are counted from 0; the stretch starts at line ``first_line`` and every line from there
    on holds the next row, except the lines listed in ``skipped`` (1-based, sorted, none before
    ``first_line``). Storage is one integer per skipped line, none per row.

    Args:
        first_line: the file line of the stretch's first line.
        skipped: the lines of the stretch that hold no row.

    Examples:
        >>> lines = LineMap(2, [4, 5])          # a header on line 1, lines 4 and 5 blank
        >>> [lines.line(i) for i in range(3)]
        [2, 3, 6]
    """

    __slots__ = ("_before", "first_line", "skipped")

    def __init__(self, first_line: int, skipped: Sequence[int] | np.ndarray = ()) -> None:
        self.first_line = int(first_line)
        self.skipped = np.asarray(skipped, dtype=np.int64).reshape(-1)
        # rows before each skipped line: row ``i`` lies past every skipped line with value <= i
        self._before = self.skipped - self.first_line - np.arange(self.skipped.size)

    def line(self, row: int) -> int:
        """The file line of row ``row``."""
        return self.first_line + int(row) + int(np.searchsorted(self._before, row, side="right"))

    @classmethod
    def join(cls, first_line: int, parts: Sequence[np.ndarray]) -> LineMap:
        """One map of consecutive stretches whose skipped lines are ``parts``, in file order."""
        return cls(first_line, np.concatenate(parts) if parts else ())
