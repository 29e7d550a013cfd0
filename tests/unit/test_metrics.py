"""``pretrain.metrics``: the FLOP count behind train/mfu, on the real source and target lengths."""

from __future__ import annotations

import numpy as np
import pytest
from transformers import BartConfig

from pretrain.collate import DenoisingCollator
from pretrain.metrics import Throughput, batch_flops, flops_per_token, matmul_params


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


def hand_count(s: int, t: int) -> int:
    """d=4, 1+1 layers, FFN 8, vocab 10, counted weight by weight; training = 3 x forward, 2 FLOPs a MAC."""
    d, f, v = 4, 8, 10
    encoder_token = 4 * d * d + 2 * d * f  # q k v o, fc1 fc2
    decoder_token = 4 * d * d + 2 * d * d + 2 * d * f + d * v  # self q k v o, cross q o, fc1 fc2, LM head
    cross_kv = 2 * d * d  # cross-attention k v, applied to the s encoder states
    weights = 6 * (encoder_token * s + decoder_token * t + cross_kv * s)
    scores = 3 * 2 * 2 * d * (s * s + t * t + t * s)  # QK^T and AV of the three attentions, fwd + bwd
    return weights + scores


def test_batch_flops_against_a_hand_count():
    config = BartConfig(
        vocab_size=10, d_model=4, encoder_layers=1, decoder_layers=1, encoder_ffn_dim=8, decoder_ffn_dim=8
    )
    assert hand_count(3, 2) == 6192 and hand_count(5, 4) == 12528  # worked on paper, too
    assert batch_flops(config, np.array([3, 5]), np.array([2, 4])) == 6192 + 12528
    # at S = T the count per token is flops_per_token's
    assert batch_flops(config, np.array([7]), np.array([7])) == pytest.approx(7 * flops_per_token(config, 7))


def test_the_meter_counts_real_lengths_not_padding():
    config = BartConfig(
        vocab_size=10, d_model=4, encoder_layers=1, decoder_layers=1, encoder_ffn_dim=8, decoder_ffn_dim=8
    )
    rows = [{"input_ids": [1] * 3, "labels": [1] * 3}, {"input_ids": [1] * 5, "labels": [1] * 5}]
    batch = DenoisingCollator(pad_id=0, pad_to_multiple_of=8)(rows)  # padded to 8 x 8
    meter = Throughput(config, peak_flops=None)
    meter.add(batch)
    assert meter.counts == [2, 2 + 4, 16, 6192 + 12528]  # targets 3-1 and 5-1 tokens; 2 x 8 positions
