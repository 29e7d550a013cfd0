"""The vectorized ``Denoiser`` against ``data_prep.noise.reference.Reference``, the per-token spec.

The two make the same noise with different generators, so they are compared on statistics over 400
synthetic rows of 512 ids, for the four configurations of ``bench/bench_noise.py`` and both settings of
``span_overlap`` and ``insert_random``. The tolerances are about 5 standard deviations of the difference
between the two (4 for the random-token share), measured over 15 epochs; they still fail when
``mask_ratio`` is off by 0.02, collapsing is switched, ``random_ratio`` is off by 0.03, insertion is
dropped, spans stop overlapping or the insertion rule is switched.
"""

from __future__ import annotations

import numpy as np
import pytest

from data_prep.noise import Denoiser, NoiseConfig, SpecialIds
from data_prep.noise.reference import Reference

PAD, UNK, CLS, SEP, MSK = 0, 100, 101, 102, 103
VOCAB, PIECE, SEQ, ROWS = 30000, 25000, 512, 400  # ids >= PIECE are "##" pieces
SP = SpecialIds(pad=PAD, unk=UNK, cls=CLS, sep=SEP, mask=MSK, vocab_size=VOCAB)
CONFIGS = {
    "uer": ("uer", {}),
    "bart": ("bart", {}),
    "uer+all": ("uer", {"whole_word": True, "rotate": 0.5, "insert_ratio": 0.05}),
    "bart+all": ("bart", {"rotate": 0.5, "insert_ratio": 0.05}),
    # the other placement and insertion rule (the bart preset before it followed fairseq)
    "bart-disjoint": ("bart", {"span_overlap": False, "insert_random": "per_token"}),
    # a few inserts, where the two insertion rules differ most: fairseq makes ceil(0.1 * 2) = 1 of 2 random
    "bart+inserts": ("bart", {"mask_ratio": 0.02, "insert_ratio": 0.004}),
}
# relative tolerance on: mean source length, [MASK] share of the source, random-token share of the source
TOLERANCE = (0.004, 0.035, 0.14)
Row = tuple[np.ndarray, np.ndarray, np.ndarray]


def make_row(rng: np.random.Generator) -> Row:
    """``[CLS]``, 1-4 documents each closed by ``[SEP]``, ~20 sentences; 3% of the text is an input
    ``[UNK]``, ``[MASK]`` or ``[PAD]`` (the last two the noise must keep as they are)."""
    ids = rng.integers(MSK + 1, VOCAB, size=SEQ)
    stray = rng.random(SEQ) < 0.03
    ids[stray] = rng.choice([UNK, MSK, PAD], size=int(stray.sum()))
    seps = rng.choice(np.arange(37, SEQ - 37, 37), int(rng.integers(0, 4)), replace=False)
    doc_ends = sorted(seps.tolist()) + [SEQ - 1]
    ids[0], ids[doc_ends] = CLS, SEP
    cuts = set(rng.choice(np.arange(2, SEQ - 1), 20, replace=False).tolist()) - {d + 1 for d in doc_ends}
    return ids, np.array(sorted(cuts | set(doc_ends))), np.array(doc_ends)


@pytest.fixture(scope="module")
def rows() -> list[Row]:
    rng = np.random.default_rng(0)
    return [make_row(rng) for _ in range(ROWS)]


@pytest.fixture(scope="module", params=list(CONFIGS))
def sources(request, rows) -> dict[str, list[np.ndarray]]:
    """The sources of ``rows`` made by each implementation (epoch 0, index = row number)."""
    preset, overrides = CONFIGS[request.param]
    fast = Denoiser(
        NoiseConfig.from_preset(preset, **overrides), SP, seed=1, word_start=np.arange(VOCAB) < PIECE
    )
    ref = Reference.like(fast)
    return {
        "denoiser": [src for src, _ in fast.batch(rows, 0, range(len(rows)))],
        "reference": [np.array(ref(*row, epoch=0, index=i)) for i, row in enumerate(rows)],
    }


def statistics(srcs: list[np.ndarray], rows: list[Row]) -> tuple[float, float, float]:
    """Mean source length, share of [MASK] in the sources, share of tokens not in their input row (random
    tokens, less the < 2% of them that happen to be in the row already: the same bias for both)."""
    total = sum(len(s) for s in srcs)
    masks = sum(int(np.count_nonzero(s == MSK)) for s in srcs)
    new = sum(int(np.count_nonzero(~np.isin(s, row[0]))) for s, row in zip(srcs, rows, strict=True))
    return total / len(srcs), masks / total, new / total


def test_statistics_agree(sources, rows):
    fast, ref = (statistics(sources[name], rows) for name in ("denoiser", "reference"))
    for what, f, r, tol in zip(("length", "[MASK] share", "random share"), fast, ref, TOLERANCE, strict=True):
        assert abs(f / r - 1) <= tol, f"{what}: denoiser {f:.4f}, reference {r:.4f}"


@pytest.mark.parametrize("name", ["denoiser", "reference"])
def test_invariants(sources, rows, name):
    for src, (ids, _, _) in zip(sources[name], rows, strict=True):
        assert src[0] == CLS and src[-1] == SEP and len(src) <= len(ids)
        for special in (CLS, SEP, PAD):  # never corrupted, never moved into or out of the example
            assert np.count_nonzero(src == special) == np.count_nonzero(ids == special)
        assert np.count_nonzero(src == MSK) >= np.count_nonzero(ids == MSK)  # the input's [MASK] stay
        assert src.min() >= 0 and src.max() < VOCAB


WORD_CONFIGS = {"bart": ("bart", {}), "uer+whole_word": ("uer", {"whole_word": True, "rotate": 0.5})}


@pytest.fixture(scope="module")
def word_rows(rows) -> list[tuple[np.ndarray, ...]]:
    """``rows`` with ``word_continues`` as ``prepare --segment`` writes them: 45% of the tokens continue a
    word (never [CLS], a [SEP] or a sentence's first token), many more than the ``##`` pieces."""
    rng = np.random.default_rng(1)
    out = []
    for ids, sentence_ends, doc_ends in rows:
        cont = rng.random(len(ids)) < 0.45
        cont[[0, 1, *doc_ends.tolist(), *[e for e in sentence_ends.tolist() if e < len(ids)]]] = False
        out.append((ids, sentence_ends, doc_ends, np.flatnonzero(cont)))
    return out


@pytest.mark.parametrize("name", list(WORD_CONFIGS))
def test_statistics_agree_with_word_boundaries(word_rows, rows, name):
    preset, overrides = WORD_CONFIGS[name]
    fast = Denoiser(
        NoiseConfig.from_preset(preset, **overrides), SP, seed=1, word_start=np.arange(VOCAB) < PIECE
    )
    ref = Reference.like(fast)
    by_fast = statistics([src for src, _ in fast.batch(word_rows, 0, range(ROWS))], rows)
    by_ref = statistics([np.array(ref(*row, epoch=0, index=i)) for i, row in enumerate(word_rows)], rows)
    for what, f, r, tol in zip(
        ("length", "[MASK] share", "random share"), by_fast, by_ref, TOLERANCE, strict=True
    ):
        assert abs(f / r - 1) <= tol, f"{what}: denoiser {f:.4f}, reference {r:.4f}"
    if preset == "bart":  # teeth: by the ## pieces alone (the boundaries ignored) the noise is another one
        by_pieces = statistics([src for src, _ in fast.batch(rows, 0, range(ROWS))], rows)
        assert abs(by_pieces[1] / by_fast[1] - 1) > 3 * TOLERANCE[1]
