"""UER-py / TencentPretrain BART state dicts <-> Hugging Face BART: the key mapping; UER files read safely.

The tensors are mapped exactly as UER-py's ``scripts/convert_bart_from_uer_to_huggingface.py`` and
``convert_bart_from_huggingface_to_uer.py`` map them (both post-LN, no final encoder/decoder LayerNorm):
the seed model was made by the first. BART's position table has two leading offset rows that no
position ever reads; UER's table has none, so they are dropped going to UER and written as zeros
coming back, as UER-py does. A ``.bin`` is opened with ``torch.load(weights_only=True)``: a file that
needs code to unpickle is refused. ``pretrain.model`` builds a model from these tensors;
``python -m pretrain.convert`` (``pretrain.cli.convert``) writes the files.
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, BartForConditionalGeneration

from data_prep.errors import UserError, first_line

POSITION_OFFSET = 2  # BartLearnedPositionalEmbedding's leading rows
BERT_CHINESE_IDS = {  # [PAD] [CLS] [SEP] of the BERT-Chinese vocab, when no --vocab is given
    "pad_token_id": 0,
    "bos_token_id": 101,
    "eos_token_id": 102,
    "decoder_start_token_id": 101,
    "forced_eos_token_id": 102,
}
BERT_CHINESE_SIZE = 21128

WORD, TGT_WORD = "embedding.word.embedding.weight", "tgt_embedding.word.embedding.weight"
POS, TGT_POS = "embedding.pos.embedding.weight", "tgt_embedding.pos.embedding.weight"
OUT_W, OUT_B = "target.lm.output_layer.weight", "target.lm.output_layer.bias"
# UER-py before its modular embeddings (2022) spelled these keys so.
OLD_NAMES = {
    "embedding.word_embedding.weight": WORD,
    "tgt_embedding.word_embedding.weight": TGT_WORD,
    "embedding.position_embedding.weight": POS,
    "tgt_embedding.position_embedding.weight": TGT_POS,
    "target.output_layer.weight": OUT_W,
    "target.output_layer.bias": OUT_B,
}
EMBEDDING_NORMS = {  # UER LayerNorm prefix -> HF LayerNorm prefix
    "embedding.layer_norm": "model.encoder.layernorm_embedding",
    "tgt_embedding.layer_norm": "model.decoder.layernorm_embedding",
}
ENCODER = ("encoder.transformer", "model.encoder.layers")
DECODER = ("decoder.transformer_decoder", "model.decoder.layers")
ATTENTION = {"linear_layers.0": "q_proj", "linear_layers.1": "k_proj", "linear_layers.2": "v_proj"}
ATTENTION["final_linear"] = "out_proj"
ENCODER_LAYER = {  # UER module in a layer -> HF module (LayerNorms: gamma/beta -> weight/bias)
    **{f"self_attn.{u}": f"self_attn.{h}" for u, h in ATTENTION.items()},
    "layer_norm_1": "self_attn_layer_norm",
    "feed_forward.linear_1": "fc1",
    "feed_forward.linear_2": "fc2",
    "layer_norm_2": "final_layer_norm",
}
DECODER_LAYER = {
    **{f"self_attn.{u}": f"self_attn.{h}" for u, h in ATTENTION.items()},
    "layer_norm_1": "self_attn_layer_norm",
    **{f"context_attn.{u}": f"encoder_attn.{h}" for u, h in ATTENTION.items()},
    "layer_norm_2": "encoder_attn_layer_norm",
    "feed_forward.linear_1": "fc1",
    "feed_forward.linear_2": "fc2",
    "layer_norm_3": "final_layer_norm",
}


def _params(uer: str, hf: str) -> list[tuple[str, str]]:
    """A module's parameter pairs: UER's LayerNorm has gamma/beta where torch has weight/bias."""
    names = ("gamma", "beta") if "layer_norm" in uer else ("weight", "bias")
    return [(f"{uer}.{u}", f"{hf}.{h}") for u, h in zip(names, ("weight", "bias"), strict=True)]


def layer_pairs(encoder_layers: int, decoder_layers: int) -> list[tuple[str, str]]:
    """(UER key, HF key) of every transformer-layer tensor and of the two embedding LayerNorms."""
    pairs = [p for uer, hf in EMBEDDING_NORMS.items() for p in _params(uer, hf)]
    for (uer_stack, hf_stack), layers, table in (
        (ENCODER, encoder_layers, ENCODER_LAYER),
        (DECODER, decoder_layers, DECODER_LAYER),
    ):
        for i in range(layers):
            for uer, hf in table.items():
                pairs += _params(f"{uer_stack}.{i}.{uer}", f"{hf_stack}.{i}.{hf}")
    return pairs


def uer_keys(encoder_layers: int, decoder_layers: int) -> set[str]:
    return {WORD, TGT_WORD, POS, TGT_POS, OUT_W, OUT_B} | {
        u for u, _ in layer_pairs(encoder_layers, decoder_layers)
    }


def count_layers(keys: Any, stack: str) -> int:
    """1 + the highest layer index under ``stack`` (0 when there is none)."""
    found = {int(m.group(1)) for k in keys if (m := re.match(rf"{re.escape(stack)}\.(\d+)\.", k))}
    return max(found) + 1 if found else 0


def load_uer(path: Path) -> dict[str, torch.Tensor]:
    """A UER state dict from ``path``, loaded without running pickled code; old key names renamed."""
    if not path.exists():
        raise UserError(f"no such file: {path}")
    if path.is_dir():
        raise UserError(f"{path} is a directory, not a UER-py model file (MODEL.bin)")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols: the error below says enough
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a file it cannot read
        needs = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if needs:
            raise UserError(
                f"{path} needs code to unpickle ({needs.group(1)}): refused, "
                "UER-py model files hold tensors only (torch.load weights_only=True)"
            ) from None
        raise UserError(f"{path} is not a PyTorch checkpoint ({type(exc).__name__})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path} is not a state dict (a mapping of names to tensors)")
    return {OLD_NAMES[k] if k in OLD_NAMES and OLD_NAMES[k] not in state else k: v for k, v in state.items()}


def _listing(keys: set[str], limit: int = 8) -> str:
    shown = sorted(keys)[:limit]
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(shown) + more


def check_uer(
    state: dict[str, torch.Tensor], name: str, encoder_layers: int | None, decoder_layers: int | None
) -> tuple[int, int]:
    """The layer counts (inferred from the keys unless given); any missing or extra key is a UserError."""
    enc = count_layers(state, ENCODER[0]) if encoder_layers is None else encoder_layers
    dec = count_layers(state, DECODER[0]) if decoder_layers is None else decoder_layers
    expected = uer_keys(enc, dec)
    missing, unexpected = expected - state.keys(), state.keys() - expected
    if missing or unexpected or not (enc and dec):
        parts = [f"{name} is not a UER-py BART state dict with {enc} encoder + {dec} decoder layers"]
        if missing:
            parts.append(f"missing {len(missing)} keys: {_listing(missing)}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} keys: {_listing(unexpected)}")
        raise UserError("; ".join(parts))
    return enc, dec


def uer_to_hf_state_dict(state: dict[str, torch.Tensor], encoder_layers: int, decoder_layers: int) -> dict:
    """The ``BartForConditionalGeneration`` state dict UER-py's conversion script writes, key for key."""
    word = state[WORD]
    offset = torch.zeros(POSITION_OFFSET, word.shape[1], dtype=state[POS].dtype)
    hf = {
        "model.shared.weight": word,
        "model.encoder.embed_tokens.weight": word,
        "model.decoder.embed_tokens.weight": state[TGT_WORD],
        "model.encoder.embed_positions.weight": torch.cat([offset, state[POS]]),
        "model.decoder.embed_positions.weight": torch.cat([offset, state[TGT_POS]]),
        "lm_head.weight": state[OUT_W],
        "final_logits_bias": state[OUT_B].unsqueeze(0),
    }
    hf.update({h: state[u] for u, h in layer_pairs(encoder_layers, decoder_layers)})
    return hf


