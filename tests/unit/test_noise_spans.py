"""``data_prep.noise.spans``: step 3 for one row. ``LengthSampler`` inverts the CDF of the span-length
probabilities (one uniform per length). ``tiled`` (UER-py) draws one length per unit, tiles each document
with back-to-back spans, and takes them in random order while they fit the budget, skipping one that does
not; ``scattered`` (fairseq) draws lengths up to the budget (the last cut) and places them without overlap,
every placement equally likely, or with ``overlap`` at distinct random starts, merging the spans that
overlap. ``split_spans`` cuts spans at the cuts strictly inside them, both pieces keeping the outcome."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest

from data_prep.noise.spans import LengthSampler, scattered, split_spans, tiled

GEOMETRIC = np.array([0.0, 0.5, 0.3, 0.2])  # lengths 1-3, as UER-py's (truncated)
WITH_ZERO = np.array([0.2, 0.3, 0.3, 0.2])  # a zero length: an insert in fairseq's rule


def test_length_sampler_from_probs():
    lengths = LengthSampler.from_probs(np.array([0.0, 0.0, 0.25, 0.5, 0.25 - 1e-12]))
    assert lengths.cdf.tolist() == [0.0, 0.0, 0.25, 0.75, 1.0]  # the last entry exactly 1
    assert lengths.min_length == 2 and lengths.mean_length == pytest.approx(3.0)
    assert LengthSampler.from_probs(WITH_ZERO).min_length == 0
    rng, same = np.random.default_rng(3), np.random.default_rng(3)
    drawn = lengths.draw(rng, 40_000)
    assert drawn.tolist()[:50] == lengths.cdf.searchsorted(same.random(40_000), side="right").tolist()[:50]
    assert rng.bit_generator.state == same.bit_generator.state  # one uniform per length
    share = np.bincount(drawn, minlength=5) / len(drawn)
    assert share[:2].tolist() == [0, 0] and np.abs(share[2:] - [0.25, 0.5, 0.25]).max() < 0.01


def tiling(drawn: np.ndarray, units: int, region: list[int]) -> list[tuple[int, int]]:
    """UER-py's tiles: each document cut into back-to-back spans of the drawn lengths, in draw order (a
    zero length counts as 1), the last one cut at the document's end."""
    tiles, k = [], 0
    for a, b in zip(region, [*region[1:], units], strict=True):
        p = a
        while p < b:
            tiles.append((p, min(p + max(int(drawn[k]), 1), b)))
            p, k = p + max(int(drawn[k]), 1), k + 1
    assert k == len(drawn)  # every length drawn for a tile was used
    return tiles


@pytest.mark.parametrize("probs", [GEOMETRIC, WITH_ZERO])
@pytest.mark.parametrize(("units", "region"), [(1, [0]), (40, [0]), (40, [0, 7, 8, 30]), (13, [0, 12])])
@pytest.mark.parametrize("ratio", [0.15, 0.5, 1.0])
def test_tiled_takes_whole_tiles_in_random_order_while_they_fit(probs, units, region, ratio):
    lengths = LengthSampler.from_probs(probs)
    budget = min(units, max(1, int(ratio * units + 0.5)))
    for seed in range(40):
        rng, same = np.random.default_rng(seed), np.random.default_rng(seed)
        spans = tiled(lengths, units, region, budget, rng)
        tiles = tiling(spans.drawn, units, region)
        taken = list(zip(spans.starts.tolist(), spans.stops.tolist(), strict=True))
        assert taken == sorted(set(taken)) and set(taken) <= set(tiles)  # sorted, distinct, whole tiles
        sizes = [b - a for a, b in taken]
        assert spans.chosen == sum(sizes) <= budget and spans.zeros == 0
        room = budget - spans.chosen
        assert all(b - a > room for a, b in set(tiles) - set(taken))  # none left out that would fit
        # the draws: one length per unit (a zero counts as 1), then a permutation of the tiles
        assert spans.drawn.tolist() == np.maximum(lengths.draw(same, units)[: len(tiles)], 1).tolist()
        same.permutation(len(tiles))
        assert rng.bit_generator.state == same.bit_generator.state


def test_tiled_fills_the_budget_when_spans_are_single_units():
    lengths = LengthSampler.from_probs(np.array([0.0, 1.0]))
    for seed in range(20):
        spans = tiled(lengths, 30, [0, 10], 9, np.random.default_rng(seed))
        assert spans.chosen == 9 and (spans.stops - spans.starts == 1).all()


def test_tiled_spans_stay_inside_their_document():
    lengths = LengthSampler.from_probs(np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]))  # always 6
    region = [0, 4, 5, 13]
    for seed in range(30):
        spans = tiled(lengths, 20, region, 20, np.random.default_rng(seed))
        assert spans.chosen == 20  # everything fits: every tile taken
        assert list(zip(spans.starts.tolist(), spans.stops.tolist(), strict=True)) == [
            (0, 4),
            (4, 5),
            (5, 11),
            (11, 13),
            (13, 19),
            (19, 20),
        ]


