"""BART denoising noise on token-id arrays: sentence permutation, span masking / text infilling, insertion.

``Denoiser(cfg, special, seed)(input_ids, sentence_ends, doc_ends, epoch=e, index=i)`` returns
``(src, tgt)``: the corrupted encoder input and the original example, both int64. The corruption is a
pure function of ``(seed, epoch, index)`` (a NumPy generator seeded with ``SeedSequence([seed, epoch,
index])``), so it is the same on any number of loader workers or ranks and after a resume, and new
every epoch. ``Denoiser.batch(rows, epoch, indices)`` noises many rows at once (the trainer's loader gives
it a micro-batch), each exactly as a call for that row alone, several times faster.

Semantics, in the order they are applied (``NoiseConfig`` holds every knob):

1. Sentence permutation (``permute_sentences`` = p): in every document, ``ceil(p * n)`` of its ``n``
   sentences, chosen at random, are shuffled among their own slots (fairseq's rule); p = 1 shuffles all.
   Sentences never leave their document; ``[CLS]`` and each document's closing ``[SEP]`` stay put.
2. Rotation (``rotate`` = p): with probability p a document's tokens are rotated to start at a random
   token (per document, so document boundaries never move; fairseq rotates the whole example).
3. Span selection. Maskable *units* are the tokens that are not ``[CLS] [SEP] [PAD] [MASK]`` (nor a
   document end), or with ``whole_word`` the words: a unit is a token plus the ``##`` pieces after it,
   so a piece is never split from its word. The budget is ``max(1, round(mask_ratio * units))`` units
   (0 when ``mask_ratio`` is 0 or nothing is maskable). Spans never cross a document boundary.
   Span lengths (in units) follow ``span_distribution``: geometric P(k) ~ p(1-p)^(k-1), k >= 1, or
   Poisson(lambda), k >= 0, both truncated and renormalised at ``span_max_length`` (0: no cap).

   - ``span_layout = "tiled"`` (UER-py): every document is cut into back-to-back spans (a length-0
     draw counts as 1; the last span of a document is cut at its end). Spans are taken in random order
     while they fit the budget (a span that does not fit is skipped), so exactly the budget is chosen
     unless no remaining span fits. Unlike UER-py, no span ever covers the closing ``[SEP]``.
   - ``span_layout = "scattered"`` (fairseq): lengths are drawn until they sum to the budget, the last
     one cut to hit it exactly; zero-length spans become insertions of one ``[MASK]`` each. The spans
     are placed uniformly at random without overlap (fairseq lets spans overlap, so its real masked
     share is about 26% for 30%; here it is exactly the budget). A span that would run across a
     document boundary is split there into two pieces with the same outcome.

   "Masked fraction" therefore means: units inside chosen spans / maskable units, counted before any
   replacement or collapsing (chosen spans left unchanged by ``keep_ratio`` count as chosen).
4. Per chosen span: with probability ``random_ratio`` random tokens, with ``keep_ratio`` unchanged,
   else ``[MASK]``. Random tokens are drawn uniformly from the vocab without special tokens
   (``[PAD] [UNK] [CLS] [SEP] [MASK]``, and with a tokenizer every ``[...]`` token such as ``[unused1]``).
   ``replace_length``: -1 replaces every token of the span (one random token per position); 1 replaces
   the span by one token (``[MASK]`` or one random token); 0 deletes a masked span (a random one still
   leaves one random token).
5. ``collapse_masks``: every run of consecutive ``[MASK]`` that the noise made becomes one ``[MASK]``
   (UER-py's text infilling; adjacent masked spans merge). A ``[MASK]`` already in the input is kept:
   a run that holds one keeps exactly the input's ``[MASK]`` tokens (the masked spans merge into them).
6. Insertion: ``round(insert_ratio * maskable tokens)`` plus the zero-length spans, each a ``[MASK]``
   (a random token with probability ``random_ratio``), at random places between ``[CLS]`` and the last
   token. The count is cut so that ``len(src) <= len(input_ids)``: the noise never lengthens an example.

Presets: ``uer`` (the defaults: UER-py's ``bart-chinese`` recipe) and ``bart`` (fairseq ``bart.large``).
"""

from __future__ import annotations

import bisect
import difflib
import itertools
import math
import re
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from data_prep.errors import UserError

KEEP, MASK, RANDOM = 0, 1, 2  # the outcome of a chosen span (in this order of the draw)
_TAIL = 1e-12  # an uncapped length distribution is cut where its tail falls below this
_BRACKETED = re.compile(r"^\[[^\]]+\]$")  # [UNK], [unused1], ...: never drawn as a random token


