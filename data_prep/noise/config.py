"""What the noise is told: its parameters (``NoiseConfig``, validated and coerced from typed strings),
their presets, and the special-token ids it needs.

The fields' inline ``#`` comments are the descriptions of the README's config reference
(``pretrain.config_doc`` reads this source), so keep each one on its field's line.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from dataclasses import dataclass
from typing import Any

import numpy as np

from data_prep.coerce import coerce
from data_prep.errors import UserError

_TAIL = 1e-12  # an uncapped length distribution is cut where its tail falls below this


@dataclass(frozen=True)
class NoiseConfig:
    """Every noise parameter; the defaults are the ``uer`` preset (see ``data_prep.noise``)."""

    mask_ratio: float = 0.15
    span_layout: str = "tiled"  # tiled (UER-py) | scattered (fairseq)
    span_overlap: bool = False  # scattered: spans start at distinct random units and may overlap (fairseq)
    span_distribution: str = "geometric"  # geometric | poisson
    geometric_p: float = 0.2
    poisson_lambda: float = 3.5
    span_max_length: int = 3  # 0: no cap
    random_ratio: float = 0.1  # share of chosen spans replaced by random tokens
    keep_ratio: float = 0.1  # share of chosen spans left unchanged (the rest become [MASK])
    replace_length: int = -1  # -1: every token, 1: one token per span, 0: delete masked spans
    collapse_masks: bool = True
    whole_word: bool = False
    permute_sentences: float = 1.0
    rotate: float = 0.0
    insert_ratio: float = 0.0
    insert_random: str = "per_token"  # per_token (each w.p. random_ratio) | fairseq (ceil(ratio * n) of n)
    preset: str = "uer"

    def __post_init__(self) -> None:
        for name in (
            "mask_ratio",
            "random_ratio",
            "keep_ratio",
            "permute_sentences",
            "rotate",
            "insert_ratio",
        ):
            _check(name, 0.0 <= getattr(self, name) <= 1.0, "must be between 0 and 1")
        _check("keep_ratio", self.random_ratio + self.keep_ratio <= 1.0, "plus random_ratio must be <= 1")
        _check("span_layout", self.span_layout in ("tiled", "scattered"), "must be tiled or scattered")
        _check(
            "span_distribution",
            self.span_distribution in ("geometric", "poisson"),
            "must be geometric or poisson",
        )
        _check("geometric_p", 0.0 < self.geometric_p <= 1.0, "must be in (0, 1]")
        _check("poisson_lambda", 0.0 < self.poisson_lambda <= 1000.0, "must be in (0, 1000]")
        _check("span_max_length", self.span_max_length >= 0, "must be >= 0 (0: no cap)")
        _check("replace_length", self.replace_length in (-1, 0, 1), "must be -1, 0 or 1")
        _check(
            "insert_random",
            self.insert_random in ("per_token", "fairseq"),
            "must be per_token or fairseq",
        )
        _check("preset", self.preset in PRESETS, f"must be one of {', '.join(PRESETS)}")

    @classmethod
    def from_preset(cls, name: str = "uer", **overrides: Any) -> NoiseConfig:
        """The preset ``name`` with ``overrides`` (values may be strings, as typed on a command line)."""
        if name not in PRESETS:
            raise UserError(f"unknown noise preset '{name}' (choose from: {', '.join(PRESETS)})")
        types = typing.get_type_hints(cls)
        values = dict(PRESETS[name], preset=name)
        for key, value in overrides.items():
            if key == "preset":
                raise UserError("choose the noise preset with the preset option, not as an override")
            if key not in types:
                close = difflib.get_close_matches(key, list(types), n=3)
                hint = f" (did you mean {', '.join(close)}?)" if close else f" (known: {', '.join(types)})"
                raise UserError(f"unknown noise parameter '{key}'{hint}")
            values[key] = coerce(value, types[key], f"noise parameter '{key}'")
        return cls(**values)

    def overrides(self) -> dict[str, Any]:
        """The values that differ from this config's preset (what a run or a model card must state)."""
        base = NoiseConfig.from_preset(self.preset)
        return {k: v for k, v in dataclasses.asdict(self).items() if v != getattr(base, k)}

    def span_length_probs(self) -> np.ndarray:
        """P(length = k) for k = 0..K, truncated at ``span_max_length`` and renormalised."""
        cap = self.span_max_length or None
        if self.span_distribution == "geometric":
            p = self.geometric_p
            top = cap or (1 if p == 1 else max(1, math.ceil(math.log(_TAIL) / math.log1p(-p))))
            k = np.arange(top + 1)
            probs = np.where(k >= 1, p * (1 - p) ** np.maximum(k - 1, 0), 0.0)
        else:
            lam = self.poisson_lambda
            top = cap or int(lam + 20 * math.sqrt(lam) + 20)
            k = np.arange(top + 1)
            probs = np.exp(-lam + k * math.log(lam) - np.array([math.lgamma(i + 1) for i in k]))
        return probs / probs.sum()


def _check(name: str, ok: bool, why: str) -> None:
    if not ok:
        raise UserError(f"noise parameter '{name}' {why}")


PRESETS: dict[str, dict[str, Any]] = {
    "uer": {},
    "bart": {
        "mask_ratio": 0.3,
        "span_layout": "scattered",
        "span_overlap": True,
        "span_distribution": "poisson",
        "poisson_lambda": 3.5,
        "span_max_length": 0,
        "random_ratio": 0.1,
        "keep_ratio": 0.0,
        "replace_length": 1,
        "collapse_masks": False,
        "whole_word": True,
        "permute_sentences": 1.0,
        "rotate": 0.0,
        "insert_ratio": 0.0,
        "insert_random": "fairseq",
    },
}


@dataclass(frozen=True)
class SpecialIds:
    """The special-token ids the noise needs, and the vocab size (random tokens stay below it)."""

    pad: int
    unk: int
    cls: int
    sep: int
    mask: int
    vocab_size: int

    @classmethod
    def from_tokenizer(cls, tok: Any) -> SpecialIds:
        ids = {name: getattr(tok, f"{name}_token_id") for name in ("pad", "unk", "cls", "sep", "mask")}
        missing = [name for name, i in ids.items() if i is None]
        if missing:
            raise UserError(f"the tokenizer lacks the special tokens {missing} that the noise needs")
        return cls(**ids, vocab_size=len(tok))
