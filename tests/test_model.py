"""``pretrain.model``: the unigram prior that starts an untrained model's output bias."""

from __future__ import annotations

import pytest

from data_prep.errors import UserError


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
