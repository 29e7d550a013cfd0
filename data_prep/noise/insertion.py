"""Step 6's rule (see ``data_prep.noise``): how many tokens a row gets inserted, and which are random.

Apart from ``pipeline``, which only places the inserts: the rule is the part that fairseq's and UER-py's
recipes disagree on (``insert_random``), and here it reads as the module docstring states it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np


def insert_count(insert_ratio: float, zeros: int, maskable: int, length: int, size: int) -> int:
    """The tokens inserted into a row: ``round(insert_ratio * maskable)`` plus its ``zeros`` zero-length
    spans, cut so that the row (``size`` tokens after steps 4 and 5) stays within its input's ``length``;
    none into a row of fewer than 2 tokens (inserts go between its first and last token)."""
    count = min(zeros + int(insert_ratio * maskable + 0.5), length - size)
    return count if count > 0 and size >= 2 else 0


def per_token(places: np.ndarray, zeros: int, ratio: float, rng: np.random.Generator) -> np.ndarray:
    """``insert_random`` per_token: each insert (of those at ``places``) is random with probability
    ``ratio``, one draw each."""
    return rng.random(len(places)) < ratio


def fairseq(places: np.ndarray, zeros: int, ratio: float, rng: np.random.Generator) -> np.ndarray:
    """``insert_random`` fairseq: ``ceil(ratio * z)`` of the ``z`` zero-length spans' inserts and
    ``ceil(ratio * m)`` of the ``m`` others are random: the first that many ``places`` drawn, in place
    order (the zero-length spans' inserts are counted first; no draw)."""
    count = len(places)
    zeros = min(zeros, count)
    randoms = math.ceil(ratio * zeros) + math.ceil(ratio * (count - zeros))
    return places.argsort() < randoms


# insert_random -> (the places drawn for a row's inserts, its zero-length spans, random_ratio, its
# generator) -> which inserts, in place order, are random tokens (the rest are [MASK])
RANDOM_INSERTS: dict[str, Callable[[np.ndarray, int, float, np.random.Generator], np.ndarray]] = {
    "per_token": per_token,
    "fairseq": fairseq,
}
