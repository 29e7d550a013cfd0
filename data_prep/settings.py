"""One declaration per config field: its default, its description and the values it allows.

``setting(default, "what it does", choices=... or rule=...)`` puts all of a field's facts on its line, as
dataclass field metadata. ``check`` is the one validation pass over such a dataclass (one message
format); ``describe`` gives the description, choices and rule that ``--help`` and the README's config
reference print. The training config (``pretrain.config``) and the noise (``data_prep.noise.config``)
declare their fields this way, so a renamed field cannot lose its check and a check cannot drift from
its documentation.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from data_prep.errors import UserError


@dataclass(frozen=True)
class Rule:
    """A test a value must pass, and what it must be, as the error message and the reference say it."""

    ok: Callable[[Any], bool]
    must: (
        str | Callable[[], str]
    )  # a callable: a list known only at run time (e.g. transformers' activations)

    def text(self) -> str:
        return self.must if isinstance(self.must, str) else self.must()


def at_least(low: int) -> Rule:
    return Rule(lambda v: v >= low, f"must be at least {low}")


def between(low: float, high: float, *, high_open: bool = False) -> Rule:
    """``low <= v <= high`` (``< high`` when ``high_open``); NaN fails."""
    if high_open:
        return Rule(lambda v: low <= v < high, f"must be in [{low:g}, {high:g})")
    return Rule(lambda v: low <= v <= high, f"must be between {low:g} and {high:g}")


POSITIVE = Rule(lambda v: math.isfinite(v) and v > 0, "must be a positive finite number")
NON_NEGATIVE = Rule(lambda v: math.isfinite(v) and v >= 0, "must be a finite number >= 0")


def setting(
    default: Any = dataclasses.MISSING,
    doc: str = "",
    *,
    factory: Callable[[], Any] | None = None,
    choices: Sequence[Any] = (),
    rule: Rule | None = None,
) -> Any:
    """A dataclass field that carries its description and its allowed values (``choices`` or ``rule``)."""
    metadata = {"doc": doc, "choices": tuple(choices), "rule": rule}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def optional(annotation: Any) -> bool:
    """``int | None`` and the like: None is a value of the field (it means "not set")."""
    origin = typing.get_origin(annotation)
    return origin in (typing.Union, types.UnionType) and type(None) in typing.get_args(annotation)


def describe(f: dataclasses.Field) -> tuple[str, tuple[Any, ...], Rule | None]:
    """(description, choices, rule) of a field declared with ``setting``."""
    return f.metadata.get("doc", ""), f.metadata.get("choices", ()), f.metadata.get("rule")


def violation(f: dataclasses.Field, value: Any, annotation: Any) -> str | None:
    """What is wrong with ``value`` for the field ``f`` ("must be ..., not X"), or None if nothing."""
    if value is None and optional(annotation):
        return None
    _, choices, rule = describe(f)
    if choices and value not in choices:
        return f"must be one of {', '.join(str(c) for c in choices)}, not {value!r}"
    if rule is not None and not _passes(rule, value):
        return f"{rule.text()}, not {value!r}"
    return None


def _passes(rule: Rule, value: Any) -> bool:
    try:
        return bool(rule.ok(value))
    except (TypeError, ValueError):  # a value of another type (set in code, not loaded): it fails
        return False


def check(obj: Any, label: str, prefix: str = "") -> None:
    """Every field of the dataclass ``obj`` against its declaration: the first bad value raises
    ``UserError("{label} '{prefix}{field}' must be ..., not VALUE")``."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        problem = violation(f, getattr(obj, f.name), hints[f.name])
        if problem:
            raise UserError(f"{label} '{prefix}{f.name}' {problem}")
