"""UER-py BART state dicts written out from the key names UER-py's conversion scripts use, independently of
the tables in ``pretrain/convert.py``, and what each Hugging Face tensor must be: the fixtures of the
conversion tests (tests/unit/test_convert.py, tests/e2e/test_convert_e2e.py). Every tensor is distinct
random data (LayerNorms and the output bias included), so a swapped or misplaced tensor shows."""

from __future__ import annotations

import torch
from transformers import BartConfig, BartForConditionalGeneration

D, ENC_FFN, DEC_FFN, POSITIONS, HEADS = 32, 48, 40, 64, 4
ENC, DEC = 2, 1  # unequal, so that encoder and decoder layers cannot be confused


def randomize(model: BartForConditionalGeneration, seed: int) -> BartForConditionalGeneration:
    """Every weight and the logits bias random (LayerNorms too, which start as ones and zeros)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in [*model.parameters(), model.final_logits_bias]:
            tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.2)
    return model


def hf_model(vocab_size: int, tie: bool = True, seed: int = 0) -> BartForConditionalGeneration:
    config = BartConfig(
        vocab_size=vocab_size, d_model=D, encoder_layers=ENC, decoder_layers=DEC,
        encoder_attention_heads=HEADS, decoder_attention_heads=HEADS, encoder_ffn_dim=ENC_FFN,
        decoder_ffn_dim=DEC_FFN, max_position_embeddings=POSITIONS, tie_word_embeddings=tie,
        pad_token_id=0, bos_token_id=2, eos_token_id=3, decoder_start_token_id=2, forced_eos_token_id=3,
    )  # fmt: skip
    return randomize(BartForConditionalGeneration(config), seed).eval()


def uer_state(vocab_size: int, old_names: bool = False, seed: int = 1) -> dict[str, torch.Tensor]:
    """A UER-py BART state dict (as ``pretrain.py`` saves it: shared word embedding and output layer)."""
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=gen) * 0.2

    word = rand(vocab_size, D)
    names = ("word_embedding", "position_embedding", "target.output_layer")
    if not old_names:
        names = ("word.embedding", "pos.embedding", "target.lm.output_layer")
    state = {
        f"embedding.{names[0]}.weight": word,
        f"tgt_embedding.{names[0]}.weight": word,
        f"embedding.{names[1]}.weight": rand(POSITIONS, D),
        f"tgt_embedding.{names[1]}.weight": rand(POSITIONS, D),
        f"{names[2]}.weight": word,
        f"{names[2]}.bias": rand(vocab_size),
    }
    for prefix in ("embedding.layer_norm", "tgt_embedding.layer_norm"):
        state |= {f"{prefix}.gamma": rand(D), f"{prefix}.beta": rand(D)}

    def attention(prefix: str) -> None:
        for part in ("linear_layers.0", "linear_layers.1", "linear_layers.2", "final_linear"):
            state.update({f"{prefix}.{part}.weight": rand(D, D), f"{prefix}.{part}.bias": rand(D)})

    def block(prefix: str, ffn: int, norms: int) -> None:
        state.update({f"{prefix}.feed_forward.linear_1.weight": rand(ffn, D)})
        state.update({f"{prefix}.feed_forward.linear_1.bias": rand(ffn)})
        state.update({f"{prefix}.feed_forward.linear_2.weight": rand(D, ffn)})
        state.update({f"{prefix}.feed_forward.linear_2.bias": rand(D)})
        for n in range(1, norms + 1):
            state.update(
                {f"{prefix}.layer_norm_{n}.gamma": rand(D), f"{prefix}.layer_norm_{n}.beta": rand(D)}
            )

    for i in range(ENC):
        attention(f"encoder.transformer.{i}.self_attn")
        block(f"encoder.transformer.{i}", ENC_FFN, 2)
    for i in range(DEC):
        attention(f"decoder.transformer_decoder.{i}.self_attn")
        attention(f"decoder.transformer_decoder.{i}.context_attn")
        block(f"decoder.transformer_decoder.{i}", DEC_FFN, 3)
    return state


def expected_hf(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """What each HF tensor must be, spelled out per the key mapping UER-py's script applies."""
    zeros = torch.zeros(2, D)
    hf = {
        "model.shared.weight": state["embedding.word.embedding.weight"],
        "model.encoder.embed_tokens.weight": state["embedding.word.embedding.weight"],
        "model.decoder.embed_tokens.weight": state["tgt_embedding.word.embedding.weight"],
        "model.encoder.embed_positions.weight": torch.cat([zeros, state["embedding.pos.embedding.weight"]]),
        "model.decoder.embed_positions.weight": torch.cat(
            [zeros, state["tgt_embedding.pos.embedding.weight"]]
        ),
        "lm_head.weight": state["target.lm.output_layer.weight"],
        "final_logits_bias": state["target.lm.output_layer.bias"][None],
        "model.encoder.layernorm_embedding.weight": state["embedding.layer_norm.gamma"],
        "model.encoder.layernorm_embedding.bias": state["embedding.layer_norm.beta"],
        "model.decoder.layernorm_embedding.weight": state["tgt_embedding.layer_norm.gamma"],
        "model.decoder.layernorm_embedding.bias": state["tgt_embedding.layer_norm.beta"],
    }
    attention = {"q_proj": "linear_layers.0", "k_proj": "linear_layers.1", "v_proj": "linear_layers.2"}
    attention["out_proj"] = "final_linear"
    for stack, uer_stack, layers, hf_parts in (
        ("encoder", "encoder.transformer", ENC, {"self_attn": "self_attn"}),
        ("decoder", "decoder.transformer_decoder", DEC,
         {"self_attn": "self_attn", "encoder_attn": "context_attn"}),
    ):  # fmt: skip
        norms = {
            "self_attn_layer_norm": "layer_norm_1",
            "final_layer_norm": f"layer_norm_{len(hf_parts) + 1}",
        }
        if stack == "decoder":
            norms["encoder_attn_layer_norm"] = "layer_norm_2"
        for i in range(layers):
            h, u = f"model.{stack}.layers.{i}", f"{uer_stack}.{i}"
            for hf_attn, uer_attn in hf_parts.items():
                for proj, linear in attention.items():
                    for p in ("weight", "bias"):
                        hf[f"{h}.{hf_attn}.{proj}.{p}"] = state[f"{u}.{uer_attn}.{linear}.{p}"]
            for fc, linear in (("fc1", "linear_1"), ("fc2", "linear_2")):
                for p in ("weight", "bias"):
                    hf[f"{h}.{fc}.{p}"] = state[f"{u}.feed_forward.{linear}.{p}"]
            for hf_norm, uer_norm in norms.items():
                hf[f"{h}.{hf_norm}.weight"] = state[f"{u}.{uer_norm}.gamma"]
                hf[f"{h}.{hf_norm}.bias"] = state[f"{u}.{uer_norm}.beta"]
    return hf
