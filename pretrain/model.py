"""Build ``BartForConditionalGeneration`` from the config (or an existing checkpoint) for a tokenizer."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from transformers import BartConfig, BartForConditionalGeneration, GenerationConfig

from data_prep.errors import UserError
from pretrain.config import NOT_BART_FIELDS, ModelConfig
from pretrain.uer import check_uer, load_uer, uer_shape, uer_to_hf_state_dict

UER_SUFFIXES = (".bin", ".pt")  # how a model.init_from that does not exist says it meant a UER file


def special_ids(tokenizer: Any) -> dict[str, int]:
    """BART's special ids as UER-py's Chinese BART uses them: start = [CLS], end = [SEP], pad = [PAD]."""
    return {
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.cls_token_id,
        "eos_token_id": tokenizer.sep_token_id,
        "decoder_start_token_id": tokenizer.cls_token_id,
        "forced_eos_token_id": tokenizer.sep_token_id,
    }


def bart_config(cfg: ModelConfig, vocab_size: int, ids: dict[str, int]) -> BartConfig:
    arch = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name not in NOT_BART_FIELDS}
    return BartConfig(**{**arch, "vocab_size": vocab_size}, **ids)


def unigram_log_prior(rows: datasets.Dataset, vocab_size: int, max_rows: int = 50_000) -> torch.Tensor:
    """log P(token), add-one smoothed, over at most ``max_rows`` evenly spaced rows of ``input_ids``."""
    step = max(1, -(-len(rows) // max_rows))
    sample = rows.select(range(0, len(rows), step)).with_format("numpy")["input_ids"]
    ids = np.concatenate(list(sample)).astype(np.int64)
    counts = np.bincount(ids, minlength=vocab_size)[:vocab_size] + 1.0
    return torch.from_numpy(np.log(counts / counts.sum())).float()


def build_model(
    cfg: ModelConfig, tokenizer: Any, vocab_file: Path, train_rows: datasets.Dataset | None = None
) -> BartForConditionalGeneration:
    """A fresh model from ``cfg`` or, with ``cfg.init_from``, a copy of that checkpoint; vocab must match.

    ``init_logits_bias: unigram`` starts a fresh model's output bias at the log unigram frequencies of
    ``train_rows``: BART's ``final_logits_bias`` is a buffer that is never trained, so otherwise the
    token embeddings must carry the unigram prior, and a small model with tied embeddings can sit at
    the unigram baseline for hundreds of steps before it learns to copy from the encoder.

    ``tie_word_embeddings: false`` with ``logits_bias: trained`` is UER-py's BART head (the seed's):
    one token embedding for encoder and decoder, an output projection of its own, a trained output bias.
    """
    ids = special_ids(tokenizer)
    if cfg.vocab_size is not None and cfg.vocab_size != len(tokenizer):
        raise UserError(
            f"model.vocab_size is {cfg.vocab_size} but the data's tokenizer has {len(tokenizer)} "
            f"tokens: set --model.vocab_size {len(tokenizer)} (or null to follow the tokenizer)"
        )
    if cfg.init_from:
        model = _load_pretrained(cfg, tokenizer, vocab_file)
        model.config.update(ids)
    else:
        config = bart_config(cfg, len(tokenizer), ids)
        model = BartForConditionalGeneration._from_config(config, attn_implementation=cfg.attn_implementation)
        if cfg.init_logits_bias == "unigram" and train_rows is not None:
            with torch.no_grad():
                model.final_logits_bias.copy_(unigram_log_prior(train_rows, config.vocab_size)[None])
    if not model.config.tie_word_embeddings:
        share_token_embeddings(model, loaded=bool(cfg.init_from))
    if cfg.logits_bias == "trained":
        train_logits_bias(model)
    model.generation_config = generation_config(ids, model.config.max_position_embeddings)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    return model


def share_token_embeddings(model: BartForConditionalGeneration, loaded: bool) -> None:
    """Make the encoder's and the decoder's token embeddings ``model.shared`` itself, as UER-py's
    ``share_embedding`` and transformers 4.x do: transformers 5 builds an untied BART with three token
    matrices. A ``loaded`` model whose three differ (trained apart elsewhere) keeps them apart.

    Its state dict then holds copies under the three names: transformers 5 saves one of the tensors that
    share storage and, untied, would load the other two as fresh random tables (and checkpoints and
    exports must load anywhere without this function)."""
    shared, inner = model.model.shared, model.model
    for side in (inner.encoder, inner.decoder):
        if loaded and not torch.equal(side.embed_tokens.weight, shared.weight):
            continue
        side.embed_tokens.weight = shared.weight
    inner.register_state_dict_post_hook(_copy_token_embeddings)


def _copy_token_embeddings(module: torch.nn.Module, state: dict[str, Any], prefix: str, meta: Any) -> None:
    """State-dict hook of ``share_token_embeddings``: each table that shares ``shared``'s storage copied."""
    shared = state[f"{prefix}shared.weight"]
    for side in ("encoder", "decoder"):
        key = f"{prefix}{side}.embed_tokens.weight"
        if state[key].untyped_storage().data_ptr() == shared.untyped_storage().data_ptr():
            state[key] = state[key].detach().clone()