def hf_to_uer_state_dict(hf: dict[str, torch.Tensor], encoder_layers: int, decoder_layers: int) -> dict:
    """The UER state dict UER-py's reverse script writes (the position slices copied, not views)."""
    state = {
        POS: hf["model.encoder.embed_positions.weight"][POSITION_OFFSET:].clone(),
        TGT_POS: hf["model.decoder.embed_positions.weight"][POSITION_OFFSET:].clone(),
        WORD: hf["model.encoder.embed_tokens.weight"],
        TGT_WORD: hf["model.decoder.embed_tokens.weight"],
        OUT_W: hf["lm_head.weight"],
        OUT_B: hf["final_logits_bias"].squeeze(0),
    }
    state.update({u: hf[h] for u, h in layer_pairs(encoder_layers, decoder_layers)})
    return state


@dataclasses.dataclass(frozen=True)
class Shape:
    """What the tensors of a UER BART say about its architecture."""

    vocab_size: int
    d_model: int
    encoder_layers: int
    decoder_layers: int
    encoder_ffn_dim: int
    decoder_ffn_dim: int
    max_position_embeddings: int
    tie_word_embeddings: bool

    def describe(self, heads: int) -> str:
        tied = "tied" if self.tie_word_embeddings else "separate"
        return (
            f"{self.encoder_layers} encoder + {self.decoder_layers} decoder layers, d_model {self.d_model}, "
            f"{heads} heads, ffn {self.encoder_ffn_dim}/{self.decoder_ffn_dim}, vocab {self.vocab_size}, "
            f"{self.max_position_embeddings} positions, {tied} embeddings"
        )


