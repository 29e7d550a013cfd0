"""``pretrain.evaluate``: which target tokens count as corrupted, the unigram baseline, rank shares."""

from __future__ import annotations

import numpy as np
import pytest

from pretrain.evaluate import EvalExample, corrupted_mask, rank_slice, unigram_accuracy


def test_corrupted_positions():
    tgt = np.array([101, 5, 6, 7, 8, 9, 102])
    masked = np.array([101, 5, 103, 7, 8, 9, 102])  # one token masked
    assert corrupted_mask(masked, tgt).tolist() == [False, False, True, False, False, False, False]
    infilled = np.array([101, 5, 103, 9, 102])  # span 6 7 8 -> one [MASK]
    assert corrupted_mask(infilled, tgt).tolist() == [False, False, True, True, True, False, False]
    assert not corrupted_mask(tgt, tgt).any()


def test_unigram_baseline_is_the_best_constant_guess_on_corrupted_tokens():
    tgt = np.array([101, 5, 6, 5, 5, 102])
    a = EvalExample(0, tgt, tgt, np.array([False, True, True, True, False, False]))  # 5 6 5
    b = EvalExample(1, tgt, tgt, np.array([False, False, True, False, True, False]))  # 6 5
    assert unigram_accuracy([a, b]) == pytest.approx(3 / 5)
    filler = EvalExample(-1, tgt, tgt, np.ones(6, dtype=bool), weight=0)  # padding is not counted
    assert unigram_accuracy([b, filler]) == pytest.approx(1 / 2)
    assert unigram_accuracy([]) == 0.0


def test_eval_shares_are_disjoint_and_equal_length():
    examples = [EvalExample(i, np.array([i]), np.array([i]), np.array([False])) for i in range(7)]
    shares = [rank_slice(examples, r, 3) for r in range(3)]
    assert [len(s) for s in shares] == [3, 3, 3]
    real = sorted(e.row for s in shares for e in s if e.weight)
    assert real == list(range(7))
