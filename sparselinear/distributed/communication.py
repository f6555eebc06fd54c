"""What a row-sharded layer sends per training step, before anything runs.

The formulas are those [`Communicator`][sparselinear.distributed.Communicator] counts while running:
ring-algorithm volumes per rank, with shards padded to the widest rank's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..errors import ShapeError, check_choice

__all__ = ["step_volume"]


def _even(n: int, w: int) -> list[int]:
    return [(r + 1) * n // w - r * n // w for r in range(w)]


def step_volume(
    batch: int,
    in_features: int,
    out_features: int,
    world_size: int,
    *,
    itemsize: int = 4,
    input: str = "replicated",
    input_requires_grad: bool = True,
    weight_requires_grad: bool = True,
    gather_output: bool = False,
    input_sizes: Sequence[int] | None = None,
    output_sizes: Sequence[int] | None = None,
    rank: int | None = None,
) -> dict[str, int]:
    """Bytes one rank sends in one training step of a sharded layer.

    A replicated input costs the all-reduce of its gradient (``2 (W - 1) / W`` of it). A
    row-sharded input is multiplied piece by piece around a ring (``ring``): rank ``p``
    passes on every shard but the next rank's, ``N - n_{p+1}`` features per batch row, forward
    and again backward for the weight gradient, and the input gradient's partial sums of every
    shard but its own, ``N - n_p``: the volumes of an all-gather forward and of an all-gather
    and a reduce-scatter backward, without padding.

    Args:
        batch: rows of the flattened input.
        in_features: the layer's number of inputs.
        out_features: the layer's number of outputs.
        world_size: ranks.
        itemsize: bytes per activation value. Default: 4 (float32).
        input: ``"replicated"`` or ``"sharded"`` (the output of a previous sharded layer).
        input_requires_grad: whether the input gradient is computed (and reduced).
        weight_requires_grad: whether the weight gradient is computed (a sharded input goes
            round again for it).
        gather_output: whether the full output is all-gathered.
        input_sizes: input features per rank (the input partition's ``sizes()``); default:
            as even as possible.
        output_sizes: output features per rank (the output partition's ``sizes()``); default:
            as even as possible.
        rank: the rank to count for; default: the rank that sends most.

    Returns:
        ``{"forward": ..., "backward": ..., "total": ...}`` in bytes.

    Examples:
        >>> step_volume(32, 1000, 1000, 4, input="sharded")   # 3/4 of the input, three times
        {'forward': 96000, 'backward': 192000, 'total': 288000}
        >>> step_volume(32, 1000, 1000, 1)["total"]
        0
    """
    check_choice(input, ("replicated", "sharded"), "input")
    if world_size < 1 or batch < 0:
        raise ShapeError(f"'world_size' must be >= 1 and 'batch' >= 0; got {world_size}, {batch}.")
    w = world_size
    if rank is None:
        volumes = [step_volume(batch, in_features, out_features, w, itemsize=itemsize,
                               input=input, input_requires_grad=input_requires_grad,
                               weight_requires_grad=weight_requires_grad,
                               gather_output=gather_output, input_sizes=input_sizes,
                               output_sizes=output_sizes, rank=r) for r in range(w)]
        return max(volumes, key=lambda v: (v["total"], v["forward"]))
    sizes = list(input_sizes) if input_sizes else _even(in_features, w)
    widest_out = max(output_sizes) if output_sizes else math.ceil(out_features / w)
    row = batch * itemsize
    forward = backward = 0
    if w > 1:
        if input == "sharded":
            passed = (in_features - sizes[(rank + 1) % w]) * row
            forward += passed
            backward += passed if weight_requires_grad else 0
            backward += (in_features - sizes[rank]) * row if input_requires_grad else 0
        elif input_requires_grad:
            backward += 2 * (w - 1) * batch * in_features * itemsize // w
        if gather_output:
            forward += (w - 1) * batch * widest_out * itemsize
    return {"forward": forward, "backward": backward, "total": forward + backward}