def train_logits_bias(model: BartForConditionalGeneration) -> None:
    """Replace the ``final_logits_bias`` buffer by a parameter of the same name, shape and value: it is then
    trained (as UER-py's output-layer bias) and still saved under the key transformers loads."""
    bias = model.final_logits_bias.detach().clone()
    del model.final_logits_bias
    model.final_logits_bias = torch.nn.Parameter(bias)


def _load_pretrained(cfg: ModelConfig, tokenizer: Any, vocab_file: Path) -> BartForConditionalGeneration:
    """An export (a directory) or a UER-py / TencentPretrain BART state dict (a file: ``model.bin``, or
    ``model.bin-250000`` as UER-py names its checkpoints; a missing ``.bin``/``.pt`` is reported as such)."""
    src = Path(cfg.init_from)
    if src.is_file() or (src.suffix in UER_SUFFIXES and not src.exists()):
        model = _load_uer(cfg, src, tokenizer)
    else:
        model = _load_hf(cfg, src, vocab_file)
    if model.config.vocab_size != len(tokenizer):
        raise UserError(
            f"model.init_from {src} has vocab_size {model.config.vocab_size} but the data's "
            f"tokenizer has {len(tokenizer)} tokens"
        )
    return model


def _load_hf(cfg: ModelConfig, src: Path, vocab_file: Path) -> BartForConditionalGeneration:
    if not (src / "config.json").is_file():
        raise UserError(
            f"model.init_from {src} is not a Hugging Face model directory (no config.json) "
            "nor a UER-py model file"
        )
    if (src / "vocab.txt").is_file() and _sha256(src / "vocab.txt") != _sha256(vocab_file):
        raise UserError(
            f"model.init_from {src} has a different vocab.txt than the data's tokenizer "
            f"({vocab_file}): prepare the data with that model's tokenizer"
        )
    return BartForConditionalGeneration.from_pretrained(str(src), attn_implementation=cfg.attn_implementation)


def _load_uer(cfg: ModelConfig, src: Path, tokenizer: Any) -> BartForConditionalGeneration:
    """Converted in memory as ``pretrain.convert uer-to-hf`` does; the layer sizes come from the tensors,
    the heads (which the tensors do not record), dropout and activation from ``cfg``."""
    state = load_uer(src)
    encoder_layers, decoder_layers = check_uer(state, f"model.init_from {src}", None, None)
    return uer_model(state, encoder_layers, decoder_layers, cfg, special_ids(tokenizer))


def uer_model(
    state: dict[str, torch.Tensor],
    encoder_layers: int,
    decoder_layers: int,
    base: ModelConfig,
    ids: dict[str, int],
) -> BartForConditionalGeneration:
    """``BartForConditionalGeneration`` holding the UER weights; the shape comes from the tensors, the rest
    (heads, dropout, activation, attention backend) from ``base``."""
    shape = uer_shape(state, encoder_layers, decoder_layers)
    for heads in {base.encoder_attention_heads, base.decoder_attention_heads}:
        if shape.d_model % heads:
            raise UserError(f"{heads} attention heads do not divide d_model {shape.d_model}: set the heads")
    arch = dataclasses.replace(
        base, **{k: v for k, v in dataclasses.asdict(shape).items() if k != "vocab_size"}
    )
    config = bart_config(arch, shape.vocab_size, ids)
    model = BartForConditionalGeneration._from_config(config, attn_implementation=base.attn_implementation)
    model.load_state_dict(uer_to_hf_state_dict(state, encoder_layers, decoder_layers), strict=True)
    return model


def generation_config(ids: dict[str, int], max_length: int) -> GenerationConfig:
    """The generation settings our exports carry: greedy, from [CLS] to [SEP]. A max_length of its own keeps
    the decoder within its position table, and makes transformers 4.x pipelines drop their default
    max_new_tokens=256 and honour the caller's max_length."""
    return GenerationConfig(**ids, num_beams=1, do_sample=False, max_length=max_length)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
