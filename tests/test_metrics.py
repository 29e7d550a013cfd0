"""``pretrain.metrics``: the FLOP count behind train/mfu."""

from __future__ import annotations

import pytest
from transformers import BartConfig

from pretrain.metrics import flops_per_token, matmul_params


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