@pytest.mark.parametrize("probs", [GEOMETRIC, WITH_ZERO, np.array([0, 0, 0, 0, 0, 0, 0, 0, 0, 1.0])])
@pytest.mark.parametrize(("units", "budget"), [(1, 1), (20, 3), (20, 20), (100, 30), (7, 6)])
def test_scattered_covers_exactly_the_budget_without_overlap(probs, units, budget):
    lengths = LengthSampler.from_probs(probs)
    for seed in range(40):
        spans = scattered(lengths, units, budget, np.random.default_rng(seed))
        drawn = spans.drawn
        assert drawn[:-1].sum() < budget <= drawn.sum()  # drawn until they reach the budget
        assert spans.zeros == int((drawn == 0).sum())
        sizes = spans.stops - spans.starts
        cut = [int(x) for x in drawn[drawn > 0]]
        cut[-1] -= int(drawn.sum()) - budget  # the last length is cut to hit the budget
        assert sizes.tolist() == cut  # placed in draw order
        assert (spans.starts[1:] >= spans.stops[:-1]).all()  # sorted and disjoint (touching is allowed)
        assert spans.starts.min() >= 0 and spans.stops.max() <= units
        assert spans.chosen == budget == int(sizes.sum())


def test_scattered_placements_are_equally_likely():
    """Two single-unit spans in 5 units: each of the C(5, 2) = 10 placements about a tenth of the time."""
    lengths = LengthSampler.from_probs(np.array([0.0, 1.0]))
    counts = Counter(
        tuple(scattered(lengths, 5, 2, np.random.default_rng(seed)).starts.tolist()) for seed in range(5000)
    )
    assert set(counts) == set(itertools.combinations(range(5), 2))
    assert all(abs(c / 5000 - 0.1) < 0.02 for c in counts.values()), counts


def test_scattered_draws_more_lengths_until_the_budget_is_reached():
    lengths = LengthSampler.from_probs(np.array([0.99, 0.01]))  # mostly zeros: a first chunk can fall short
    first = int(1.25 * 3 / lengths.mean_length) + 8
    got = [scattered(lengths, 50, 3, np.random.default_rng(seed)) for seed in range(40)]
    assert any(len(spans.drawn) > first for spans in got)
    for spans in got:
        assert spans.chosen == 3 and len(spans.starts) == 3 and spans.zeros == len(spans.drawn) - 3


def test_overlapping_spans_cover_their_union():
    """fairseq's placement: distinct uniform starts, each span cut at the row's end, overlapping spans
    merged (touching ones are not). Two spans of 5 units in 12: the mean cover and the share of merged
    draws match the exact values from enumerating every ordered pair of starts."""
    lengths = LengthSampler.from_probs(np.array([0, 0, 0, 0, 0, 1.0]))
    n, pairs = 12, [(a, b) for a in range(12) for b in range(12) if a != b]
    cover = np.mean([len(set(range(a, min(a + 5, n))) | set(range(b, min(b + 5, n)))) for a, b in pairs])
    merged = np.mean([min(a, b) + 5 > max(a, b) for a, b in pairs])  # the later start inside the earlier
    got = [scattered(lengths, n, 10, np.random.default_rng(i), overlap=True) for i in range(6000)]
    for spans in got[:500]:
        assert (spans.starts[1:] >= spans.stops[:-1]).all() and spans.stops.max() <= n
        assert spans.chosen == int((spans.stops - spans.starts).sum()) and spans.zeros == 0
    chosen = np.array([spans.chosen for spans in got])
    assert abs(chosen.mean() - cover) < 4 * chosen.std() / np.sqrt(len(got)), (chosen.mean(), cover)
    one = np.mean([len(spans.starts) == 1 for spans in got])
    assert abs(one - merged) < 4 * np.sqrt(merged * (1 - merged) / len(got)), (one, merged)
    touching = sum(len(s.starts) == 2 and s.stops[0] == s.starts[1] for s in got)
    assert touching > 0  # adjacent spans stay two spans (fairseq keeps both heads)
    disjoint = scattered(lengths, n, 10, np.random.default_rng(0))
    assert disjoint.chosen == 10 and len(disjoint.starts) == 2  # never merged


def test_split_spans_cuts_only_inside_a_span():
    starts, stops, outcomes = np.array([0, 5, 10]), np.array([3, 9, 12]), np.array([1, 2, 3])
    got = split_spans(starts, stops, outcomes, [2, 3, 4, 5, 7, 11, 12, 20])  # 3, 4, 5, 12, 20: not inside
    assert [x.tolist() for x in got] == [[0, 2, 5, 7, 10, 11], [2, 3, 7, 9, 11, 12], [1, 1, 2, 2, 3, 3]]
    same = split_spans(starts, stops, outcomes, [3, 4, 5, 9, 10, 12])
    assert same[0] is starts and same[1] is stops and same[2] is outcomes
    three = split_spans(np.array([0]), np.array([10]), np.array([2]), [3, 6])
    assert [x.tolist() for x in three] == [[0, 3, 6], [3, 6, 10], [2, 2, 2]]
