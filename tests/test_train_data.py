"""The trainer's data plumbing: per-rank sampling, resumable positions, the eval set, FLOP counts."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from transformers import BartConfig

from data_prep.errors import UserError
from pretrain.evaluate import EvalExample, corrupted_mask, rank_slice, unigram_accuracy
from pretrain.metrics import flops_per_token, matmul_params


def take(sampler, n):
    return list(itertools.islice(iter(sampler), n))


def keys(batches):
    return [k for batch in batches for k in batch]


def test_ranks_see_disjoint_examples_and_together_cover_the_epoch():
    from pretrain.data import EpochBatchSampler

    n, b = 103, 4  # 103 // 8 = 12 global batches per epoch, 7 rows dropped
    r0 = keys(take(EpochBatchSampler(n, b, 0, 2, seed=1), 12))
    r1 = keys(take(EpochBatchSampler(n, b, 1, 2, seed=1), 12))
    assert not set(r0) & set(r1)
    assert len(set(r0) | set(r1)) == 96 and {e for e, _ in r0 + r1} == {0}
    nxt = take(EpochBatchSampler(n, b, 0, 2, seed=1), 13)[-1]
    assert {e for e, _ in nxt} == {1}  # the next epoch, with a new order
    assert take(EpochBatchSampler(n, b, 0, 2, seed=1), 13) == take(EpochBatchSampler(n, b, 0, 2, seed=1), 13)
    assert take(EpochBatchSampler(n, b, 0, 2, seed=2), 1) != take(EpochBatchSampler(n, b, 0, 2, seed=1), 1)


def test_one_rank_with_grad_accum_sees_what_two_ranks_see_per_step():
    from pretrain.data import EpochBatchSampler

    one = take(EpochBatchSampler(50, 3, 0, 1, seed=5), 10)
    two = [take(EpochBatchSampler(50, 3, r, 2, seed=5), 5) for r in (0, 1)]
    for step in range(5):  # micro-batches 2*step and 2*step+1 of 1 rank == step of ranks 0 and 1
        assert one[2 * step] == two[0][step] and one[2 * step + 1] == two[1][step]


def test_a_sampler_started_at_a_saved_position_continues_exactly():
    from pretrain.data import EpochBatchSampler

    whole = EpochBatchSampler(30, 4, 1, 2, seed=3)
    expected = take(whole, 9)
    pos = (0, 0)
    for _ in range(5):
        pos = whole.advance(*pos)
    assert pos == (1, 16)  # 30 // 8 = 3 batches per epoch: epoch 1 after 2 batches of it
    assert take(EpochBatchSampler(30, 4, 1, 2, seed=3, epoch=pos[0], offset=pos[1]), 4) == expected[5:]


def test_too_few_examples_for_one_global_batch():
    from pretrain.data import EpochBatchSampler

    with pytest.raises(UserError, match="fewer than one batch"):
        EpochBatchSampler(7, 4, 0, 2, seed=0)


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


def test_flops_per_token_of_bart_4_768():
    config = BartConfig(
        vocab_size=21128,
        d_model=768,
        encoder_layers=4,
        decoder_layers=4,
        encoder_ffn_dim=3072,
        decoder_ffn_dim=3072,
        encoder_attention_heads=12,
        decoder_attention_heads=12,
    )
    enc, dec = matmul_params(config)
    assert (enc + dec) / 1e6 == pytest.approx(82.3, abs=0.5)
    assert flops_per_token(config, 512) / 1e9 == pytest.approx(0.55, abs=0.01)


def test_unigram_log_prior_and_the_logits_bias_it_initialises(tmp_path):
    import datasets
    import torch
    from transformers import BertTokenizer

    from pretrain.config import ModelConfig
    from pretrain.model import build_model, unigram_log_prior

    rows = datasets.Dataset.from_dict({"input_ids": [[2, 5, 5, 5, 6, 3], [2, 5, 6, 3]] * 10})
    prior = unigram_log_prior(rows, vocab_size=8)
    assert prior.shape == (8,) and torch.exp(prior).sum().item() == pytest.approx(1.0)
    assert prior.argmax().item() == 5 and prior[6] > prior[7] and torch.isfinite(prior).all()  # add-one
    sampled = unigram_log_prior(rows.select([0, 7, 14]), 8)  # every 7th row of 20 when at most 3
    assert torch.allclose(unigram_log_prior(rows, 8, max_rows=3), sampled)

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "c"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizer.from_pretrained(str(tmp_path))
    small = {"vocab_size": None, "d_model": 16, "encoder_layers": 1, "decoder_layers": 1,
             "encoder_attention_heads": 2, "decoder_attention_heads": 2, "encoder_ffn_dim": 32,
             "decoder_ffn_dim": 32, "max_position_embeddings": 16}  # fmt: skip
    unigram = build_model(ModelConfig(**small, init_logits_bias="unigram"), tok, tmp_path / "vocab.txt", rows)
    assert torch.allclose(unigram.final_logits_bias[0], unigram_log_prior(rows, 8))
    zeros = build_model(ModelConfig(**small), tok, tmp_path / "vocab.txt", rows)
    assert not zeros.final_logits_bias.any()
    with pytest.raises(UserError, match="init_logits_bias must be zeros or unigram"):
        build_model(ModelConfig(**small, init_logits_bias="prior"), tok, tmp_path / "vocab.txt", rows)
