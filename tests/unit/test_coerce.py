"""``data_prep.coerce``: what a user typed (a YAML value or a command-line string) converted to a field's
declared type, the same from either side, else one ``"{name} expects {type}, got {value!r}"`` error."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from data_prep.coerce import coerce, parse_scalar
from data_prep.errors import UserError

NAME = "config key 'train.x'"


@pytest.mark.parametrize(
    ("value", "tp", "expected"),
    [
        ("true", bool, True),
        ("Yes", bool, True),
        ("1", bool, True),
        ("FALSE", bool, False),
        ("no", bool, False),
        ("0", bool, False),
        (True, bool, True),
        (np.bool_(False), bool, False),
        ("12", int, 12),
        (12, int, 12),
        (3.0, int, 3),
        ("1e6", int, 1_000_000),  # a step count written as a float literal
        ("2.5E3", int, 2500),
        ("0.3", float, 0.3),
        (3, float, 3.0),
        ("1e-4", float, 1e-4),
        ("abc", str, "abc"),
        (12, str, "12"),
        (True, str, "yes"),  # YAML 1.1 reads an unquoted yes/no as a bool
        (False, str, "no"),
    ],
)
def test_scalars_are_converted_to_the_declared_type(value, tp, expected):
    result = coerce(value, tp, NAME)
    assert result == expected and type(result) is type(expected)


@pytest.mark.parametrize("null", [None, "null", "None", "~", "NONE"])
def test_an_optional_field_takes_null_in_any_spelling(null):
    assert coerce(null, int | None, NAME) is None
    assert coerce(null, str | None, NAME) is None


def test_an_optional_field_otherwise_converts_to_its_type():
    assert coerce("7", int | None, NAME) == 7
    assert coerce("0.5", float | None, NAME) == 0.5
    from typing import Optional

    assert coerce("8", Optional[int], NAME) == 8  # noqa: UP045 - the typing spelling works the same


@pytest.mark.parametrize(
    ("value", "expected"),
    [("[1, 2, 3]", [1, 2, 3]), ([1, "2"], [1, 2]), ("4", [4]), (5, [5]), ("[]", [])],
)
def test_a_list_field_takes_a_yaml_list_a_string_list_or_one_item(value, expected):
    assert coerce(value, list[int], NAME) == expected


def test_a_list_of_strings_keeps_each_item_a_string():
    assert coerce("[a, 3, yes]", list[str], NAME) == ["a", "3", "yes"]


@pytest.mark.parametrize(
    ("value", "tp", "shown"),
    [
        ("maybe", bool, "bool, got 'maybe'"),
        (2, bool, "bool, got 2"),
        ("2.5", int, "int, got '2.5'"),
        (2.5, int, "int, got 2.5"),
        ("1.5e0", int, "int, got '1.5e0'"),
        (True, int, "int, got True"),
        (np.bool_(True), int, f"int, got {np.bool_(True)!r}"),
        ("x", int, "int, got 'x'"),
        (float("inf"), int, "int, got inf"),
        ("fast", float, "float, got 'fast'"),
        (False, float, "float, got False"),
        ({"a": 1}, str, "str, got {'a': 1}"),
        ([1], str, "str, got [1]"),
        ("[1, x]", list[int], "int, got 'x'"),
        ("nope", int | None, "int, got 'nope'"),
    ],
)
def test_a_value_of_the_wrong_type_is_one_user_error_naming_the_key(value, tp, shown):
    with pytest.raises(UserError) as caught:
        coerce(value, tp, NAME)
    assert str(caught.value) == f"{NAME} expects {shown}"
    assert caught.value.__cause__ is None and caught.value.__suppress_context__  # no chained traceback


def test_the_command_line_and_a_yaml_file_mean_the_same():
    """``--noise.mask_ratio 0.3``, ``--set mask_ratio=0.3`` and ``mask_ratio: 0.3`` in a file."""
    for text, tp in (("0.3", float), ("12", int), ("yes", bool), ("[1, 2]", list[int]), ("null", int | None)):
        from_yaml = yaml.safe_load(f"key: {text}")["key"]
        assert coerce(text, tp, NAME) == coerce(from_yaml, tp, NAME)


def test_an_undeclared_type_reads_a_string_as_yaml():
    assert coerce("[a, b]", object, NAME) == ["a", "b"]
    assert coerce("3", object, NAME) == 3
    assert coerce(3.5, object, NAME) == 3.5


def test_parse_scalar_reads_yaml_or_keeps_the_string():
    assert parse_scalar("[1, b]") == [1, "b"]
    assert parse_scalar("3") == 3 and parse_scalar("true") is True
    assert parse_scalar("a: [unclosed") == "a: [unclosed"  # not YAML: the string itself
