"""BART denoising noise on token-id arrays: sentence permutation, span masking / text infilling, insertion.

``Denoiser(cfg, special, seed)(input_ids, sentence_ends, doc_ends, epoch=e, index=i)`` returns
``(src, tgt)``: the corrupted encoder input and the original example, both int64. The corruption is a
pure function of ``(seed, epoch, index)`` (a NumPy generator seeded with ``SeedSequence([seed, epoch,
index])``), so it is the same on any number of loader workers or ranks and after a resume, and new
every epoch.

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

import difflib
import math
import re
import typing
from dataclasses import dataclass
from typing import Any

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


class Denoiser:
    """Corrupts one example at a time; picklable, so it can live in DataLoader worker processes."""

    _arange = np.arange(0)  # grown on demand: token positions as views, without a new arange per call

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
        trace = self.trace(input_ids, sentence_ends, doc_ends, epoch=epoch, index=index)
        return trace.src, trace.tgt

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
        ids = np.array(input_ids, dtype=np.int64)
        n = len(ids)
        if ids.ndim != 1:
            raise ValueError(f"input_ids must be 1-D, got shape {ids.shape}")
        unsigned = getattr(getattr(input_ids, "dtype", None), "kind", "") == "u"
        if n and (ids.max() >= self.special.vocab_size or (not unsigned and ids.min() < 0)):
            raise ValueError(f"input_ids outside the vocab of {self.special.vocab_size}")
        docs = (ids == self.special.sep).nonzero()[0] if doc_ends is None else np.asarray(doc_ends, np.int64)
        doc_list = docs.tolist()  # the small per-row arrays are cheaper as lists
        ends = doc_list if sentence_ends is None else np.asarray(sentence_ends, np.int64).tolist()
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, int(epoch), int(index)]))
        first = int(n > 0 and ids[0] == self.special.cls)
        order = self._reorder(n, first, _sentences(n, first, ends, doc_list), doc_list, rng)
        x = ids[order]
        maskable = self._maskable[x]
        maskable[docs] = False
        cpos = maskable.nonzero()[0]
        starts, stops, outcomes, units, chosen, drawn, zeros = self._spans(x, cpos, rng)
        src = self._replace(x, starts, stops, outcomes, rng)
        inserted = min(zeros + int(self.cfg.insert_ratio * len(cpos) + 0.5), n - len(src))
        if inserted > 0 and len(src) >= 2:
            src = self._insert(src, inserted, rng)
        else:
            inserted = 0
        return Trace(src, ids, order, starts, stops, outcomes, units, chosen, drawn, inserted)

    # -- 1, 2: sentence permutation and rotation -------------------------------------------------------

    def _reorder(
        self,
        n: int,
        first: int,
        sentences: tuple[list[int], list[int], list[int]],
        docs: list[int],
        rng: np.random.Generator,
    ) -> np.ndarray:
        starts, ends, doc = sentences
        if len(self._arange) < n:
            self._arange = np.arange(max(n, 2 * len(self._arange)))
        positions = self._arange[:n]
        if self.cfg.permute_sentences > 0 and len(starts) >= 2:
            new = self._sentence_order(np.array(doc), rng).tolist()
            # the sentences in their new order, back to back; the [SEP] between two documents stays
            pieces = [positions[:first]]
            for slot, j in enumerate(new[:-1]):
                pieces.append(positions[starts[j] : ends[j]])
                if starts[slot + 1] > ends[slot]:
                    pieces.append(positions[ends[slot] : starts[slot + 1]])
            pieces += [positions[starts[new[-1]] : ends[new[-1]]], positions[ends[-1] :]]
            order = np.concatenate(pieces)
        else:
            order = positions.copy()
        if self.cfg.rotate > 0:
            begins = [first] + [d + 1 for d in docs]
            stops = docs + [n]  # a tail without [SEP] ends at n
            for d in (rng.random(len(stops)) < self.cfg.rotate).nonzero()[0].tolist():
                a, b = begins[d], stops[d]
                if b - a >= 2:
                    cut = a + int(rng.integers(1, b - a))
                    order[a:b] = np.concatenate((order[cut:b], order[a:cut]))
        return order

    def _sentence_order(self, doc: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A new order of the sentences (``doc``: their document, non-decreasing), moving each within
        its document: ``ceil(p * n)`` random sentences of each document swap places among themselves."""
        by_key = np.lexsort((rng.random(len(doc)), doc))
        p = self.cfg.permute_sentences
        if p >= 1.0:
            return by_key
        counts = np.bincount(doc)
        first = np.cumsum(counts) - counts
        rank = np.empty(len(doc), dtype=np.int64)
        rank[by_key] = np.arange(len(doc)) - first[doc[by_key]]
        slots = (rank < np.ceil(counts * p)[doc]).nonzero()[0]
        new = np.arange(len(doc))
        new[slots] = slots[np.lexsort((rng.random(len(slots)), doc[slots]))]
        return new

    # -- 3: spans ------------------------------------------------------------------------------------

    def _draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return self._length_cdf.searchsorted(rng.random(n), side="right")

    def _spans(
        self, x: np.ndarray, cpos: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int, np.ndarray, int]:
        """Chosen pieces as token offsets (starts, stops, outcomes); units, chosen units, draws, zeros."""
        cfg = self.cfg
        n = len(cpos)
        if n == 0:
            return _EMPTY, _EMPTY, _EMPTY, 0, 0, _EMPTY, 0
        region = np.empty(n, dtype=bool)  # first maskable token of a document (or after a stray special)
        region[0] = True
        np.not_equal(cpos[1:], cpos[:-1] + 1, out=region[1:])
        if cfg.whole_word and self._word_start is not None:
            unit_first = (region | self._word_start[x[cpos]]).nonzero()[0]  # unit -> its first index in cpos
            region_units = region[unit_first].nonzero()[0]
            units = len(unit_first)
        else:
            unit_first = None
            region_units = region.nonzero()[0]
            units = n
        if cfg.mask_ratio <= 0:
            return _EMPTY, _EMPTY, _EMPTY, units, 0, _EMPTY, 0
        budget = min(units, max(1, int(cfg.mask_ratio * units + 0.5)))
        zeros = 0
        if cfg.span_layout == "tiled":
            starts, stops, drawn, chosen = self._tiled(units, region_units, budget, rng)
        else:
            starts, stops, drawn, zeros = self._scattered(units, budget, rng)
            chosen = budget
        outcomes = self._outcome_cdf.searchsorted(rng.random(len(starts)), side="right")
        if cfg.span_layout == "scattered" and len(region_units) > 1:
            starts, stops, outcomes = _split(starts, stops, outcomes, region_units[1:])
        if unit_first is not None:
            bounds = np.empty(units + 1, dtype=np.int64)
            bounds[:-1] = unit_first
            bounds[-1] = n
            starts, stops = bounds[starts], bounds[stops]
        return cpos[starts], cpos[stops - 1] + 1, outcomes, units, chosen, drawn, zeros

    def _tiled(
        self, units: int, region_units: np.ndarray, budget: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """UER-py: cut each document into back-to-back spans, take them in random order while they fit."""
        draws = self._draw(rng, units)
        if self._min_length < 1:
            np.maximum(draws, 1, out=draws)
        cum = np.zeros(units + 1, dtype=np.int64)
        np.cumsum(draws, out=cum[1:])
        if len(region_units) == 1:
            used = int(cum.searchsorted(units))  # spans that start inside the document
            starts = cum[:used]
            stops = cum[1 : used + 1].copy()
            stops[-1] = units
        else:
            region_ends = region_units[1:].tolist() + [units]
            counts, shifts, used = [], [], 0
            for a, b in zip(region_units.tolist(), region_ends, strict=True):
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
        drawn = drawn[: last + 1]
        lengths = drawn.copy()
        lengths[last] = budget - (int(cum[last - 1]) if last else 0)
        lengths = lengths[lengths > 0]
        k = len(lengths)
        slots = rng.permutation(units - budget + k)[:k]  # k of the (gaps + spans) places
        slots.sort()
        cum = lengths.cumsum()
        starts = slots + (cum - lengths - np.arange(k))
        return starts, starts + lengths, drawn, len(drawn) - k

    # -- 4, 5, 6: replacement, collapsing, insertion ---------------------------------------------------

    def _random_tokens(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self._random_ids[rng.integers(len(self._random_ids), size=n)]

    def _replace(
        self,
        x: np.ndarray,
        starts: np.ndarray,
        stops: np.ndarray,
        outcomes: np.ndarray,
        rng: np.random.Generator,
    ) -> np.ndarray:
        n = len(x)
        if not len(starts):
            return x.copy()
        mask_id = self.special.mask
        kind = np.zeros(n + 1, dtype=np.int8)  # the outcome of the piece each token is in (KEEP outside)
        kind[starts] = outcomes
        kind[stops] -= outcomes
        kind = kind[:n].cumsum(dtype=np.int8)
        if self.cfg.replace_length == -1:
            made = kind == MASK  # the [MASK] tokens the noise makes
            src = np.where(made, mask_id, x)
            rand = kind == RANDOM
            count = int(np.count_nonzero(rand))
            if count:
                src[rand] = self._random_tokens(count, rng)
        else:
            heads, head_outcomes = starts, outcomes
            if np.count_nonzero(outcomes) < len(outcomes):  # some spans are kept (KEEP is 0)
                heads, head_outcomes = starts[outcomes != KEEP], outcomes[outcomes != KEEP]
            is_rand = head_outcomes == RANDOM
            src = x.copy()
            src[heads] = mask_id
            count = int(np.count_nonzero(is_rand))
            rand = heads[is_rand] if count else _EMPTY
            if count:
                src[rand] = self._random_tokens(count, rng)
            keep = kind == KEEP
            keep[rand if self.cfg.replace_length == 0 else heads] = True
            made = None
            if self.cfg.collapse_masks:
                made = np.zeros(n, dtype=bool)
                made[heads[~is_rand] if count else heads] = True
                made = made[keep]
            src = src[keep]
        if self.cfg.collapse_masks:
            src = _collapse(src, made, mask_id)
        return src

    def _insert(self, src: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
        size = len(src) + count
        places = rng.permutation(size - 2)[:count] + 1  # never before the first or after the last token
        new = np.zeros(size, dtype=bool)
        new[places] = True
        out = np.empty(size, dtype=np.int64)
        out[~new] = src
        rand = rng.random(count) < self.cfg.random_ratio
        randoms = int(np.count_nonzero(rand))
        if randoms:
            values = np.full(count, self.special.mask, dtype=np.int64)
            values[rand] = self._random_tokens(randoms, rng)
            out[new] = values
        else:
            out[new] = self.special.mask
        return out


def _collapse(src: np.ndarray, made: np.ndarray, mask_id: int) -> np.ndarray:
    """Each run of consecutive ``[MASK]`` becomes one; a run holding ``[MASK]`` tokens that were in the
    input (``src == mask_id`` and not ``made``) keeps exactly those."""
    is_mask = src == mask_id
    after_mask = np.zeros(len(src), dtype=bool)
    np.logical_and(is_mask[1:], is_mask[:-1], out=after_mask[1:])
    if np.count_nonzero(is_mask) == np.count_nonzero(made):  # no [MASK] from the input
        return src[~after_mask]
    inherited = is_mask & ~made
    first = is_mask & ~after_mask
    run = np.cumsum(first) - 1  # the run of consecutive [MASK] each token is in (or follows)
    has_input = np.zeros(int(run[-1]) + 1, dtype=bool)
    has_input[run[inherited]] = True
    return src[~is_mask | inherited | (first & ~has_input[run])]


def _sentences(
    n: int, first: int, ends: list[int], docs: list[int]
) -> tuple[list[int], list[int], list[int]]:
    """The sentences (starts, ends, document index) of a row. ``ValueError`` if its offsets do not fit
    the shard format, e.g. a sentence that holds ``[CLS]`` or a document's ``[SEP]`` (a data bug)."""
    if docs and (docs[0] < first or docs[-1] >= n or sorted(set(docs)) != docs):
        raise ValueError("malformed row: doc_ends do not fit input_ids")
    if not ends:
        return [], [], []
    if ends[0] < first or ends[-1] > n or sorted(ends) != ends:
        raise ValueError("malformed row: sentence_ends do not fit input_ids")
    stop = docs + [n]  # the exclusive end of each document (a tail: n)
    starts, doc = [], []
    start, d, p = first, 0, 0  # p: the first document whose stop is >= the previous sentence's end
    for end in ends:
        if d == len(stop) or end > stop[d]:
            raise ValueError("malformed row: a sentence runs over a document's [SEP]")
        starts.append(start)
        doc.append(d)
        while stop[p] < end:
            p += 1
        if stop[p] == end:  # this sentence closes a document: the next one starts after its [SEP]
            start, d = end + 1, p + 1
        else:
            start, d = end, p
    return starts, ends, doc


def _split(
    starts: np.ndarray, stops: np.ndarray, outcomes: np.ndarray, cuts: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split the sorted, disjoint spans at the ``cuts`` that fall strictly inside one."""
    j = np.minimum(stops.searchsorted(cuts, side="right"), len(stops) - 1)  # the first span ending after
    inside = (starts[j] < cuts) & (stops[j] > cuts)
    if not np.count_nonzero(inside):
        return starts, stops, outcomes
    cuts = cuts[inside]
    new_starts = np.sort(np.concatenate((starts, cuts)))
    new_stops = np.sort(np.concatenate((stops, cuts)))
    return new_starts, new_stops, outcomes[starts.searchsorted(new_starts, side="right") - 1]
