"""The ``sparselinear`` command line (also ``python -m sparselinear``).

* ``sparselinear profile`` — what a sparse layer costs to train, before building it; with
  ``--measure`` also what it actually peaks at; with ``--plot`` memory against density. The
  layer is a ``--shape`` with ``--nnz``/``--density``, or the pattern of an ``--adjacency`` file
  (read as in ``sparselinear.cli.adjacency``).
* ``sparselinear demo`` — a FlyWire-sized layer on this machine, then the C. elegans connectome.

Errors end the command with a one-line message on stderr and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

import torch

from .. import __version__
from ..errors import DataError, ShapeError, SparseLinearError
from .adjacency import ORIENTATION_HELP, add_adjacency_options, read_adjacency

__all__ = ["main"]

_DTYPES = ("float32", "float64", "float16", "bfloat16")
_PEAK_METHOD_HELP = (
    "how the CPU peak is measured: 'reset' the kernel's high-water mark (exact; /usr/bin/time "
    "and getrusage then report the peak since the reset, not the process's), 'sample' the "
    "resident size every millisecond from a thread (leaves them alone), or 'auto' (default: "
    "'reset' on Linux)"
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sparselinear",
        description="Memory profiling and demos for sparse linear layers.",
    )
    parser.add_argument("--version", action="version",
                        version=f"sparselinear {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{profile,demo}")

    p = sub.add_parser(
        "profile",
        help="estimate (and optionally measure) the memory of training a sparse layer",
        description="Estimate the memory of one training step of a sparse layer, beside its\n"
        "dense equivalent. Shapes are (outputs, inputs), as nn.Linear.weight.",
        epilog=ORIENTATION_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--shape", nargs=2, type=int, metavar=("OUT", "IN"),
                     help="layer shape (out_features in_features); with --nnz or --density")
    src.add_argument("--adjacency", metavar="FILE",
                     help="pattern file: an edge list (.csv, .tsv, .txt, .edges), a scipy .npz "
                     "or a Matrix Market .mtx; see 'reading --adjacency FILE' below")
    amount = p.add_mutually_exclusive_group()
    amount.add_argument("--nnz", type=int, help="number of edges (with --shape)")
    amount.add_argument("--density", type=float, help="fraction of edges (with --shape)")
    p.add_argument("--batch", type=int, default=32, help="batch size (default: 32)")
    opt = p.add_mutually_exclusive_group()
    opt.add_argument("--optimizer", choices=("sgd", "momentum", "adam", "adamw"), default=None,
                     help="optimizer (default: adam)")
    opt.add_argument("--optimizer-slots", type=int, metavar="K",
                     help="any other optimizer: K parameter-sized state tensors per parameter")
    p.add_argument("--dtype", choices=_DTYPES, default="float32", help="parameter dtype")
    p.add_argument("--no-bias", action="store_true", help="the layer has no bias")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--measure", action="store_true",
                   help="build the layer and run real training steps; print measured vs estimated")
    p.add_argument("--steps", type=int, default=3, help="training steps for --measure")
    p.add_argument("--peak-method", choices=("auto", "reset", "sample"), default="auto",
                   help=_PEAK_METHOD_HELP)
    p.add_argument("--seed", type=int, default=0, help="seed of the random pattern and data")
    p.add_argument("--plot", metavar="FILE.png", help="plot memory against density to FILE.png")
    p.add_argument("--json", action="store_true", help="print the estimate as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_adjacency_options(p)

    d = sub.add_parser(
        "demo",
        help="train a FlyWire-sized layer and the C. elegans connectome",
        description="Build a FlyWire-sized sparse layer (138,639 neurons, 15.1 M random edges), "
        "train it a few steps, compare its measured peak with the dense cost; then train the "
        "C. elegans connectome network.",
    )
    d.add_argument("--small", action="store_true", help="a 10x smaller layer (seconds)")
    d.add_argument("--steps", type=int, default=3, help="training steps of the large layer")
    d.add_argument("--seed", type=int, default=0, help="seed of the random pattern")
    d.add_argument("--plot", metavar="FILE.png", default="",
                   help="where to write the plot (default: sparselinear_memory.png, with "
                   "--small sparselinear_memory_small.png)")
    d.add_argument("--peak-method", choices=("auto", "reset", "sample"), default="auto",
                   help=_PEAK_METHOD_HELP)
    d.add_argument("--no-plot", action="store_true", help="do not write a plot")
    d.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def _profile(args: argparse.Namespace) -> int:
    from .. import memory
    from ..nn.linear import SparseLinear
    from ..pattern.connectivity import Connectivity
    from ..pattern.generators import resolve_nnz

    if args.plot:
        memory.check_plot_target(args.plot)
    if args.batch < 1:
        raise ShapeError(f"'--batch' must be a positive integer; got {args.batch}.")
    if args.steps < 1:
        raise ShapeError(f"'--steps' must be a positive integer; got {args.steps}.")
    if args.optimizer_slots is not None and args.optimizer_slots < 0:
        raise ShapeError(f"'--optimizer-slots' must be >= 0; got {args.optimizer_slots}.")
    if args.measure and args.optimizer_slots is not None:
        raise DataError("--measure runs a real optimizer: pass --optimizer instead of "
                        "--optimizer-slots.")
    optimizer = args.optimizer_slots if args.optimizer_slots is not None else (
        args.optimizer or "adam")
    dtype = getattr(torch, args.dtype)
    try:
        device = torch.device(args.device)
    except RuntimeError:
        raise DataError(
            f"'--device' must be a torch device such as cpu, cuda or cuda:1; got "
            f"{args.device!r}."
        ) from None
    if device.type not in ("cpu", "cuda"):
        raise DataError(
            f"'--device' must be cpu or cuda (the devices the estimate models); got "
            f"{args.device!r}."
        )
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DataError("--device cuda was requested but CUDA is not available here.")
    if args.measure:
        memory.follow_live_memory()
        memory.warm_up(device if device.type == "cuda" else None)
    baseline = memory.current_memory(device)

    connectivity = read_adjacency(args)
    if connectivity is not None:
        if args.nnz is not None or args.density is not None:
            raise DataError("--nnz/--density describe a --shape; a file already has its edges.")
        shape, nnz = connectivity.shape, connectivity.nnz
        est = memory.estimate(connectivity, batch_size=args.batch, optimizer=optimizer,
                              dtype=dtype, bias=not args.no_bias, device=device)
    else:
        if args.nnz is None and args.density is None:
            raise DataError("--shape needs --nnz N or --density D.")
        out_f, in_f = args.shape
        if out_f < 1 or in_f < 1:
            raise ShapeError(f"'--shape' must be two positive integers OUT IN; got {out_f} {in_f}.")
        shape = (out_f, in_f)
        nnz = resolve_nnz(out_f * in_f, args.nnz, args.density)
        est = memory.estimate(shape, nnz=nnz, batch_size=args.batch, optimizer=optimizer,
                              dtype=dtype, bias=not args.no_bias, device=device)

    print(json.dumps(est.to_dict(), indent=2) if args.json else est)
    available = memory.available_memory(device)
    fits = not available or est.total <= available
    if not args.json:
        where = "GPU" if device.type == "cuda" else "this machine"
        print(f"{where}: {memory.format_bytes(available)} available; the sparse layer "
              f"{'fits' if fits else 'does NOT fit'}, the dense one "
              f"{'fits' if est.dense_total <= available else 'does not'}.")

    measured = None
    if args.measure:
        build_extra = 0 if connectivity is not None else memory.BUILD_BYTES_PER_EDGE * nnz
        memory.check_fits(max(est.total, build_extra), device, "Training this layer")

        def build() -> torch.nn.Module:
            conn = connectivity if connectivity is not None else Connectivity.random(
                shape[0], shape[1], nnz=nnz, seed=args.seed)
            return SparseLinear(shape[1], shape[0], conn, bias=not args.no_bias,
                                device=device, dtype=dtype)

        run = memory.measure_training(
            build, batch_size=args.batch, in_features=shape[1], out_features=shape[0],
            optimizer=optimizer, steps=args.steps, progress=not args.no_progress,
            seed=args.seed, device=device, dtype=dtype, baseline=baseline,
            method=args.peak_method,
        )
        measured = run.measurement.increase
        ratio = measured / est.total if est.total else float("nan")
        print(f"measured peak: {memory.format_bytes(measured)} above the process baseline "
              f"(estimate {memory.format_bytes(est.total)}, measured/estimated = {ratio:.2f}); "
              f"{memory.format_seconds(run.seconds_per_step)} per step, "
              f"loss {run.losses[0]:.4g} -> {run.losses[-1]:.4g}")
    if args.plot:
        memory.plot_memory_vs_density(shape, args.plot, batch_size=args.batch,
                                      optimizer=optimizer, dtype=dtype, nnz=nnz,
                                      measured=measured)
        print(f"plot written to {args.plot}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error argparse already printed
        return int(exc.code or 0)
    try:
        if args.command == "profile":
            return _profile(args)
        from .demo import run_demo

        return run_demo(small=args.small, steps=args.steps, seed=args.seed,
                        plot=None if args.no_plot else args.plot,
                        progress=not args.no_progress, method=args.peak_method)
    except BrokenPipeError:
        # the reader went away (`sparselinear profile --json | head`): exit quietly, and keep
        # Python from reporting the pipe again when it flushes stdout at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (SparseLinearError, OSError, MemoryError) as exc:
        print(f"sparselinear: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("sparselinear: interrupted", file=sys.stderr)
        return 130
