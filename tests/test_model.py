"""``pretrain.model``: the unigram prior that starts an untrained model's output bias."""

from __future__ import annotations

import pytest
import torch

from data_prep.errors import UserError


def test_unigram_log_prior_and_the_logits_bias_it_initialises(tmp_path):
    import datasets
    import torch
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


SMALL = {"vocab_size": None, "d_model": 16, "encoder_layers": 1, "decoder_layers": 1,
         "encoder_attention_heads": 2, "decoder_attention_heads": 2, "encoder_ffn_dim": 32,
         "decoder_ffn_dim": 32, "max_position_embeddings": 16}  # fmt: skip
UER_HEAD = {"tie_word_embeddings": False, "logits_bias": "trained"}


def small_tokenizer(root):
    from transformers import BertTokenizer

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"abcdefghijklmnopqrstuvwxyz"]
    (root / "vocab.txt").write_text("\n".join(vocab) + "\n")
    return BertTokenizer.from_pretrained(str(root))


def small_logits(model) -> torch.Tensor:
    ids = torch.tensor([[2, 7, 9, 11, 5, 3], [2, 8, 6, 3, 0, 0]])
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=(ids != 0).long(), decoder_input_ids=ids[:, :-1]).logits


def test_the_uer_head_one_token_embedding_its_own_lm_head_a_trained_bias(tmp_path):
    import torch

    from pretrain.config import ModelConfig, TrainConfig, load_config
    from pretrain.model import build_model
    from pretrain.optim import build_optimizer

    tok = small_tokenizer(tmp_path)
    model = build_model(ModelConfig(**SMALL, **UER_HEAD, init_std=0.05), tok, tmp_path / "vocab.txt")
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

    tied = build_model(ModelConfig(**SMALL), tok, tmp_path / "vocab.txt")  # the default: as before
    assert tied.lm_head.weight is tied.model.shared.weight
    assert (
        "final_logits_bias" not in dict(tied.named_parameters()) and "final_logits_bias" in tied.state_dict()
    )
    with pytest.raises(UserError, match="'model.logits_bias' must be one of frozen, trained, not 'learned'"):
        load_config(None, {"model.logits_bias": "learned"})


def test_the_uer_head_exports_what_transformers_loads_and_continues_from_it(tmp_path):
    """After a training step moved the bias and the separate lm_head, the export gives plain transformers
    the same logits, and ``model.init_from`` the export gives back the same head (the bias trainable)."""
    import torch
    from transformers import BartForConditionalGeneration

    from pretrain.config import ModelConfig, TrainConfig
    from pretrain.model import build_model
    from pretrain.optim import build_optimizer

    tok = small_tokenizer(tmp_path)
    model = build_model(ModelConfig(**SMALL, **UER_HEAD), tok, tmp_path / "vocab.txt")
    optimizer = build_optimizer(model, TrainConfig(lr=1e-2), fused=False)
    ids = torch.tensor([[2, 7, 9, 11, 5, 3]])
    model(input_ids=ids, decoder_input_ids=ids[:, :-1], labels=ids[:, 1:]).loss.backward()
    optimizer.step()
    assert model.final_logits_bias.abs().min() > 0  # trained: every entry moved from zero
    model.save_pretrained(str(tmp_path / "export"))  # as pretrain.export writes it

    loaded = BartForConditionalGeneration.from_pretrained(str(tmp_path / "export"))
    assert not loaded.config.tie_word_embeddings
    assert torch.equal(small_logits(loaded), small_logits(model.eval()))
    again = build_model(
        ModelConfig(**SMALL, logits_bias="trained", init_from=str(tmp_path / "export")),
        tok,
        tmp_path / "vocab.txt",
    )
    assert again.model.encoder.embed_tokens.weight is again.model.shared.weight
    assert again.model.decoder.embed_tokens.weight is again.model.shared.weight
    assert isinstance(again.final_logits_bias, torch.nn.Parameter)
    assert torch.equal(again.final_logits_bias, model.final_logits_bias)
    assert torch.equal(small_logits(again.eval()), small_logits(model))


@pytest.mark.slow  # trains twice
def test_the_uer_head_resumes_exactly(shards, tmp_path):
    """UER-py's head with a trained bias, killed during step 6 (last checkpoint: step 4) and resumed ==
    never interrupted, bit for bit (the bias's AdamW state included)."""
    import torch
    from helpers import run_training, train_until_interrupted
    from safetensors.torch import load_file

    settings = {"train.max_steps": 8, "train.save_every": 4, "data.num_workers": 1}
    settings |= {"model.tie_word_embeddings": False, "model.logits_bias": "trained"}
    whole = run_training(shards, tmp_path / "whole", **settings)
    train_until_interrupted(shards, tmp_path / "resumed", 6, **settings)
    resumed = run_training(shards, tmp_path / "resumed", **settings, **{"train.resume": "auto"})
    a, b = load_file(whole / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert a["final_logits_bias"].abs().min() > 0 and not torch.equal(
        a["lm_head.weight"], a["model.shared.weight"]
    )
    assert torch.equal(a["model.encoder.embed_tokens.weight"], a["model.shared.weight"])
    assert torch.equal(a["model.decoder.embed_tokens.weight"], a["model.shared.weight"])
