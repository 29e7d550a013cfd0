"""One converter from what a user typed (YAML value or command-line string) to a field's declared type.

Shared by the training config (``pretrain.config``) and the noise parameters (``data_prep.noise``), so
that ``--noise.mask_ratio 0.3``, ``--set mask_ratio=0.3`` and ``mask_ratio: 0.3`` in a YAML file all
mean the same thing and fail with the same one-line message.
"""

from __future__ import annotations

import types
import typing
from typing import Any

import numpy as np
import yaml

from data_prep.errors import UserError

_TRUE, _FALSE = ("true", "yes", "1"), ("false", "no", "0")
_NULL = ("null", "none", "~")


def coerce(value: Any, tp: Any, name: str) -> Any:
    """``value`` converted to ``tp`` (bool, int, float, str, ``X | None``, ``list[X]``), else a UserError
    ``"{name} expects {type}, got {value!r}"``. ``name`` says what is set, e.g. ``config key 'train.lr'``.
    """
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in _NULL):
            return None
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    try:
        if typing.get_origin(tp) is list:
            value = parse_scalar(value) if isinstance(value, str) else value
            items = value if isinstance(value, list) else [value]
            return [coerce(v, typing.get_args(tp)[0], name) for v in items]
        if tp is bool:
            if isinstance(value, str) and value.lower() in _TRUE + _FALSE:
                return value.lower() in _TRUE
            if not isinstance(value, (bool, np.bool_)):
                raise ValueError
            return bool(value)
        if tp is int:
            if isinstance(value, (bool, np.bool_)) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            if isinstance(value, str) and "e" in value.lower():  # 1e6 steps
                number = float(value)
                if not number.is_integer():
                    raise ValueError
                return int(number)
            return int(value)
        if tp is float:
            if isinstance(value, (bool, np.bool_)):
                raise ValueError
            return float(value)
        if tp is str:
            if isinstance(value, bool):  # YAML 1.1 reads an unquoted no/yes as a bool
                return "yes" if value else "no"
            if isinstance(value, (dict, list)):
                raise ValueError
            return str(value)
        if isinstance(value, str):
            return parse_scalar(value)
    except (TypeError, ValueError, OverflowError):
        type_name = getattr(tp, "__name__", str(tp))
        raise UserError(f"{name} expects {type_name}, got {value!r}") from None
    return value


def parse_scalar(text: str) -> Any:
    """A command-line string read as YAML (``[a, b]`` is a list, ``3`` an int), or the string itself."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text
