"""data_prep.settings: one declaration per field (description, choices, rule) and the one check over it."""

from __future__ import annotations

from dataclasses import dataclass, fields

import pytest

from data_prep.errors import UserError
from data_prep.settings import POSITIVE, Rule, at_least, between, check, describe, setting


@dataclass
class Knobs:
    steps: int = setting(10, "how many", rule=at_least(1))
    ratio: float = setting(0.5, "a share", rule=between(0, 1, high_open=True))
    mode: str = setting("a", "which way", choices=("a", "b"))
    budget: int | None = setting(None, "optional; null: none", rule=at_least(1))
    lr: float = setting(1e-3, "a rate", rule=POSITIVE)
    names: list[str] = setting(doc="a list", factory=list)
    later: str = setting(
        "x", "known at run time", rule=Rule(lambda v: v in ("x", "y"), lambda: "must be x or y")
    )


def test_defaults_pass_and_each_field_carries_its_declaration():
    check(Knobs(), "knob")
    docs = {f.name: describe(f) for f in fields(Knobs)}
    assert docs["mode"] == ("which way", ("a", "b"), None)
    assert docs["steps"][2].text() == "must be at least 1" and docs["names"][0] == "a list"
    assert Knobs().names == [] and Knobs().names is not Knobs().names


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"steps": 0}, "knob 'x.steps' must be at least 1, not 0"),
        ({"ratio": 1.0}, "knob 'x.ratio' must be in [0, 1), not 1.0"),
        ({"ratio": float("nan")}, "knob 'x.ratio' must be in [0, 1), not nan"),
        ({"mode": "c"}, "knob 'x.mode' must be one of a, b, not 'c'"),
        ({"budget": 0}, "knob 'x.budget' must be at least 1, not 0"),
        ({"lr": float("inf")}, "knob 'x.lr' must be a positive finite number, not inf"),
        ({"later": "z"}, "knob 'x.later' must be x or y, not 'z'"),
    ],
)
def test_one_message_format_for_every_rule(change, message):
    with pytest.raises(UserError) as info:
        check(Knobs(**change), "knob", "x.")
    assert str(info.value) == message


def test_none_is_a_value_only_of_optional_fields():
    check(Knobs(budget=None), "knob")
    with pytest.raises(UserError, match="'steps' must be at least 1, not None"):
        check(Knobs(steps=None), "knob")  # a TypeError inside the rule would be a traceback: it is caught
