"""``pretrain.model``: the unigram prior that starts an untrained model's output bias; UER-py's head (one
token embedding, its own lm_head, a trained bias) as built. (Trained, exported, resumed: in
tests/e2e/test_model_e2e.py.)"""

from __future__ import annotations

import pytest
import torch
from helpers import SMALL_BART, UER_HEAD, small_tokenizer

from data_prep.errors import UserError


def test_unigram_log_prior_and_the_logits_bias_it_initialises(tmp_path):
    import datasets
    from transformers import BertTokenizer

    from pretrain.config import ModelConfig, load_config
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
    with pytest.raises(
        UserError, match="'model.init_logits_bias' must be one of zeros, unigram, not 'prior'"
    ):
        load_config(None, {"model.init_logits_bias": "prior"})


def test_the_uer_head_one_token_embedding_its_own_lm_head_a_trained_bias(tmp_path):

    from pretrain.config import ModelConfig, TrainConfig, load_config
    from pretrain.model import build_model
    from pretrain.optim import build_optimizer

    tok = small_tokenizer(tmp_path)
    model = build_model(ModelConfig(**SMALL_BART, **UER_HEAD, init_std=0.05), tok, tmp_path / "vocab.txt")
    inner = model.model
    assert inner.encoder.embed_tokens.weight is inner.shared.weight is inner.decoder.embed_tokens.weight
    assert model.lm_head.weight is not inner.shared.weight
    assert 0.03 < model.lm_head.weight.std().item() < 0.07  # its own N(0, init_std) draw
    assert not torch.equal(model.lm_head.weight, inner.shared.weight)
    params = dict(model.named_parameters())
    assert isinstance(model.final_logits_bias, torch.nn.Parameter) and "final_logits_bias" in params
    assert model.state_dict()["final_logits_bias"].shape == (1, len(tok))  # the key transformers loads
    decay, no_decay = build_optimizer(model, TrainConfig(), fused=False).param_groups
    assert any(p is model.final_logits_bias for p in no_decay["params"]) and no_decay["weight_decay"] == 0
    assert any(p is model.lm_head.weight for p in decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(params)

    tied = build_model(ModelConfig(**SMALL_BART), tok, tmp_path / "vocab.txt")  # the default: as before
    assert tied.lm_head.weight is tied.model.shared.weight
    assert (
        "final_logits_bias" not in dict(tied.named_parameters()) and "final_logits_bias" in tied.state_dict()
    )
    with pytest.raises(UserError, match="'model.logits_bias' must be one of frozen, trained, not 'learned'"):
        load_config(None, {"model.logits_bias": "learned"})
