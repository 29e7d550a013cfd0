"""What the noise is told: its parameters (``NoiseConfig``, validated and coerced from typed strings),
their presets, and the special-token ids it needs.

Each field is declared with ``data_prep.settings.setting``: its description and allowed values sit on
its line, and the validation, ``--help`` and the README's noise table all read them from there.
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
from data_prep.settings import Rule, between, check, setting

_TAIL = 1e-12  # an uncapped length distribution is cut where its tail falls below this


@dataclass(frozen=True)
class NoiseConfig:
    """Every noise parameter; the defaults are the ``uer`` preset (see ``data_prep.noise``)."""

    mask_ratio: float = setting(
        0.15,
        "share of the maskable units (tokens, or words with whole_word) put inside chosen spans",
        rule=between(0, 1),
    )
    span_layout: str = setting(
        "tiled", "tiled: UER-py's; scattered: fairseq's", choices=("tiled", "scattered")
    )
    span_overlap: bool = setting(
        False, "scattered: spans start at distinct random units and may overlap (fairseq)"
    )
    span_distribution: str = setting(
        "geometric", "the distribution of span lengths", choices=("geometric", "poisson")
    )
    geometric_p: float = setting(
        0.2,
        "p of the geometric span lengths (span_distribution geometric): p(1-p)^(k-1), k >= 1",
        rule=Rule(lambda v: 0.0 < v <= 1.0, "must be in (0, 1]"),
    )
    poisson_lambda: float = setting(
        3.5,
        "lambda of the Poisson span lengths (span_distribution poisson), k >= 0",
        rule=Rule(lambda v: 0.0 < v <= 1000.0, "must be in (0, 1000]"),
    )
    span_max_length: int = setting(3, "longest span; 0: no cap", rule=Rule(lambda v: v >= 0, "must be >= 0"))
    random_ratio: float = setting(0.1, "share of chosen spans replaced by random tokens", rule=between(0, 1))
    keep_ratio: float = setting(
        0.1, "share of chosen spans left unchanged (the rest become [MASK])", rule=between(0, 1)
    )
    replace_length: int = setting(
        -1, "-1: every token of a span, 1: one token per span, 0: delete masked spans", choices=(-1, 0, 1)
    )
    collapse_masks: bool = setting(
        True, "every run of [MASK] the noise made becomes one [MASK] (UER-py's text infilling)"
    )
    whole_word: bool = setting(False, "mask whole words: a token and the ## pieces after it are one unit")
    permute_sentences: float = setting(
        1.0, "share of each document's sentences shuffled among their own slots", rule=between(0, 1)
    )
    rotate: float = setting(
        0.0, "probability that a document is rotated to start at a random token", rule=between(0, 1)
    )
    insert_ratio: float = setting(
        0.0,
        "[MASK] tokens inserted, as a share of the maskable tokens (never lengthens an example)",
        rule=between(0, 1),
    )
    insert_random: str = setting(
        "per_token",
        "which inserted tokens are random: per_token (each w.p. random_ratio), fairseq (ceil(ratio*n) of n)",
        choices=("per_token", "fairseq"),
    )
    preset: str = setting(
        "uer",
        "the base values: uer (UER-py's bart-chinese) or bart (fairseq's bart.large)",
        rule=Rule(lambda v: v in PRESETS, lambda: f"must be one of {', '.join(PRESETS)}"),
    )

    def __post_init__(self) -> None:
        check(self, "noise parameter")
        if self.random_ratio + self.keep_ratio > 1.0:
            raise UserError(
                f"noise parameter 'keep_ratio' plus random_ratio must be <= 1, not "
                f"{self.keep_ratio!r} + {self.random_ratio!r}"
            )

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
