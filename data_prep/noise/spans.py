"""Step 3 of the noise for one row: which spans of its maskable units are chosen.

Plain functions of a ``LengthSampler`` and the row's generator, so that the order of the random draws (the
pinned outputs depend on it) is visible in one place: ``tiled`` draws one length per unit then a
permutation; ``scattered`` draws lengths in chunks until they reach the budget, then a permutation (of
the gaps and spans, or with ``overlap`` of the units, for the starts).
Positions are in units, relative to the row; the pipeline maps them to tokens of the batch.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class LengthSampler(NamedTuple):
    """Span lengths drawn from ``NoiseConfig.span_length_probs`` by inverting its CDF."""

    cdf: np.ndarray  # P(length <= k), the last entry exactly 1
    min_length: int  # the smallest length with a non-zero probability
    mean_length: float

    @classmethod
    def from_probs(cls, probs: np.ndarray) -> LengthSampler:
        cdf = np.cumsum(probs)
        cdf[-1] = 1.0
        return cls(cdf, int(np.argmax(probs > 0)), float(np.arange(len(probs)) @ probs))

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` lengths, from ``n`` uniform draws."""
        return self.cdf.searchsorted(rng.random(n), side="right")


class RowSpans(NamedTuple):
    """The chosen spans of a row (sorted, disjoint unit ranges) and what the draw behind them was."""

    starts: np.ndarray
    stops: np.ndarray  # exclusive
    drawn: np.ndarray  # the lengths drawn, in draw order
    chosen: int  # units inside the spans
    zeros: int  # zero-length draws (scattered: each becomes an inserted [MASK])


def tiled(
    lengths: LengthSampler, units: int, region: list[int], budget: int, rng: np.random.Generator
) -> RowSpans:
    """UER-py: cut each document (``region``: the first unit of each) into back-to-back spans, then take
    them in random order while they fit the budget."""
    draws = lengths.draw(rng, units)
    if lengths.min_length < 1:
        np.maximum(draws, 1, out=draws)
    cum = np.zeros(units + 1, dtype=np.int64)
    np.cumsum(draws, out=cum[1:])
    if len(region) == 1:
        used = int(cum.searchsorted(units))  # spans that start inside the document
        starts = cum[:used]
        stops = cum[1 : used + 1].copy()
        stops[-1] = units
    else:
        region_ends = region[1:] + [units]
        counts, shifts, used = [], [], 0
        for a, b in zip(region, region_ends, strict=True):
            base = int(cum[used])
            m = int(cum.searchsorted(base + b - a)) - used  # spans starting inside [a, b)
            counts.append(m)
            shifts.append(a - base)
            used += m
        shift = np.repeat(shifts, counts)
        starts = cum[:used] + shift
        stops = np.minimum(cum[1 : used + 1] + shift, np.repeat(region_ends, counts))
    perm = rng.permutation(used)
    sizes = (stops - starts)[perm]  # in the order the spans are tried
    total = sizes.cumsum()
    fit = int(total.searchsorted(budget, side="right"))  # the longest prefix within the budget
    room = budget - (int(total[fit - 1]) if fit else 0)
    take = perm[:fit]
    extra, pos = [], fit + 1
    while room > 0 and pos < used:  # UER-py skips a span that does not fit and goes on
        fits = (sizes[pos:] <= room).nonzero()[0]
        if not len(fits):
            break
        pos += int(fits[0])
        extra.append(perm[pos])
        room -= int(sizes[pos])
        pos += 1
    if extra:
        take = np.concatenate((take, extra))
    take.sort()
    return RowSpans(starts[take], stops[take], draws[:used], budget - room, 0)


def scattered(
    lengths: LengthSampler, units: int, budget: int, rng: np.random.Generator, overlap: bool = False
) -> RowSpans:
    """fairseq: lengths summing to the budget (the last one cut). Without ``overlap`` they are placed at
    random without overlap, so they cover exactly the budget; with it (fairseq's own rule) each starts at
    a distinct random unit, is cut at the row's end, and spans that overlap merge into one, so they cover
    less. The spans may cross a document boundary: ``split_spans`` cuts them there once they are in batch
    units."""
    drawn = lengths.draw(rng, int(1.25 * budget / lengths.mean_length) + 8)
    cum = drawn.cumsum()
    while cum[-1] < budget:
        more = lengths.draw(rng, int(1.25 * (budget - cum[-1]) / lengths.mean_length) + 8)
        drawn = np.concatenate((drawn, more))
        cum = drawn.cumsum()
    last = int(cum.searchsorted(budget))  # the first draw that reaches the budget
    drawn, cum = drawn[: last + 1], cum[: last + 1]
    before = cum - drawn  # units in the spans before each
    cum[-1] = budget  # the last length is cut to hit the budget
    spans = drawn.nonzero()[0]
    k = len(spans)
    zeros = last + 1 - k
    if overlap:
        starts = rng.permutation(units)[:k]  # distinct, in random order: the cut last length anywhere
        by_start = starts.argsort()
        starts = starts[by_start]
        stops = np.minimum(starts + (cum - before)[spans][by_start], units)
        reach = np.maximum.accumulate(stops)
        new = np.ones(k, dtype=bool)  # a span that starts inside an earlier one (not just after) joins it
        np.greater_equal(starts[1:], reach[:-1], out=new[1:])
        first = new.nonzero()[0]
        ends = reach[np.append(first[1:] - 1, k - 1)]
        return RowSpans(starts[first], ends, drawn, int((ends - starts[first]).sum()), zeros)
    places = rng.permutation(units - budget + k)[:k]  # k of the (gaps + spans) places
    places.sort()
    places -= np.arange(k)  # span j starts at its place + (units in spans before it) - j
    return RowSpans(places + before[spans], places + cum[spans], drawn, budget, zeros)


def split_spans(
    starts: np.ndarray, stops: np.ndarray, outcomes: np.ndarray, cuts: list[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(starts, stops, outcomes)`` of the sorted, disjoint spans split at the ``cuts`` that fall strictly
    inside one; both pieces keep the span's outcome."""
    after = stops.searchsorted(cuts, side="right").tolist()  # the first span ending after each cut
    cuts = [c for c, j in zip(cuts, after, strict=True) if j < len(starts) and starts[j] < c]
    if not cuts:
        return starts, stops, outcomes
    new_starts = np.sort(np.concatenate((starts, cuts)))
    new_stops = np.sort(np.concatenate((stops, cuts)))
    return new_starts, new_stops, outcomes[starts.searchsorted(new_starts, side="right") - 1]