@dataclass(frozen=True)
class NoiseConfig:
    """Every noise parameter; the defaults are the ``uer`` preset (see the module docstring)."""

    mask_ratio: float = 0.15
    span_layout: str = "tiled"  # tiled (UER-py) | scattered (fairseq)
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
            values[key] = _coerce(key, value, types[key])
        return cls(**values)

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


def _coerce(key: str, value: Any, tp: type) -> Any:
    try:
        if tp is bool:
            if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
                return value.lower() in ("true", "yes", "1")
            if isinstance(value, (bool, np.bool_)):
                return bool(value)
        elif tp is int and not isinstance(value, bool):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        elif tp is float and not isinstance(value, bool):
            return float(value)
        elif tp is str and isinstance(value, str):
            return value
    except ValueError:
        pass
    raise UserError(f"noise parameter '{key}' expects {tp.__name__}, got {value!r}")


PRESETS: dict[str, dict[str, Any]] = {
    "uer": {},
    "bart": {
        "mask_ratio": 0.3,
        "span_layout": "scattered",
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


class _Noised(NamedTuple):
    """A batch after the noise, on flat arrays (row ``r`` at ``offsets[r]``, its source at
    ``src_offsets[r]``; ``order``, ``starts`` and ``stops`` hold batch offsets)."""

    src: np.ndarray
    src_offsets: list[int]
    ids: np.ndarray
    offsets: list[int]
    order: np.ndarray
    starts: np.ndarray
    stops: np.ndarray
    outcomes: np.ndarray
    per_row: list[tuple[int, int, np.ndarray, int]]  # units, chosen units, drawn span lengths, zero draws
    inserted: list[int]


class Denoiser:
    """Corrupts examples, one at a time or a batch at once; picklable, so it can live in DataLoader worker
    processes.

    A batch is processed on flat arrays, its rows back to back (row ``r`` at ``offsets[r]``), so that most
    steps cost a few NumPy calls for the whole batch; only the random draws are made row by row, each row
    with its own generator, in the same order as for a row alone.
    """

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
        probs = cfg.span_length_probs()
        self._length_cdf = np.cumsum(probs)
        self._length_cdf[-1] = 1.0
        self._min_length = int(np.argmax(probs > 0))
        self._mean_length = float(np.arange(len(probs)) @ probs)
        self._outcome_cdf = np.array([cfg.keep_ratio, 1.0 - cfg.random_ratio])  # -> KEEP, MASK, RANDOM

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
        *,
        epoch: int,
        index: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        return self.batch([(input_ids, sentence_ends, doc_ends)], [epoch], [index])[0]

    def trace(
        self,
        input_ids: Any,
        sentence_ends: Any = None,
        doc_ends: Any = None,
        *,
        epoch: int,
        index: int,
    ) -> Trace:
        """Like calling the denoiser, with the choices made. ``doc_ends`` defaults to the ``[SEP]``
        offsets and ``sentence_ends`` to ``doc_ends``."""
        out = self._noise([(input_ids, sentence_ends, doc_ends)], [epoch], [index])
        units, chosen, drawn, _ = out.per_row[0]
        return Trace(
            out.src,
            out.ids,
            out.order,
            out.starts,
            out.stops,
            out.outcomes,
            units,
            chosen,
            drawn,
            out.inserted[0],
        )

    def batch(
        self, rows: Sequence[tuple[Any, Any, Any]], epoch: int | Sequence[int], indices: Sequence[int]
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """``[self(*row, epoch=epoch, index=i) for row, i in zip(rows, indices)]``, faster (``epoch``: one
        for all rows, or one per row). The ``src`` and ``tgt`` arrays are views into buffers of the batch."""
        epochs = [epoch] * len(rows) if isinstance(epoch, (int, np.integer)) else epoch
        out = self._noise(rows, epochs, indices)
        return [
            (out.src[a:b], out.ids[c:d])
            for a, b, c, d in zip(
                out.src_offsets, out.src_offsets[1:], out.offsets, out.offsets[1:], strict=False
            )
        ]

    def _noise(
        self, rows: Sequence[tuple[Any, Any, Any]], epochs: Sequence[int], indices: Sequence[int]
    ) -> _Noised:
        """Steps 1 to 6 for a batch of ``(input_ids, sentence_ends, doc_ends)`` rows."""
        if not len(rows) == len(epochs) == len(indices):
            raise ValueError(f"{len(rows)} rows, {len(epochs)} epochs and {len(indices)} indices")
        if not rows:
            return _Noised(_EMPTY, [0], _EMPTY, [0], _EMPTY, _EMPTY, _EMPTY, _EMPTY, [], [])
        parsed = [self._parse(*row) for row in rows]
        ids = np.concatenate([p[0] for p in parsed], dtype=np.int64)
        if len(ids) and ids.min() < 0:  # too large ids fail on the vocab lookup
            raise ValueError(f"input_ids outside the vocab of {self.special.vocab_size}")
        rngs = [self._generator(int(e), int(i)) for e, i in zip(epochs, indices, strict=True)]
        sizes = [len(p[0]) for p in parsed]
        offsets = [0, *itertools.accumulate(sizes)]
        order = self._reorder(parsed, offsets, rngs)
        x = ids[order]
        try:
            maskable = self._maskable[x]
        except IndexError:
            raise ValueError(f"input_ids outside the vocab of {self.special.vocab_size}") from None
        maskable[[d + off for (*_, docs), off in zip(parsed, offsets, strict=False) for d in docs]] = False
        text = maskable.nonzero()[0]  # the maskable tokens
        row_text = text.searchsorted(offsets).tolist()
        starts, stops, outcomes, per_row = self._spans(x, text, row_text, rngs)
        src, src_offsets = self._replace(x, offsets, starts, stops, outcomes, rngs)
        counts = []  # insertions per row
        for r, ((_, _, _, zeros), n) in enumerate(zip(per_row, sizes, strict=True)):
            size = src_offsets[r + 1] - src_offsets[r]
            count = min(zeros + int(self.cfg.insert_ratio * (row_text[r + 1] - row_text[r]) + 0.5), n - size)
            counts.append(count if count > 0 and size >= 2 else 0)
        if any(counts):
            src, src_offsets = self._insert(src, src_offsets, counts, rngs)
        return _Noised(src, src_offsets, ids, offsets, order, starts, stops, outcomes, per_row, counts)

    def _parse(
        self, input_ids: Any, sentence_ends: Any, doc_ends: Any
    ) -> tuple[np.ndarray, int, list[int], list[int]]:
        """The ids, whether they start with ``[CLS]``, the sentence and document ends (lists: the small
        per-row arrays are cheaper as lists)."""
        ids = np.asarray(input_ids)
        if ids.ndim != 1:
            raise ValueError(f"input_ids must be 1-D, got shape {ids.shape}")
        if doc_ends is None:
            docs = (ids == self.special.sep).nonzero()[0].tolist()
        else:
            docs = np.asarray(doc_ends, np.int64).tolist()
        ends = docs if sentence_ends is None else np.asarray(sentence_ends, np.int64).tolist()
        return ids, int(len(ids) > 0 and ids[0] == self.special.cls), ends, docs

    def _generator(self, epoch: int, index: int) -> np.random.Generator:
        """The row's own generator: ``default_rng(SeedSequence([seed, epoch, index]))``."""
        return np.random.default_rng(np.random.SeedSequence([self.seed, epoch, index]))

    # -- 1, 2: sentence permutation and rotation -------------------------------------------------------

    def _reorder(
        self,
        parsed: list[tuple[np.ndarray, int, list[int], list[int]]],
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
            for (ids, first, _, docs), off, rng in zip(parsed, offsets, rngs, strict=False):
                begins = [first] + [d + 1 for d in docs]
                stops = docs + [len(ids)]  # a tail without [SEP] ends at the row's end
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

    def _draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return self._length_cdf.searchsorted(rng.random(n), side="right")

    def _spans(
        self, x: np.ndarray, text: np.ndarray, row_text: list[int], rngs: list[np.random.Generator]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple[int, int, np.ndarray, int]]]:
        """The chosen pieces as batch offsets (starts, stops, outcomes), and per row: maskable units,
        chosen units, the drawn span lengths and the zero-length draws. ``text``: the maskable tokens,
        ``row_text``: where each row starts in it."""
        cfg = self.cfg
        run = np.ones(len(text), dtype=bool)  # the first token of each run of maskable tokens: a document,
        np.not_equal(text[1:], text[:-1] + 1, out=run[1:])  # text after a stray special, or a new row
        run[[t for t in row_text[1:-1] if t < len(text)]] = True
        if cfg.whole_word and self._word_start is not None:
            word = self._word_start[x[text]]
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
                per_row.append((units, 0, _EMPTY, 0))
                continue
            budget = min(units, max(1, int(cfg.mask_ratio * units + 0.5)))
            if cfg.span_layout == "tiled":
                lo, hi = (
                    bisect.bisect_left(regions, row_units[r]),
                    bisect.bisect_left(regions, row_units[r + 1]),
                )
                region = [u - row_units[r] for u in regions[lo:hi]]
                first, last, drawn, chosen = self._tiled(units, region, budget, rng)
                per_row.append((units, chosen, drawn, 0))
            else:
                first, last, drawn, zeros = self._scattered(units, budget, rng)
                per_row.append((units, budget, drawn, zeros))
            starts.append(first + row_units[r])
            stops.append(last + row_units[r])
            draws.append(rng.random(len(first)))
        if not starts:
            return _EMPTY, _EMPTY, _EMPTY, per_row
        first, last = np.concatenate(starts), np.concatenate(stops)
        outcomes = self._outcome_cdf.searchsorted(np.concatenate(draws), side="right")
        if cfg.span_layout == "scattered":
            first, last, outcomes = _split(first, last, outcomes, regions)
        if unit_first is not None:
            bounds = np.concatenate((unit_first, [len(text)]))
            first, last = bounds[first], bounds[last]
        return text[first], text[last - 1] + 1, outcomes, per_row

    def _tiled(
        self, units: int, region: list[int], budget: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """UER-py: cut each document into back-to-back spans, take them in random order while they fit."""
        draws = self._draw(rng, units)
        if self._min_length < 1:
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
        lengths = (stops - starts)[perm]  # in the order the spans are tried
        total = lengths.cumsum()
        fit = int(total.searchsorted(budget, side="right"))  # the longest prefix within the budget
        room = budget - (int(total[fit - 1]) if fit else 0)
        take = perm[:fit]
        extra, pos = [], fit + 1
        while room > 0 and pos < used:  # UER-py skips a span that does not fit and goes on
            fits = (lengths[pos:] <= room).nonzero()[0]
            if not len(fits):
                break
            pos += int(fits[0])
            extra.append(perm[pos])
            room -= int(lengths[pos])
            pos += 1
        if extra:
            take = np.concatenate((take, extra))
        take.sort()
        return starts[take], stops[take], draws[:used], budget - room

    def _scattered(
        self, units: int, budget: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """fairseq: lengths summing to the budget, placed at random without overlap; zeros -> inserts."""
        drawn = self._draw(rng, int(1.25 * budget / self._mean_length) + 8)
        cum = drawn.cumsum()
        while cum[-1] < budget:
            drawn = np.concatenate(
                (drawn, self._draw(rng, int(1.25 * (budget - cum[-1]) / self._mean_length) + 8))
            )
            cum = drawn.cumsum()
        last = int(cum.searchsorted(budget))  # the first draw that reaches the budget
        drawn, cum = drawn[: last + 1], cum[: last + 1]
        before = cum - drawn  # units in the spans before each
        cum[-1] = budget  # the last length is cut to hit the budget
        spans = drawn.nonzero()[0]
        k = len(spans)
        places = rng.permutation(units - budget + k)[:k]  # k of the (gaps + spans) places
        places.sort()
        places -= np.arange(k)  # span j starts at its place + (units in spans before it) - j
        return places + before[spans], places + cum[spans], drawn, last + 1 - k

    # -- 4, 5, 6: replacement, collapsing, insertion ---------------------------------------------------

    def _random_tokens(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``random_ids[rng.integers(len(random_ids), size=n)]``; one scalar draw at a time (the same
        draws) when that is cheaper."""
        if n <= 3:
            return self._random_ids[[rng.integers(len(self._random_ids)) for _ in range(n)]]
        return self._random_ids[rng.integers(len(self._random_ids), size=n)]

    def _replace(
        self,
        x: np.ndarray,
        offsets: list[int],
        starts: np.ndarray,
        stops: np.ndarray,
        outcomes: np.ndarray,
        rngs: list[np.random.Generator],
    ) -> tuple[np.ndarray, list[int]]:
        """Steps 4 and 5: the batch's source and its row offsets."""
        n = len(x)
        if not len(starts):
            return x.copy(), offsets
        mask_id, cfg = self.special.mask, self.cfg
        made = keep = None
        if cfg.replace_length == -1:
            kind = np.zeros(n + 1, dtype=np.int64)  # the outcome of the piece each token is in (KEEP outside)
            kind[starts] = outcomes
            kind[stops] -= outcomes
            kind = kind[:n].cumsum()
            made = kind == MASK  # the [MASK] tokens the noise makes
            src = np.where(made, mask_id, x)
            rand = (kind == RANDOM).nonzero()[0]
            if not cfg.collapse_masks:
                made = None
        else:
            if cfg.keep_ratio > 0:  # kept pieces change nothing
                changed = outcomes != KEEP
                starts, stops, outcomes = starts[changed], stops[changed], outcomes[changed]
            is_rand = outcomes == RANDOM
            rand = starts[is_rand]
            src = x.copy()
            drop = np.zeros(n + 1, dtype=np.int64)  # +1 where a piece's dropped tokens begin, -1 after
            if cfg.replace_length == 1:
                src[starts] = mask_id
                drop[starts + 1] = 1
            else:
                drop[starts] = 1
            drop[stops] -= 1
            keep = drop[:n].cumsum() == 0
            if cfg.replace_length == 0:  # a masked piece goes, a random one leaves its head
                keep[rand] = True
            if cfg.collapse_masks:
                made = np.zeros(n, dtype=bool)
                if cfg.replace_length == 1:
                    made[starts[~is_rand]] = True
        if len(rand):
            per_row = rand.searchsorted(offsets).tolist()
            src[rand] = np.concatenate(
                [
                    self._random_tokens(b - a, rng)
                    for a, b, rng in zip(per_row, per_row[1:], rngs, strict=False)
                    if b > a
                ]
            )
        if keep is not None:
            src, offsets = _select(src, offsets, keep)
            if made is not None:
                made = made[keep]
        if made is not None:
            src, offsets = _select(src, offsets, _collapse(src, made, mask_id, offsets))
        return src, offsets

    def _insert(
        self, src: np.ndarray, offsets: list[int], counts: list[int], rngs: list[np.random.Generator]
    ) -> tuple[np.ndarray, list[int]]:
        """Step 6: ``counts[r]`` tokens inserted into row ``r``; the new source and its row offsets."""
        places, rands, tokens, starts, new_offsets, added = [], [], [], [], [0], 0
        for r, (count, rng) in enumerate(zip(counts, rngs, strict=False)):
            if count:
                starts.append(offsets[r] + added + 1)  # never before the first or after the last token
                places.append(rng.permutation(offsets[r + 1] - offsets[r] + count - 2)[:count])
                rands.append(rng.random(count) < self.cfg.random_ratio)
                randoms = np.count_nonzero(rands[-1])
                if randoms:
                    tokens.append(self._random_tokens(randoms, rng))
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
        return out, new_offsets


def _select(src: np.ndarray, offsets: list[int], keep: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """``src[keep]`` and its row offsets."""
    kept = [np.count_nonzero(keep[a:b]) for a, b in itertools.pairwise(offsets)]
    return src[keep], [0, *itertools.accumulate(kept)]


def _collapse(src: np.ndarray, made: np.ndarray, mask_id: int, offsets: list[int]) -> np.ndarray:
    """Which tokens stay when each run of consecutive ``[MASK]`` (in a row) becomes one; a run holding
    ``[MASK]`` tokens that were in the input (``src == mask_id`` and not ``made``) keeps exactly those."""
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


def _sentences(
    parsed: list[tuple[np.ndarray, int, list[int], list[int]]], offsets: list[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]:
    """The sentences of a batch: starts and ends (batch offsets), the document of each (numbered across the
    batch), and their count in each row. ``ValueError`` if a row's offsets do not fit the shard format,
    e.g. a sentence that holds ``[CLS]`` or a document's ``[SEP]`` (a data bug)."""
    starts: list[int] = []
    ends: list[int] = []
    doc: list[int] = []
    sizes: list[int] = []
    base = 0  # the number of the row's first document
    for (ids, first, row_ends, docs), off in zip(parsed, offsets, strict=False):
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
    return np.array(starts, np.int64), np.array(ends, np.int64), np.array(doc, np.int64), sizes


def _split(
    starts: np.ndarray, stops: np.ndarray, outcomes: np.ndarray, cuts: list[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split the sorted, disjoint spans at the ``cuts`` that fall strictly inside one."""
    after = stops.searchsorted(cuts, side="right").tolist()  # the first span ending after each cut
    cuts = [c for c, j in zip(cuts, after, strict=True) if j < len(starts) and starts[j] < c]
    if not cuts:
        return starts, stops, outcomes
    new_starts = np.sort(np.concatenate((starts, cuts)))
    new_stops = np.sort(np.concatenate((stops, cuts)))
    return new_starts, new_stops, outcomes[starts.searchsorted(new_starts, side="right") - 1]
