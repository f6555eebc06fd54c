import io

import pytest
import torch

from sparselinear import Connectivity, SparseLinear
from sparselinear.errors import DataError, ShapeError, SparseLinearTypeError


@pytest.fixture
def named():
    return Connectivity.tril(3, 2).with_names(["y0", "y1", "y2"], ["x0", "x1"])


def test_lookups(named):
    assert named.out_names == ("y0", "y1", "y2") and named.in_names == ("x0", "x1")
    assert named.out_index("y2") == 2 and named.in_index("x1") == 1
    assert named.out_index(["y1", "y0"]).tolist() == [1, 0]
    assert named.in_index(("x1",)).dtype == torch.int64


def test_names_survive_transformations(named):
    t = named.T
    assert t.out_names == named.in_names and t.in_names == named.out_names
    assert named.to("cpu").out_names == named.out_names
    assert Connectivity(named).in_names == named.in_names
    assert named == Connectivity.tril(3, 2)  # names do not change pattern equality
    assert named.with_names(None, None).out_names is None


def test_lookup_errors(named):
    with pytest.raises(DataError, match=r"Unknown output name 'y11'\. Did you mean 'y1'"):
        named.out_index("y11")
    with pytest.raises(DataError, match="Unknown input name 'zzz'"):
        named.in_index(["x0", "zzz"])
    with pytest.raises(DataError, match="no output names"):
        Connectivity.tril(2, 2).out_index("a")


@pytest.mark.parametrize(
    "out_names,err,match",
    [
        (["a", "b"], ShapeError, "'out_names' must have 3 entries"),
        (["a", "b", "a"], DataError, "'out_names' must be distinct; 'a'"),
        (["a", " ", "c"], DataError, "'out_names' entry 1 is empty"),
        (["a", 2, "c"], SparseLinearTypeError, "entry 1 is int"),
        ("abc", SparseLinearTypeError, "sequence of strings"),
    ],
)
def test_name_validation(out_names, err, match):
    with pytest.raises(err, match=match):
        Connectivity.tril(3, 2).with_names(out_names, None)


def test_layer_keeps_names_through_state_dict(named):
    layer = SparseLinear(2, 3, named)
    assert layer.in_names == ("x0", "x1") and layer.out_names == ("y0", "y1", "y2")
    assert layer.connectivity.out_index("y1") == 1
    buffer = io.BytesIO()
    torch.save(layer.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    fresh = SparseLinear(2, 3, Connectivity.tril(3, 2))
    assert fresh.in_names is None
    fresh.load_state_dict(state)
    assert fresh.in_names == ("x0", "x1") and fresh.out_names == ("y0", "y1", "y2")
    assert torch.equal(fresh.weight, layer.weight)
    # a checkpoint without names leaves the layer's names in place
    layer.load_state_dict(SparseLinear(2, 3, Connectivity.tril(3, 2)).state_dict())
    assert layer.in_names == ("x0", "x1")


def test_layer_names_survive_to_device(named):
    layer = SparseLinear(2, 3, named, device="cpu").double()
    assert layer.connectivity.in_names == ("x0", "x1")


def test_checkpoints_without_names_still_load_strictly(named):
    layer = SparseLinear(2, 3, named)
    state = {k: v for k, v in layer.state_dict().items() if k != "_extra_state"}
    fresh = SparseLinear(2, 3, Connectivity.tril(3, 2))
    fresh.load_state_dict(state, strict=True)
    assert torch.equal(fresh.weight, layer.weight) and fresh.in_names is None
    model = torch.nn.Sequential(SparseLinear(2, 3, named))
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("_extra_state")}
    model.load_state_dict(state)
    assert model[0].in_names == ("x0", "x1")
