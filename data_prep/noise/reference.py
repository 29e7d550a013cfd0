"""The noise of ``data_prep.noise`` written the straightforward way: the executable spec of ``Denoiser``.

One row at a time, a loop over tokens per step, Python's ``random`` instead of NumPy: slow, but each step
reads like the module docstring. It makes the same noise, not the same draws (its generator and the order
of its draws differ), so ``tests/unit/test_noise_reference.py`` and ``bench/bench_noise.py`` compare the
two on statistics: output lengths, [MASK] and random-token shares, invariants.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections.abc import Iterable, Sequence

from data_prep.noise.config import NoiseConfig, SpecialIds
from data_prep.noise.pipeline import KEEP, MASK, RANDOM, Denoiser


class Reference:
    """The noise of ``data_prep.noise`` (see its docstring), one token at a time in pure Python."""

    def __init__(
        self,
        cfg: NoiseConfig,
        special: SpecialIds,
        seed: int,
        word_start: Sequence[bool],
        random_ids: Iterable[int],
    ):
        self.cfg, self.special, self.seed = cfg, special, seed
        self.fixed = {special.pad, special.cls, special.sep, special.mask}
        self.word_start = word_start
        self.random_ids = [int(i) for i in random_ids]
        self.cdf = list(itertools.accumulate(cfg.span_length_probs().tolist()))
        self.cdf[-1] = 1.0

    @classmethod
    def like(cls, denoiser: Denoiser) -> Reference:
        """The reference of ``denoiser``: its config, specials, seed, word starts and random ids."""
        word_start = denoiser._word_start
        words = [True] * denoiser.special.vocab_size if word_start is None else word_start.tolist()
        return cls(denoiser.cfg, denoiser.special, denoiser.seed, words, denoiser._random_ids.tolist())

    def draw(self, rng: random.Random) -> int:
        """One span length."""
        return bisect.bisect_right(self.cdf, rng.random())

    def __call__(
        self,
        input_ids: Iterable[int],
        sentence_ends: Iterable[int],
        doc_ends: Iterable[int],
        word_continues: Iterable[int] | None = None,
        *,
        epoch: int,
        index: int,
    ) -> list[int]:
        """The corrupted source of one row (``sentence_ends`` and ``doc_ends`` are required here). A word
        is a token and the tokens after it that continue it: those in ``word_continues`` when given, else
        those the vocab calls no word start (``##`` pieces)."""
        cfg, sp = self.cfg, self.special
        rng = random.Random((self.seed * 1_000_003 + epoch) * 1_000_003 + index)
        ids = [int(i) for i in input_ids]
        n = len(ids)
        docs = [int(d) for d in doc_ends]
        doc_set = set(docs)
        first = 1 if n and ids[0] == sp.cls else 0

        # 1. sentences per document, then ceil(p * n) of each document's sentences swap places
        by_doc: list[list[tuple[int, int]]] = [[] for _ in docs]
        start, d = first, 0
        for end in sentence_ends:
            end = int(end)
            by_doc[d].append((start, end))
            if end in doc_set:
                start, d = end + 1, d + 1
            else:
                start = end
        order = list(range(n))
        for sents in by_doc:
            if len(sents) < 2 or cfg.permute_sentences <= 0:
                continue
            chosen = sorted(rng.sample(range(len(sents)), math.ceil(cfg.permute_sentences * len(sents))))
            moved = chosen[:]
            rng.shuffle(moved)
            new = sents[:]
            for slot, src in zip(chosen, moved, strict=True):
                new[slot] = sents[src]
            pos = sents[0][0]
            for s, e in new:
                for t in range(s, e):
                    order[pos] = t
                    pos += 1

        # 2. rotation of each document (its [SEP] stays)
        if cfg.rotate > 0:
            begins, stops = [first] + [d + 1 for d in docs], docs + [n]
            for a, b in zip(begins, stops, strict=True):
                if rng.random() < cfg.rotate and b - a >= 2:
                    cut = rng.randint(1, b - a - 1)
                    order[a:b] = order[a + cut : b] + order[a : a + cut]
        x = [ids[i] for i in order]

        # 3. units (tokens, or words) grouped in regions of consecutive maskable tokens
        continues = None if word_continues is None else {int(t) for t in word_continues}
        unit_starts: list[int] = []
        unit_ends: list[int] = []
        region_of: list[int] = []
        regions = 0
        prev_ok = False
        maskable = 0
        for i, tok in enumerate(x):
            ok = tok not in self.fixed and i not in doc_set
            if ok:
                maskable += 1
                goes_on = not self.word_start[tok] if continues is None else order[i] in continues
                if prev_ok and cfg.whole_word and goes_on:
                    unit_ends[-1] = i + 1
                else:
                    if not prev_ok:
                        regions += 1
                    unit_starts.append(i)
                    unit_ends.append(i + 1)
                    region_of.append(regions - 1)
            prev_ok = ok
        units = len(unit_starts)
        spans: list[list[tuple[int, int]]] = []  # each span: its pieces (a span split at regions), in units
        zeros = 0
        if units and cfg.mask_ratio > 0:
            budget = min(units, max(1, int(cfg.mask_ratio * units + 0.5)))
            if cfg.span_layout == "tiled":
                tiles = []
                u = 0
                while u < units:
                    region_end = u
                    while region_end < units and region_of[region_end] == region_of[u]:
                        region_end += 1
                    while u < region_end:
                        length = max(1, self.draw(rng))
                        tiles.append((u, min(u + length, region_end)))
                        u += length
                    u = region_end
                picks = list(range(len(tiles)))
                rng.shuffle(picks)
                room = budget
                for p in picks:
                    length = tiles[p][1] - tiles[p][0]
                    if length <= room:
                        spans.append([tiles[p]])
                        room -= length
                        if room == 0:
                            break
                spans.sort()
            else:
                lengths, total = [], 0
                while total < budget:
                    length = self.draw(rng)
                    if length == 0:
                        zeros += 1
                        continue
                    length = min(length, budget - total)
                    lengths.append(length)
                    total += length
                k = len(lengths)
                placed: list[tuple[int, int]] = []  # (start, stop) of each span, in units
                if cfg.span_overlap:  # distinct random starts, cut at the row's end; overlapping spans merge
                    for s, length in zip(rng.sample(range(units), k), lengths, strict=True):
                        placed.append((s, min(s + length, units)))
                    placed.sort()
                    merged: list[tuple[int, int]] = []
                    for s, e in placed:
                        if merged and s < merged[-1][1]:
                            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
                        else:
                            merged.append((s, e))
                    placed = merged
                else:  # without overlap: k of the (gaps + spans) places
                    slots = sorted(rng.sample(range(units - budget + k), k))
                    used = 0
                    for j, (slot, length) in enumerate(zip(slots, lengths, strict=True)):
                        placed.append((slot + used - j, slot + used - j + length))
                        used += length
                for s, e in placed:
                    pieces, piece_start = [], s
                    for u in range(s + 1, e):  # split where a new region starts
                        if region_of[u] != region_of[u - 1]:
                            pieces.append((piece_start, u))
                            piece_start = u
                    pieces.append((piece_start, e))
                    spans.append(pieces)

        # 4. per span: KEEP / MASK / RANDOM (the pieces of a split span share it)
        label = [KEEP] * n
        heads = [False] * n
        for pieces in spans:
            r = rng.random()
            outcome = KEEP if r < cfg.keep_ratio else MASK if r < 1 - cfg.random_ratio else RANDOM
            for s, e in pieces:
                a, b = unit_starts[s], unit_ends[e - 1]
                heads[a] = True
                for t in range(a, b):
                    label[t] = outcome
        out: list[int] = []
        out_made: list[bool] = []
        for t, tok in enumerate(x):
            kind = label[t]
            if kind == KEEP:
                out.append(tok)
                out_made.append(False)
            elif cfg.replace_length == -1 or heads[t]:
                if kind == MASK and cfg.replace_length != 0:
                    out.append(sp.mask)
                    out_made.append(True)
                elif kind == RANDOM:
                    out.append(self.random_ids[rng.randrange(len(self.random_ids))])
                    out_made.append(False)

        # 5. collapse runs of [MASK]: a run keeps the input's own [MASK] tokens, else one
        if cfg.collapse_masks:
            collapsed: list[int] = []
            i = 0
            while i < len(out):
                if out[i] != sp.mask:
                    collapsed.append(out[i])
                    i += 1
                    continue
                j = i
                while j < len(out) and out[j] == sp.mask:
                    j += 1
                inherited = [t for t in range(i, j) if not out_made[t]]
                collapsed += [sp.mask] * (len(inherited) or 1)
                i = j
            out = collapsed

        # 6. insertion, never before the first or after the last token, never past the input length
        count = min(zeros + int(cfg.insert_ratio * maskable + 0.5), n - len(out))
        if count > 0 and len(out) >= 2:
            zeros = min(zeros, count)  # fairseq: ceil(random_ratio * n) random, for both kinds of insert
            randoms = math.ceil(cfg.random_ratio * zeros) + math.ceil(cfg.random_ratio * (count - zeros))
            for j in range(count):
                if cfg.insert_random == "fairseq":  # each insert goes to a random place: the first will do
                    random_token = j < randoms
                else:
                    random_token = rng.random() < cfg.random_ratio
                tok = self.random_ids[rng.randrange(len(self.random_ids))] if random_token else sp.mask
                out.insert(rng.randint(1, len(out) - 1), tok)
        return out
