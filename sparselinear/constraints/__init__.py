"""Constraints on the values of a sparse layer's weight, as parametrizations.

Each constraint is a small module with ``forward(u) -> weight`` and ``right_inverse(weight) -> u``,
as ``torch.nn.utils.parametrize`` expects. It maps an unconstrained free parameter ``u`` (one
value per edge, what the optimizer updates) onto the allowed set with a smooth map: softplus or
exp for signs, a sigmoid for bounds. Nothing is clamped, so the constraint holds exactly after
every optimizer step, whatever the learning rate, and gradients never vanish at a boundary.

Attach one with [`constrain`][sparselinear.constraints.constrain] (or
``parametrize.register_parametrization(layer, "weight", constraint)``); ``layer.weight`` then
returns the constrained values and the free parameter is ``layer.parametrizations.weight.original``.
"""

from .attach import constrain
from .bounded import Bounded
from .signed import Dale, Diagonal, Sign

__all__ = ["Bounded", "Dale", "Diagonal", "Sign", "constrain"]
