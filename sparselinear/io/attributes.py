"""Per-node attributes carried by a [`Connectivity`][sparselinear.Connectivity]: columns of a neuron
table (cell type, side, neurotransmitter, ...) aligned with the node order of one side,
validated and kept read-only.

Attributes are a read-only mapping ``{column name: numpy array}``, one entry per node; a side
without attributes has ``None``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import numpy as np
import torch

from ..errors import ShapeError, SparseLinearTypeError, describe

__all__ = ["Attributes", "check_attributes", "merge_attributes"]

Attributes = Mapping[str, np.ndarray]


def _column(values: Any, size: int, role: str, key: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    if isinstance(values, str) or not hasattr(values, "__len__"):
        raise SparseLinearTypeError(
            f"'{role}' column {key!r} must be a sequence of values, one per node; got "
            f"{describe(values)}."
        )
    if isinstance(values, np.ndarray):
        array = values
    else:
        array = np.asarray(values.tolist() if hasattr(values, "tolist") else list(values))
        if array.dtype.kind in "US":
            array = array.astype(object)
    if array.ndim != 1 or array.shape[0] != size:
        raise ShapeError(
            f"'{role}' column {key!r} must hold {size} values, one per node; got shape "
            f"{tuple(array.shape)}."
        )
    array = np.array(array, copy=True)
    array.flags.writeable = False
    return array


def check_attributes(attributes: Any, size: int, role: str) -> Attributes | None:
    """``attributes`` (a mapping ``{name: values}``, each with ``size`` values) as a read-only
    mapping of read-only numpy arrays; ``None`` stays ``None``.

    Examples:
        >>> a = check_attributes({"nt_type": ["ACH", "GABA"]}, 2, "in_attributes")
        >>> a["nt_type"].tolist(), a["nt_type"].flags.writeable
        (['ACH', 'GABA'], False)
    """
    if attributes is None:
        return None
    if not isinstance(attributes, Mapping):
        raise SparseLinearTypeError(
            f"'{role}' must be a mapping {{column name: values, one per node}} or None; got "
            f"{describe(attributes)}."
        )
    bad = next((k for k in attributes if not isinstance(k, str)), None)
    if bad is not None:
        raise SparseLinearTypeError(f"'{role}' column names must be strings; got {bad!r}.")
    return MappingProxyType({k: _column(v, size, role, k) for k, v in attributes.items()})


def merge_attributes(a: Attributes | None, b: Attributes | None) -> Attributes | None:
    """The attributes of a set operation's result: the left operand's, else the right's."""
    return a if a is not None else b
