"""``data_prep.noise.insertion``: step 6's rule. ``insert_count`` is ``round(insert_ratio * maskable)``
(halves up) plus the zero-length spans, cut so the row stays within its input's length, and none into a
row of fewer than 2 tokens. Which inserts are random: ``per_token`` draws one uniform per insert;
``fairseq`` draws nothing and makes ``ceil(ratio * z) + ceil(ratio * m)`` of them random, the first drawn
places, reported in place order."""

from __future__ import annotations

import math

import numpy as np
import pytest

from data_prep.noise import NoiseConfig
from data_prep.noise.insertion import RANDOM_INSERTS, fairseq, insert_count, per_token


@pytest.mark.parametrize(
    ("ratio", "zeros", "maskable", "length", "size", "count"),
    [
        (0.0, 0, 100, 128, 100, 0),
        (0.1, 0, 100, 128, 100, 10),
        (0.1, 0, 25, 128, 100, 3),  # 2.5 rounds up, not to even
        (0.1, 0, 24, 128, 100, 2),  # 2.4 rounds down
        (0.1, 0, 35, 128, 100, 4),  # 3.5: up again
        (0.1, 4, 100, 128, 100, 14),  # the zero-length spans' inserts come on top
        (0.0, 3, 100, 128, 100, 3),
        (0.5, 2, 100, 110, 100, 10),  # cut to the input's length
        (0.5, 2, 100, 100, 100, 0),  # the row is already as long as its input
        (0.5, 0, 100, 90, 100, 0),  # longer than its input (cannot happen): never negative
        (1.0, 1, 1, 10, 1, 0),  # one token: nowhere between a first and a last token
        (1.0, 1, 0, 10, 0, 0),
        (1.0, 0, 2, 10, 2, 2),  # two tokens: one place between them, inserts can stack there
    ],
)
def test_insert_count(ratio, zeros, maskable, length, size, count):
    assert insert_count(ratio, zeros, maskable, length, size) == count


def test_per_token_draws_one_uniform_per_insert():
    places = np.array([7, 2, 9, 4, 11, 3])
    rng, same = np.random.default_rng(5), np.random.default_rng(5)
    got = per_token(places, 2, 0.4, rng)
    assert got.dtype == bool and got.tolist() == (same.random(6) < 0.4).tolist()
    assert rng.bit_generator.state == same.bit_generator.state  # exactly one draw per insert
    assert not per_token(places, 0, 0.0, rng).any() and per_token(places, 0, 1.0, rng).all()
    many = per_token(np.arange(20_000), 0, 0.1, np.random.default_rng(0))
    assert abs(many.mean() - 0.1) < 0.01


def test_fairseq_marks_the_first_drawn_places_in_place_order_and_draws_nothing():
    places = np.array([5, 1, 9, 3])  # in draw order
    rng = np.random.default_rng(0)
    before = rng.bit_generator.state
    # ratio 0.5, no zero-length spans: ceil(0.5 * 4) = 2 random, the places drawn first (5 and 1)
    assert fairseq(places, 0, 0.5, rng).tolist() == [True, False, True, False]  # places 1, 3, 5, 9
    assert rng.bit_generator.state == before
    # 1 zero-length insert, 3 others: ceil(0.1 * 1) + ceil(0.1 * 3) = 2, not ceil(0.1 * 4) = 1
    assert fairseq(places, 1, 0.1, rng).sum() == 2
    assert fairseq(places, 10, 0.1, rng).sum() == 1  # zeros beyond the inserts are clipped: ceil(0.4)
    assert not fairseq(places, 2, 0.0, rng).any() and fairseq(places, 2, 1.0, rng).all()
    assert fairseq(np.array([], dtype=np.int64), 0, 0.5, rng).tolist() == []


@pytest.mark.parametrize(("n", "zeros", "ratio"), [(11, 0, 0.1), (11, 3, 0.1), (1, 1, 0.1), (20, 7, 0.35)])
def test_fairseq_count_is_the_ceiling_of_each_part(n, zeros, ratio):
    places = np.random.default_rng(n).permutation(100)[:n]
    got = fairseq(places, zeros, ratio, np.random.default_rng(0))
    assert got.sum() == math.ceil(ratio * zeros) + math.ceil(ratio * (n - zeros))
    order = np.sort(places)
    assert set(order[got].tolist()) == set(places[: got.sum()].tolist())  # the first drawn


def test_every_insert_random_setting_has_a_rule():
    assert set(RANDOM_INSERTS) == {"per_token", "fairseq"}
    assert RANDOM_INSERTS["per_token"] is per_token and RANDOM_INSERTS["fairseq"] is fairseq
    for name in RANDOM_INSERTS:
        assert NoiseConfig(insert_random=name).insert_random == name
