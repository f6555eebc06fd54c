import inspect

import pytest

from sparselinear import errors
from sparselinear.errors import MAX_LISTED, DataError, SparseLinearError, check_choice, listing

BUILTINS = (ValueError, TypeError, MemoryError, ImportError)
EXPORTED = [getattr(errors, name) for name in errors.__all__]
EXCEPTIONS = [obj for obj in EXPORTED if isinstance(obj, type) and issubclass(obj, BaseException)]


def test_all_names_exist_once():
    assert len(set(errors.__all__)) == len(errors.__all__)
    assert all(hasattr(errors, name) for name in errors.__all__)


@pytest.mark.parametrize("cls", EXCEPTIONS, ids=lambda c: c.__name__)
def test_every_exception_derives_from_the_base_and_a_builtin(cls):
    assert issubclass(cls, SparseLinearError)
    if cls is not SparseLinearError:
        assert issubclass(cls, BUILTINS), f"{cls.__name__} derives from no builtin error"


def test_every_exception_defined_here_is_exported():
    defined = {
        name for name, obj in vars(errors).items()
        if inspect.isclass(obj) and issubclass(obj, BaseException)
        and obj.__module__ == errors.__name__
    }
    assert defined <= set(errors.__all__), sorted(defined - set(errors.__all__))
    assert {cls.__name__ for cls in EXCEPTIONS} == defined


def test_check_choice_returns_the_value():
    assert check_choice("max", ("sum", "max"), "duplicates") == "max"


@pytest.mark.parametrize("value", ["mean", None, 3, ("sum",)])
def test_check_choice_raises_a_value_error_naming_the_argument_and_choices(value):
    with pytest.raises(DataError, match=r"^'duplicates' must be one of 'sum', 'max'; got "
                       + rf"{value!r}\. Pick one\.$".replace("(", r"\(").replace(")", r"\)")):
        check_choice(value, ("sum", "max"), "duplicates", "Pick one.")
    with pytest.raises(ValueError):
        check_choice(value, ("sum", "max"), "duplicates")


def test_check_choice_error_class():
    with pytest.raises(errors.ShapeError, match="'layout' must be one of 'a'"):
        check_choice("b", ("a",), "layout", error=errors.ShapeError)


def test_listing_limits_to_max_listed():
    assert listing([]) == ""
    assert listing(range(MAX_LISTED)) == ", ".join(map(str, range(MAX_LISTED)))
    many = listing(range(MAX_LISTED + 7))
    assert many == ", ".join(map(str, range(MAX_LISTED))) + " and 7 more"
    # only the first items are given; the total counts the rest
    assert listing(["a", "b"], total=40, sep="; ") == "a; b and 38 more"
    assert listing(list("abcdefg")[:MAX_LISTED], total=40, sep="; ").endswith(
        f"; e and {40 - MAX_LISTED} more")
