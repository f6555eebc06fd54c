"""What a row-sharded layer sends per training step, before anything runs.

The formulas are those [`Communicator`][sparselinear.distributed.Communicator] counts while running:
ring-algorithm volumes per rank, with shards padded to the widest rank's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..errors import ShapeError, check_choice

__all__ = ["step_volume"]


def step_volume(
    batch: int,
    in_features: int,
    out_features: int,
    world_size: int,
    *,
    itemsize: int = 4,
    input: str = "replicated",
    input_requires_grad: bool = True,
    gather_output: bool = False,
    input_sizes: Sequence[int] | None = None,
    output_sizes: Sequence[int] | None = None,
) -> dict[str, int]:
    """Bytes one rank sends in one training step of a sharded layer.

    Args:
        batch: rows of the flattened input.
        in_features: the layer's number of inputs.
        out_features: the layer's number of outputs.
        world_size: ranks.
        itemsize: bytes per activation value. Default: 4 (float32).
        input: ``"replicated"`` or ``"sharded"`` (the output of a previous sharded layer).
        input_requires_grad: whether the input gradient is computed (and reduced).
        gather_output: whether the full output is all-gathered.
        input_sizes: input features per rank (the partition's ``sizes()``); default: as even
            as possible.
        output_sizes: output features per rank, likewise.

    Returns:
        ``{"forward": ..., "backward": ..., "total": ...}`` in bytes.

    Examples:
        >>> step_volume(32, 1000, 1000, 4, input="sharded")   # all-gather + reduce-scatter
        {'forward': 96000, 'backward': 96000, 'total': 192000}
        >>> step_volume(32, 1000, 1000, 1)["total"]
        0
    """
    check_choice(input, ("replicated", "sharded"), "input")
    if world_size < 1 or batch < 0:
        raise ShapeError(f"'world_size' must be >= 1 and 'batch' >= 0; got {world_size}, {batch}.")
    w = world_size
    widest_in = max(input_sizes) if input_sizes else math.ceil(in_features / w)
    widest_out = max(output_sizes) if output_sizes else math.ceil(out_features / w)
    forward = backward = 0
    if w > 1:
        if input == "sharded":
            forward += (w - 1) * batch * widest_in * itemsize
            if input_requires_grad:
                backward += (w - 1) * batch * widest_in * itemsize
        elif input_requires_grad:
            backward += 2 * (w - 1) * batch * in_features * itemsize // w
        if gather_output:
            forward += (w - 1) * batch * widest_out * itemsize
    return {"forward": forward, "backward": backward, "total": forward + backward}
