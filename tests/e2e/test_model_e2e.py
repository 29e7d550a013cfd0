"""``pretrain.model``'s UER-py head after training: exported after an optimizer step, plain transformers
loads the same logits and ``model.init_from`` gives back the same head; a run with it resumes exactly."""

from __future__ import annotations

import pytest
import torch
from helpers import SMALL_BART, UER_HEAD, small_logits, small_tokenizer

pytestmark = pytest.mark.slow  # trains


def test_the_uer_head_exports_what_transformers_loads_and_continues_from_it(tmp_path):
    """After a training step moved the bias and the separate lm_head, the export gives plain transformers
    the same logits, and ``model.init_from`` the export gives back the same head (the bias trainable)."""
    from transformers import BartForConditionalGeneration

    from pretrain.config import ModelConfig, TrainConfig
    from pretrain.model import build_model
    from pretrain.optim import build_optimizer

    tok = small_tokenizer(tmp_path)
    model = build_model(ModelConfig(**SMALL_BART, **UER_HEAD), tok, tmp_path / "vocab.txt")
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
        ModelConfig(**SMALL_BART, logits_bias="trained", init_from=str(tmp_path / "export")),
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
