"""``pretrain.heldout``: which target tokens count as corrupted, the accuracies, the unigram baseline, rank
shares."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from accelerate import Accelerator

from pretrain.collate import DenoisingCollator
from pretrain.heldout import EvalExample, corrupted_mask, evaluate, rank_slice, unigram_accuracy


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


class CopyModel(torch.nn.Module):
    """Predicts at decoder position j the source token j + 1: right wherever the source carries the
    target through unmoved, wrong at every [MASK] (what a 5-minute model mostly does)."""

    def __init__(self, vocab: int):
        super().__init__()
        self.vocab = vocab

    def forward(self, input_ids, decoder_input_ids, **_):
        guess = torch.nn.functional.pad(input_ids[:, 1:], (0, 1))[:, : decoder_input_ids.shape[1]]
        return SimpleNamespace(logits=torch.nn.functional.one_hot(guess, self.vocab).float())


def test_accuracy_is_split_into_corrupted_and_copied_tokens():
    tgt = np.array([101, 5, 6, 7, 8, 9, 102])
    src = np.array([101, 5, 103, 7, 103, 9, 102])  # 6 and 8 masked: 2 corrupted, 4 copied labels
    one = EvalExample(0, src, tgt, corrupted_mask(src, tgt))
    same = EvalExample(1, tgt, tgt, corrupted_mask(tgt, tgt))  # nothing corrupted: 6 copied labels
    metrics = evaluate(CopyModel(110), [one, same], DenoisingCollator(pad_id=0), 2, Accelerator(cpu=True))
    assert metrics["eval/accuracy"] == 0.0  # the copy model never fills in a [MASK]
    assert metrics["eval/accuracy_copied"] == 1.0
    assert metrics["eval/token_accuracy"] == pytest.approx(10 / 12)
