"""fedmist.strategy.params: env strings become a strategy's typed constructor arguments, or one-line errors."""

from __future__ import annotations

import math

import pytest

from fedmist.strategy.params import coerce, lower_keys, select_parameters, strategy_parameters


class Base:
    def __init__(self, mu: float = 0.0, rounds: int = 1, name: str = "x", fn: object = None) -> None:
        pass


class Child(Base):
    def __init__(self, strict: bool = False, momentum: float | None = None, mu: int = 3, **kwargs) -> None:
        super().__init__(**kwargs)


def test_parameters_come_from_every_constructor_in_the_mro_child_first() -> None:
    assert strategy_parameters(Child) == {"strict": (bool, False), "momentum": (float, True), "mu": (int, False),
                                          "rounds": (int, False), "name": (str, False)}


@pytest.mark.parametrize("value, target, expected", [
    ("2", int, 2), (" 2.0 ", int, 2), (3, float, 3.0), ("1e-3", float, 0.001), ("Yes", bool, True),
    ("off", bool, False), (True, bool, True), (5, str, "5"),
])
def test_values_are_coerced_to_their_type(value, target, expected) -> None:
    result = coerce("p", value, target)
    assert result == expected and type(result) is target


@pytest.mark.parametrize("value, target, message", [
    ("2.5", int, "strategy parameter p='2.5': expected an int"),
    ("abc", float, "strategy parameter p='abc': expected a float"),
    (True, float, "strategy parameter p=True: expected a float"),
    ("maybe", bool, "strategy parameter p='maybe': expected a bool"),
    ("inf", float, "strategy parameter p='inf': expected a float (finite)"),
    (None, int, "strategy parameter p=None: expected an int"),
])
def test_bad_values_name_the_parameter_and_the_type(value, target, message) -> None:
    with pytest.raises(ValueError) as info:
        coerce("p", value, target)
    assert str(info.value) == message


def test_none_is_allowed_only_for_optional_parameters() -> None:
    assert coerce("p", None, float, optional=True) is None


def test_keys_are_case_folded_and_conflicting_spellings_fail() -> None:
    assert lower_keys({"MU": "1", "mu": "1", "Rounds": 2}) == {"mu": "1", "rounds": 2}
    with pytest.raises(ValueError) as info:
        lower_keys({"MU": "1", "mu": "2"})
    assert str(info.value) == "parameter mu is set twice with different values (MU, mu)"


def test_select_takes_only_known_set_parameters() -> None:
    chosen = select_parameters(Child, {"MU": "4", "momentum": None, "strict": "true", "epochs": "9", "fn": "f"})
    assert chosen == {"mu": 4, "strict": True}
    assert math.isclose(select_parameters(Base, {"mu": "0.5"})["mu"], 0.5)
