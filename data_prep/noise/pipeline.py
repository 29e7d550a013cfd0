"""Steps 1 to 6 of the noise (see ``data_prep.noise``) for a batch of rows at once: ``Denoiser``.

A batch is processed on flat arrays, its rows back to back, so that most steps cost a few NumPy calls for
the whole batch; only the random draws are made row by row, each row with its own generator, in the same
order as for a row alone (so ``batch`` equals one call per row, bit for bit).

A row may carry ``word_continues`` (the offsets of the tokens that continue a word, from ``prepare
--segment``): with ``whole_word`` its words are then those, instead of a token and its ``##`` pieces.
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from data_prep.noise.config import NoiseConfig, SpecialIds
from data_prep.noise.insertion import RANDOM_INSERTS, insert_count
from data_prep.noise.spans import LengthSampler, scattered, split_spans, tiled

KEEP, MASK, RANDOM = 0, 1, 2  # the outcome of a chosen span (in this order of the draw)
_BRACKETED = re.compile(r"^\[[^\]]+\]$")  # [UNK], [unused1], ...: never drawn as a random token


@dataclass
class Trace:
    """What one call did: the result plus the choices behind it (for tests and previews)."""

    src: np.ndarray
    tgt: np.ndarray
    order: np.ndarray  # the example after permutation/rotation is tgt[order]
    starts: np.ndarray  # token offsets into tgt[order] of the corrupted pieces (sorted)
    ends: np.ndarray  # exclusive ends
    outcomes: np.ndarray  # MASK / RANDOM / KEEP per piece
    units: int  # maskable units (words with whole_word, else tokens)
    chosen: int  # units inside the chosen spans
    drawn: np.ndarray  # the span lengths drawn from the distribution (units), in draw order
    inserted: int  # tokens inserted


_EMPTY = np.zeros(0, dtype=np.int64)


class _Row(NamedTuple):
    """One input row, checked; the small per-row offsets as lists (cheaper than arrays at this size)."""

    ids: np.ndarray
    first: int  # 1 if the row starts with [CLS] (no sentence holds it), else 0
    ends: list[int]  # sentence ends (exclusive)
    docs: list[int]  # the offsets of the documents' closing [SEP]
    continues: np.ndarray | None  # the offsets of the tokens that continue a word (None: by the vocab)


class _Sentences(NamedTuple):
    """The sentences of a batch, in batch offsets."""

    starts: np.ndarray
    ends: np.ndarray
    doc: np.ndarray  # the document of each sentence, numbered across the batch
    sizes: list[int]  # sentences per row


class _SpanInfo(NamedTuple):
    """What step 3 counted in one row (``Trace`` reports it)."""

    units: int  # maskable units
    chosen: int  # units inside the chosen spans
    drawn: np.ndarray  # the span lengths drawn, in draw order
    zeros: int  # zero-length draws: each becomes an inserted [MASK]


class _Pieces(NamedTuple):
    """The chosen spans of a batch as sorted token offsets; a span that crosses a document boundary is two
    pieces with one outcome."""

    starts: np.ndarray
    stops: np.ndarray  # exclusive
    outcomes: np.ndarray  # KEEP / MASK / RANDOM
    per_row: list[_SpanInfo]


class _Flat(NamedTuple):
    """Rows back to back: row ``r`` is ``tokens[offsets[r] : offsets[r + 1]]``."""

    tokens: np.ndarray
    offsets: list[int]


class _Noised(NamedTuple):
    """A batch after the noise: its source, the input (row ``r`` at ``offsets[r]``), and the choices made
    (``order`` and ``pieces`` hold batch offsets)."""

    src: _Flat
    ids: np.ndarray
    offsets: list[int]
    order: np.ndarray
    pieces: _Pieces
    inserted: list[int]  # tokens inserted per row


class Denoiser:
    """Corrupts examples, one at a time or a batch at once; picklable, so it can live in DataLoader worker
    processes."""

    def __init__(
        self,
        cfg: NoiseConfig,
        special: SpecialIds,
        seed: int,
        word_start: np.ndarray | None = None,
        random_ids: np.ndarray | None = None,
    ):
        self.cfg, self.special, self.seed = cfg, special, int(seed)
        size = special.vocab_size
        self._maskable = np.ones(size, dtype=bool)  # [PAD] [CLS] [SEP] [MASK] are never corrupted
        self._maskable[[special.pad, special.cls, special.sep, special.mask]] = False
        self._word_start = None if word_start is None else np.asarray(word_start, dtype=bool)
        if self._word_start is not None and self._word_start.shape != (size,):
            raise ValueError(f"word_start has shape {self._word_start.shape}, expected ({size},)")
        if random_ids is None:
            specials = [special.pad, special.unk, special.cls, special.sep, special.mask]
            random_ids = np.setdiff1d(np.arange(size), specials)
        self._random_ids = np.asarray(random_ids, dtype=np.int64)
        if not len(self._random_ids) or self._random_ids.min() < 0 or self._random_ids.max() >= size:
            raise ValueError("random_ids must be a non-empty set of ids inside the vocab")
        self._lengths = LengthSampler.from_probs(cfg.span_length_probs())
        self._outcome_cdf = np.array([cfg.keep_ratio, 1.0 - cfg.random_ratio])  # -> KEEP, MASK, RANDOM
        self._replace_spans = _REPLACE_SPANS[cfg.replace_length]
        self._random_inserts = RANDOM_INSERTS[cfg.insert_random]

    @classmethod
    def from_tokenizer(cls, cfg: NoiseConfig, tok: Any, seed: int) -> Denoiser:
        """Specials, word starts (``##`` pieces are not) and random-token ids taken from ``tok``."""
        special = SpecialIds.from_tokenizer(tok)
        tokens = tok.convert_ids_to_tokens(list(range(special.vocab_size)))
        word_start = np.array([not t.startswith("##") for t in tokens], dtype=bool)
        drop = set(tok.all_special_ids) | {i for i, t in enumerate(tokens) if _BRACKETED.match(t)}
        random_ids = np.array([i for i in range(special.vocab_size) if i not in drop], dtype=np.int64)
        return cls(cfg, special, seed, word_start=word_start, random_ids=random_ids)

    def __call__(
        self,
        input_ids: Any,
        sentence_ends: Any = None,
        doc_ends: Any = None,
        word_continues: Any = None,
        *,
        epoch: int,
        index: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        return self.batch([(input_ids, sentence_ends, doc_ends, word_continues)], [epoch], [index])[0]

    def trace(
        self,
        input_ids: Any,
        sentence_ends: Any = None,
        doc_ends: Any = None,
        word_continues: Any = None,
        *,
        epoch: int,
        index: int,
    ) -> Trace:
        """Like calling the denoiser, with the choices made. ``doc_ends`` defaults to the ``[SEP]``
        offsets and ``sentence_ends`` to ``doc_ends``; without ``word_continues``, words are a token and
        its ``##`` pieces."""
        out = self._noise([(input_ids, sentence_ends, doc_ends, word_continues)], [epoch], [index])
        pieces, info = out.pieces, out.pieces.per_row[0]
        return Trace(
            out.src.tokens,
            out.ids,
            out.order,
            pieces.starts,
            pieces.stops,
            pieces.outcomes,
            info.units,
            info.chosen,
            info.drawn,
            out.inserted[0],
        )

    def batch(
        self, rows: Sequence[tuple[Any, ...]], epoch: int | Sequence[int], indices: Sequence[int]
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """``[self(*row, epoch=epoch, index=i) for row, i in zip(rows, indices)]``, faster (``epoch``: one
        for all rows, or one per row; a row: ``(input_ids, sentence_ends, doc_ends)``, optionally with
        ``word_continues`` after them). The ``src`` and ``tgt`` arrays are views into buffers of the batch."""
        epochs = [epoch] * len(rows) if isinstance(epoch, (int, np.integer)) else epoch
        out = self._noise(rows, epochs, indices)
        src, src_offsets = out.src
        return [
            (src[a:b], out.ids[c:d])
            for a, b, c, d in zip(src_offsets, src_offsets[1:], out.offsets, out.offsets[1:], strict=False)
        ]

    def _noise(
        self, rows: Sequence[tuple[Any, ...]], epochs: Sequence[int], indices: Sequence[int]
    ) -> _Noised:
        """Steps 1 to 6 for a batch of ``(input_ids, sentence_ends, doc_ends)`` rows."""
        if not len(rows) == len(epochs) == len(indices):
            raise ValueError(f"{len(rows)} rows, {len(epochs)} epochs and {len(indices)} indices")
        if not rows:
            return _Noised(_Flat(_EMPTY, [0]), _EMPTY, [0], _EMPTY, _Pieces(_EMPTY, _EMPTY, _EMPTY, []), [])
        parsed = [self._parse(*row) for row in rows]
        ids = np.concatenate([p.ids for p in parsed], dtype=np.int64)
        if len(ids) and ids.min() < 0:  # too large ids fail on the vocab lookup
            raise ValueError(f"input_ids outside the vocab of {self.special.vocab_size}")
        rngs = [self._generator(int(e), int(i)) for e, i in zip(epochs, indices, strict=True)]
        sizes = [len(p.ids) for p in parsed]
        offsets = [0, *itertools.accumulate(sizes)]
        order = self._reorder(parsed, offsets, rngs)
        x = ids[order]
        try:
            maskable = self._maskable[x]
        except IndexError:
            raise ValueError(f"input_ids outside the vocab of {self.special.vocab_size}") from None
        maskable[[d + off for row, off in zip(parsed, offsets, strict=False) for d in row.docs]] = False
        text = maskable.nonzero()[0]  # the maskable tokens
        row_text = text.searchsorted(offsets).tolist()
        word_start = self._word_starts(parsed, ids, offsets) if self.cfg.whole_word else None
        pieces = self._spans(text, row_text, rngs, None if word_start is None else word_start[order])
        src = self._replace(x, offsets, pieces, rngs)
        zeros = [info.zeros for info in pieces.per_row]  # zero-length spans per row: each is an insert
        counts = [  # tokens inserted per row
            insert_count(
                self.cfg.insert_ratio,
                zeros[r],
                row_text[r + 1] - row_text[r],
                n,
                src.offsets[r + 1] - src.offsets[r],
            )
            for r, n in enumerate(sizes)
        ]
        if any(counts):
            src = self._insert(src, counts, zeros, rngs)
        return _Noised(src, ids, offsets, order, pieces, counts)

    def _parse(self, input_ids: Any, sentence_ends: Any, doc_ends: Any, word_continues: Any = None) -> _Row:
        ids = np.asarray(input_ids)
        if ids.ndim != 1:
            raise ValueError(f"input_ids must be 1-D, got shape {ids.shape}")
        if doc_ends is None:
            docs = (ids == self.special.sep).nonzero()[0].tolist()
        else:
            docs = np.asarray(doc_ends, np.int64).tolist()
        ends = docs if sentence_ends is None else np.asarray(sentence_ends, np.int64).tolist()
        continues = None
        if word_continues is not None:
            continues = np.asarray(word_continues, np.int64)
            inside = not len(continues) or 0 <= continues.min() <= continues.max() < len(ids)
            if continues.ndim != 1 or not inside:
                raise ValueError("malformed row: word_continues do not fit input_ids")
        return _Row(ids, int(len(ids) > 0 and ids[0] == self.special.cls), ends, docs, continues)

    def _word_starts(self, parsed: list[_Row], ids: np.ndarray, offsets: list[int]) -> np.ndarray | None:
        """Per token of the batch ``ids``: it starts a word; by the row's ``word_continues`` where it has
        them, else by the vocab (None: no word boundaries at all, every token is a unit)."""
        if self._word_start is not None:
            starts = self._word_start[ids]
        elif any(row.continues is not None for row in parsed):
            starts = np.ones(len(ids), dtype=bool)
        else:
            return None
        for row, off in zip(parsed, offsets, strict=False):
            if row.continues is not None:
                starts[off : off + len(row.ids)] = True
                starts[row.continues + off] = False
        return starts

    def _generator(self, epoch: int, index: int) -> np.random.Generator:
        """The row's own generator: ``default_rng(SeedSequence([seed, epoch, index]))``."""
        return np.random.default_rng(np.random.SeedSequence([self.seed, epoch, index]))

    # -- 1, 2: sentence permutation and rotation -------------------------------------------------------

    def _reorder(
        self,
        parsed: list[_Row],
        offsets: list[int],
        rngs: list[np.random.Generator],
    ) -> np.ndarray:
        """The batch after steps 1 and 2 is ``ids[order]``."""
        cfg = self.cfg
        order = np.arange(offsets[-1])
        starts, ends, doc, sizes = _sentences(parsed, offsets)
        moving = [r for r, size in enumerate(sizes) if size >= 2] if cfg.permute_sentences > 0 else []
        if moving:
            if len(moving) < len(sizes):  # only the rows with two sentences or more draw an order
                bounds = [0, *itertools.accumulate(sizes)]
                pick = [j for r in moving for j in range(bounds[r], bounds[r + 1])]
                starts, ends, doc = starts[pick], ends[pick], doc[pick]
            new = self._sentence_order(doc, [sizes[r] for r in moving], [rngs[r] for r in moving])
            # segments of the batch: before the first slot, then each slot and the gap after it (a [SEP],
            # or the rest of a row and the start of the next): the slots filled back to back, gaps in place
            size = ends - starts
            filled = size[new]
            lengths = np.empty(2 * len(starts) + 1, dtype=np.int64)
            lengths[0] = starts[0]
            lengths[1::2] = filled
            lengths[2:-1:2] = starts[1:] - ends[:-1]
            lengths[-1] = offsets[-1] - ends[-1]
            shifts = np.zeros(2 * len(starts) + 1, dtype=np.int64)
            # slot k starts at starts[k] + (filled - size summed over the slots before it: 0 over documents)
            shifts[1::2] = starts[new] - starts - (filled.cumsum() - filled) + (size.cumsum() - size)
            order += shifts.repeat(lengths)
        if cfg.rotate > 0:  # document [a, b) rotated to start at cut: [cut, b) then [a, cut)
            lengths, shifts, pos = [], [], 0
            for row, off, rng in zip(parsed, offsets, rngs, strict=False):
                begins = [row.first] + [d + 1 for d in row.docs]
                stops = row.docs + [len(row.ids)]  # a tail without [SEP] ends at the row's end
                for a, b, draw in zip(begins, stops, rng.random(len(stops)).tolist(), strict=True):
                    if draw < cfg.rotate and b - a >= 2:
                        cut = a + int(rng.integers(1, b - a))
                        lengths += [a + off - pos, b - cut, cut - a]
                        shifts += [0, cut - a, cut - b]
                        pos = b + off
            if lengths:
                lengths.append(offsets[-1] - pos)
                shifts.append(0)
                order = order[np.arange(offsets[-1]) + np.array(shifts).repeat(lengths)]
        return order

    def _sentence_order(
        self, doc: np.ndarray, sizes: list[int], rngs: list[np.random.Generator]
    ) -> np.ndarray:
        """The sentence for each slot (``doc``: the document of each sentence, non-decreasing; ``sizes``:
        the sentences of each row), moving each within its document: ``ceil(p * n)`` random sentences of
        each document swap places among themselves."""
        by_key = np.lexsort(
            (np.concatenate([rng.random(size) for size, rng in zip(sizes, rngs, strict=True)]), doc)
        )
        p = self.cfg.permute_sentences
        if p >= 1.0:
            return by_key
        counts = np.bincount(doc)
        first = counts.cumsum() - counts
        rank = np.empty(len(doc), dtype=np.int64)
        rank[by_key] = np.arange(len(doc)) - first[doc[by_key]]
        slots = (rank < np.ceil(counts * p)[doc]).nonzero()[0]
        per_row = slots.searchsorted([0, *itertools.accumulate(sizes)]).tolist()
        keys = [rng.random(b - a) for a, b, rng in zip(per_row, per_row[1:], rngs, strict=False)]
        new = np.arange(len(doc))
        new[slots] = slots[np.lexsort((np.concatenate(keys), doc[slots]))]
        return new

    # -- 3: spans ------------------------------------------------------------------------------------

    def _spans(
        self,
        text: np.ndarray,
        row_text: list[int],
        rngs: list[np.random.Generator],
        word_start: np.ndarray | None,
    ) -> _Pieces:
        """Step 3 and the outcome draws of step 4. ``text``: the maskable tokens, ``row_text``: where each
        row starts in it; ``word_start`` (with ``whole_word``): per token of the batch, it starts a word."""
        cfg = self.cfg
        run = np.ones(len(text), dtype=bool)  # the first token of each run of maskable tokens: a document,
        np.not_equal(text[1:], text[:-1] + 1, out=run[1:])  # text after a stray special, or a new row
        run[[t for t in row_text[1:-1] if t < len(text)]] = True
        if word_start is not None:
            word = word_start[text]
            word |= run
            unit_first = word.nonzero()[0]  # unit -> its first index in text
            row_units = unit_first.searchsorted(row_text).tolist()
            regions = unit_first.searchsorted(run.nonzero()[0]).tolist()
        else:
            unit_first, row_units, regions = None, row_text, run.nonzero()[0].tolist()
        starts, stops, draws, per_row = [], [], [], []
        for r, rng in enumerate(rngs):
            units = row_units[r + 1] - row_units[r]
            if not units or cfg.mask_ratio <= 0:
                per_row.append(_SpanInfo(units, 0, _EMPTY, 0))
                continue
            budget = min(units, max(1, int(cfg.mask_ratio * units + 0.5)))
            if cfg.span_layout == "tiled":
                lo, hi = (
                    bisect.bisect_left(regions, row_units[r]),
                    bisect.bisect_left(regions, row_units[r + 1]),
                )
                region = [u - row_units[r] for u in regions[lo:hi]]
                spans = tiled(self._lengths, units, region, budget, rng)
            else:
                spans = scattered(self._lengths, units, budget, rng, cfg.span_overlap)
            per_row.append(_SpanInfo(units, spans.chosen, spans.drawn, spans.zeros))
            starts.append(spans.starts + row_units[r])
            stops.append(spans.stops + row_units[r])
            draws.append(rng.random(len(spans.starts)))
        if not starts:
            return _Pieces(_EMPTY, _EMPTY, _EMPTY, per_row)
        first, last = np.concatenate(starts), np.concatenate(stops)
        outcomes = self._outcome_cdf.searchsorted(np.concatenate(draws), side="right")
        if cfg.span_layout == "scattered":
            first, last, outcomes = split_spans(first, last, outcomes, regions)
        if unit_first is not None:
            bounds = np.concatenate((unit_first, [len(text)]))
            first, last = bounds[first], bounds[last]
        return _Pieces(text[first], text[last - 1] + 1, outcomes, per_row)

    # -- 4, 5, 6: replacement, collapsing, insertion ---------------------------------------------------

    def _random_tokens(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``random_ids[rng.integers(len(random_ids), size=n)]``; one scalar draw at a time (the same
        draws) when that is cheaper."""
        if n <= 3:
            return self._random_ids[[rng.integers(len(self._random_ids)) for _ in range(n)]]
        return self._random_ids[rng.integers(len(self._random_ids), size=n)]

    def _replace(
        self, x: np.ndarray, offsets: list[int], pieces: _Pieces, rngs: list[np.random.Generator]
    ) -> _Flat:
        """Steps 4 and 5 on the batch ``x`` (rows at ``offsets``): its source."""
        if not len(pieces.starts):
            return _Flat(x.copy(), offsets)
        mask_id = self.special.mask
        out, made = self._replace_spans(x, offsets, pieces, mask_id, self._fill_random(rngs))
        if self.cfg.collapse_masks:
            out = _select(out, _collapse(out, made, mask_id))
        return out

    def _fill_random(self, rngs: list[np.random.Generator]) -> _Fill:
        """What puts random tokens at the given offsets of a batch (rows at ``offsets``), each row's from
        its own generator."""

        def fill(src: np.ndarray, rand: np.ndarray, offsets: list[int]) -> None:
            if len(rand):
                per_row = rand.searchsorted(offsets).tolist()
                src[rand] = np.concatenate(
                    [
                        self._random_tokens(b - a, rng)
                        for a, b, rng in zip(per_row, per_row[1:], rngs, strict=False)
                        if b > a
                    ]
                )

        return fill

    def _insert(
        self, src: _Flat, counts: list[int], zeros: list[int], rngs: list[np.random.Generator]
    ) -> _Flat:
        """Step 6: ``counts[r]`` tokens inserted into row ``r`` of ``src`` (which has ``zeros[r]``
        zero-length spans); ``insert_random`` says which of them are random tokens."""
        src, offsets = src
        places, rands, tokens, starts, new_offsets, added = [], [], [], [], [0], 0
        for r, (count, rng) in enumerate(zip(counts, rngs, strict=False)):
            if count:
                starts.append(offsets[r] + added + 1)  # never before the first or after the last token
                places.append(rng.permutation(offsets[r + 1] - offsets[r] + count - 2)[:count])
                rands.append(self._random_inserts(places[-1], zeros[r], self.cfg.random_ratio, rng))
                drawn = np.count_nonzero(rands[-1])
                if drawn:
                    tokens.append(self._random_tokens(drawn, rng))
                added += count
            new_offsets.append(offsets[r + 1] + added)
        new = np.zeros(len(src) + added, dtype=bool)
        new[np.concatenate(places) + np.array(starts).repeat([c for c in counts if c])] = True
        out = np.empty(len(src) + added, dtype=np.int64)
        out[~new] = src
        values = np.full(added, self.special.mask, dtype=np.int64)
        if tokens:
            values[np.concatenate(rands)] = np.concatenate(tokens)
        out[new] = values
        return _Flat(out, new_offsets)


# -- 4: replace_length, one function per mode ------------------------------------------------------------
# (the batch ``x``, its row offsets, the pieces, the [MASK] id, what puts random tokens at offsets of a
# batch) -> (the source after step 4, per token of it: a [MASK] that the noise made)
_Fill = Callable[[np.ndarray, np.ndarray, list[int]], None]


def _every_token(
    x: np.ndarray, offsets: list[int], pieces: _Pieces, mask_id: int, fill: _Fill
) -> tuple[_Flat, np.ndarray]:
    """``replace_length`` -1: every token of a piece becomes [MASK], or a random token each."""
    starts, stops, outcomes, _ = pieces
    n = len(x)
    kind = np.zeros(n + 1, dtype=np.int64)  # the outcome of the piece each token is in (KEEP outside)
    kind[starts] = outcomes
    kind[stops] -= outcomes
    kind = kind[:n].cumsum()
    made = kind == MASK
    src = np.where(made, mask_id, x)
    fill(src, (kind == RANDOM).nonzero()[0], offsets)
    return _Flat(src, offsets), made


def _one_token(
    x: np.ndarray, offsets: list[int], pieces: _Pieces, mask_id: int, fill: _Fill
) -> tuple[_Flat, np.ndarray]:
    """``replace_length`` 1: a piece becomes its head, a [MASK] or a random token."""
    starts, stops, is_rand = _changed(pieces)
    src = x.copy()
    src[starts] = mask_id
    fill(src, starts[is_rand], offsets)
    made = np.zeros(len(x), dtype=bool)
    made[starts[~is_rand]] = True
    keep = _outside(len(x), starts + 1, stops)
    return _select(_Flat(src, offsets), keep), made[keep]


def _delete(
    x: np.ndarray, offsets: list[int], pieces: _Pieces, mask_id: int, fill: _Fill
) -> tuple[_Flat, np.ndarray]:
    """``replace_length`` 0: a masked piece goes; a random one leaves its head, a random token."""
    starts, stops, is_rand = _changed(pieces)
    rand = starts[is_rand]
    src = x.copy()
    fill(src, rand, offsets)
    keep = _outside(len(x), starts, stops)
    keep[rand] = True
    out = _select(_Flat(src, offsets), keep)
    return out, np.zeros(len(out.tokens), dtype=bool)


_REPLACE_SPANS = {-1: _every_token, 1: _one_token, 0: _delete}


def _changed(pieces: _Pieces) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The starts and stops of the pieces that change (kept pieces change nothing), and which of those
    become random tokens."""
    starts, stops, outcomes, _ = pieces
    changed = outcomes != KEEP
    if not changed.all():
        starts, stops, outcomes = starts[changed], stops[changed], outcomes[changed]
    return starts, stops, outcomes == RANDOM


def _outside(n: int, begins: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """Per token of ``n``: it lies outside every ``[begins, stops)`` (sorted, disjoint; ``begins`` may
    equal ``stops``: nothing)."""
    drop = np.zeros(n + 1, dtype=np.int64)  # +1 where a piece's dropped tokens begin, -1 after
    drop[begins] = 1
    drop[stops] -= 1
    return drop[:n].cumsum() == 0


def _select(src: _Flat, keep: np.ndarray) -> _Flat:
    """The tokens of ``src`` where ``keep``, with the row offsets that follow."""
    kept = [np.count_nonzero(keep[a:b]) for a, b in itertools.pairwise(src.offsets)]
    return _Flat(src.tokens[keep], [0, *itertools.accumulate(kept)])


def _collapse(flat: _Flat, made: np.ndarray, mask_id: int) -> np.ndarray:
    """Which tokens stay when each run of consecutive ``[MASK]`` (in a row) becomes one; a run holding
    ``[MASK]`` tokens that were in the input (``[MASK]`` and not ``made``) keeps exactly those."""
    src, offsets = flat
    is_mask = src == mask_id
    after_mask = np.zeros(len(src), dtype=bool)
    np.logical_and(is_mask[1:], is_mask[:-1], out=after_mask[1:])
    after_mask[[o for o in offsets[1:-1] if o < len(src)]] = False  # a run never goes on into the next row
    if np.count_nonzero(is_mask) == np.count_nonzero(made):  # no [MASK] from the input
        return ~after_mask
    inherited = is_mask & ~made
    first = is_mask & ~after_mask
    run = np.cumsum(first) - 1  # the run of consecutive [MASK] each token is in (or follows)
    has_input = np.zeros(int(run[-1]) + 1, dtype=bool)
    has_input[run[inherited]] = True
    return ~is_mask | inherited | (first & ~has_input[run])


def _sentences(parsed: list[_Row], offsets: list[int]) -> _Sentences:
    """The sentences of the rows ``parsed`` (at ``offsets`` in the batch). ``ValueError`` if a row's
    offsets do not fit the shard format, e.g. a sentence that holds ``[CLS]`` or a document's ``[SEP]``
    (a data bug)."""
    starts: list[int] = []
    ends: list[int] = []
    doc: list[int] = []
    sizes: list[int] = []
    base = 0  # the number of the row's first document
    for (ids, first, row_ends, docs, _), off in zip(parsed, offsets, strict=False):
        n = len(ids)
        if docs and (docs[0] < first or docs[-1] >= n or sorted(set(docs)) != docs):
            raise ValueError("malformed row: doc_ends do not fit input_ids")
        if row_ends and (row_ends[0] < first or row_ends[-1] > n or sorted(row_ends) != row_ends):
            raise ValueError("malformed row: sentence_ends do not fit input_ids")
        stop = docs + [n]  # the exclusive end of each document (a tail: n)
        start, d, p = first, 0, 0  # d: the document of a sentence's start, p: that of its end
        for end in row_ends:
            while stop[p] < end:
                p += 1
            if p != d:
                raise ValueError("malformed row: a sentence runs over a document's [SEP]")
            starts.append(start + off)
            doc.append(base + d)
            if stop[p] == end:  # this sentence closes a document: the next one starts after its [SEP]
                start, d = end + 1, p + 1
            else:
                start = end
        ends += [e + off for e in row_ends]
        sizes.append(len(row_ends))
        base += len(stop)
    return _Sentences(np.array(starts, np.int64), np.array(ends, np.int64), np.array(doc, np.int64), sizes)