def uer_shape(state: dict[str, torch.Tensor], encoder_layers: int, decoder_layers: int) -> Shape:
    vocab, d_model = state[WORD].shape
    positions = {state[POS].shape[0], state[TGT_POS].shape[0]}
    if len(positions) != 1:
        raise UserError(f"the encoder and decoder position tables differ ({sorted(positions)} rows)")
    word, tgt, out = state[WORD], state[TGT_WORD], state[OUT_W]
    tied = word.shape == tgt.shape == out.shape and torch.equal(word, tgt) and torch.equal(word, out)
    return Shape(
        vocab_size=vocab,
        d_model=d_model,
        encoder_layers=encoder_layers,
        decoder_layers=decoder_layers,
        encoder_ffn_dim=state[f"{ENCODER[0]}.0.feed_forward.linear_1.weight"].shape[0],
        decoder_ffn_dim=state[f"{DECODER[0]}.0.feed_forward.linear_1.weight"].shape[0],
        max_position_embeddings=positions.pop(),
        tie_word_embeddings=tied,
    )


def load_hf(path: Path) -> BartForConditionalGeneration:
    """A Hugging Face BART directory, refused when it is not one or when a weight is missing from it."""
    if not (path / "config.json").is_file():
        raise UserError(f"{path} is not a Hugging Face model directory (no config.json)")
    try:
        config = AutoConfig.from_pretrained(str(path))
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {path / 'config.json'}: {exc}") from None
    if config.model_type != "bart":
        raise UserError(f"{path} holds a {config.model_type} model, not BART")
    if config.scale_embedding:
        raise UserError(f"{path} scales its token embeddings (scale_embedding), which UER-py's BART cannot")
    try:
        model, info = BartForConditionalGeneration.from_pretrained(str(path), output_loading_info=True)
    except Exception as exc:  # noqa: BLE001 - a bad weights file raises OSError, SafetensorError, ...
        reason = first_line(exc)
        raise UserError(f"cannot load {path}: {reason}") from None
    lost = set(info["missing_keys"]) - {"final_logits_bias"} | set(info["mismatched_keys"])
    if lost:
        raise UserError(f"{path} lacks {len(lost)} weights: {_listing(lost)}")
    return model
