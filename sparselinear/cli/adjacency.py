"""The ``--adjacency FILE`` options of the command line, and the reading of that file through the
library's readers: edge lists through ``Connectivity.from_edgelist``, scipy ``.npz`` and Matrix
Market ``.mtx`` matrices through ``scipy_to_pattern``."""

from __future__ import annotations

import argparse

from ..errors import DataError
from ..io.adjacency import EDGE_LIST_SUFFIXES, adjacency_kind, read_matrix
from ..io.edgelist import DUPLICATES
from ..nn.convert import ORIENTATIONS, scipy_to_pattern
from ..pattern.connectivity import Connectivity

__all__ = ["ORIENTATION_HELP", "add_adjacency_options", "read_adjacency"]

ORIENTATION_HELP = f"""\
reading --adjacency FILE:
  edge lists ({", ".join(EDGE_LIST_SUFFIXES)}; text ones optionally
  .gz/.bz2/.xz/.zip) are read as the Python API
  reads them (Connectivity.from_edgelist): a header row names the columns (--no-header
  if there is none); each row is an edge source -> target that feeds input `source`
  into output `target`. For a connectome: --source pre --target post. The layer is
  N x N over the distinct node names (sorted, as numbers when all are integers), or
  targets x sources with --bipartite. Integers in the file are node names, not
  positions: a node in no edge is not counted.
  .npz / .mtx matrices have the outputs in their rows (--orientation target_source,
  as nn.Linear.weight), or in their columns with --orientation source_target.

changed: earlier versions read a two-column file as `output,input` integer positions
  and took --transpose. Now the first column is the source (an input): pass
  --source 1 --target 0 --bipartite for the old reading of such a file, and
  --orientation source_target where a matrix needed --transpose.
"""

_EDGE_LIST_OPTIONS = ("source", "target", "weight", "no_header", "where", "duplicates",
                      "bipartite")


def _column(text: str) -> str | int:
    """A column name, or a 0-based position when ``text`` is a plain number."""
    return int(text) if text.isascii() and text.isdigit() else text


def _condition(text: str) -> tuple[str | int, str]:
    column, sep, value = text.partition("=")
    if not sep or not column:
        raise argparse.ArgumentTypeError(
            f"expected COL=VALUE, e.g. --where type=chemical; got {text!r}"
        )
    return _column(column.strip()), value.strip()


def add_adjacency_options(parser: argparse.ArgumentParser) -> None:
    """Add the options that say how to read ``--adjacency FILE`` to ``parser``."""
    edges = parser.add_argument_group("edge-list files (--adjacency FILE.csv ...)")
    edges.add_argument("--source", type=_column, metavar="COL",
                       help="column of the edge sources (inputs): a name from the header, or a "
                       "0-based position (default: the first column)")
    edges.add_argument("--target", type=_column, metavar="COL",
                       help="column of the edge targets (outputs) (default: the second column)")
    edges.add_argument("--weight", type=_column, metavar="COL",
                       help="column of numeric edge weights (e.g. syn_count): read and checked "
                       "(finite numbers), repeats merged by --duplicates")
    edges.add_argument("--no-header", action="store_true",
                       help="the file has no header row; name columns by position")
    edges.add_argument("--where", type=_condition, action="append", metavar="COL=VALUE",
                       help="keep only rows whose column COL holds VALUE; repeat it: values of "
                       "one column are alternatives, different columns must all match")
    edges.add_argument("--duplicates", choices=DUPLICATES, default=None,
                       help="an edge listed more than once (e.g. two synapse types between the "
                       "same neurons) is one edge of the pattern with 'sum', 'max' or 'first' "
                       "(alike here: no weights are read); 'error' refuses it (default: sum)")
    edges.add_argument("--bipartite", action="store_true",
                       help="sources and targets are separate node sets: the layer is targets "
                       "x sources (default: one node set, N x N)")
    matrices = parser.add_argument_group("matrix files (--adjacency FILE.npz or FILE.mtx)")
    matrices.add_argument("--orientation", choices=tuple(ORIENTATIONS), default=None,
                          help="target_source (alias out_in; default): rows are outputs, as "
                          "nn.Linear.weight; source_target (alias in_out): matrix[i, j] is an "
                          "edge from input i to output j")


def _given(args: argparse.Namespace, names: tuple[str, ...]) -> list[str]:
    return ["--" + n.replace("_", "-") for n in names
            if getattr(args, n) is not None and getattr(args, n) is not False]


def read_adjacency(args: argparse.Namespace) -> Connectivity | None:
    """The pattern of ``args.adjacency``, read with the options of ``add_adjacency_options``
    (``None`` without ``--adjacency``).

    Raises:
        DataError: the file cannot be read, or an option does not apply to its kind.
    """
    edge_options = _given(args, _EDGE_LIST_OPTIONS)
    if not args.adjacency:
        given = edge_options + _given(args, ("orientation",))
        if given:
            raise DataError(f"{', '.join(given)} describe an --adjacency file; none was given.")
        return None
    path = args.adjacency
    if adjacency_kind(path) == "matrix":
        if edge_options:
            raise DataError(
                f"{', '.join(edge_options)} read edge lists; '{path}' is a matrix. Say which "
                "axis holds the outputs with --orientation."
            )
        orientation = args.orientation or "target_source"
        return scipy_to_pattern(read_matrix(path), orientation=orientation)[0]
    if args.orientation is not None:
        raise DataError(
            f"--orientation applies to .npz/.mtx matrices; '{path}' is an edge list, whose "
            "orientation is --source (inputs) and --target (outputs)."
        )
    where: dict[str | int, list[str]] = {}
    for column, value in args.where or ():
        where.setdefault(column, []).append(value)
    result = Connectivity.from_edgelist(
        path, source=args.source, target=args.target, weight=args.weight,
        header=not args.no_header, where=where or None, duplicates=args.duplicates or "sum",
        shared_nodes=not args.bipartite,
    )
    return result[0] if isinstance(result, tuple) else result
