"""Throughput accounting: real tokens per second, fill ratio, FLOPs of the real lengths and MFU."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from transformers import BartConfig

# Dense bf16/fp16 tensor-core peak FLOP/s by device-name fragment (first match wins).
PEAK_FLOPS = [
    ("H200", 989e12),
    ("H100 PCIe", 756e12),
    ("H100", 989e12),
    ("GH200", 989e12),
    ("B200", 2250e12),
    ("A100", 312e12),
    ("A800", 312e12),
    ("H800", 989e12),
    ("L40S", 362e12),
    ("L40", 181e12),
    ("L4", 121e12),
    ("A10G", 125e12),
    ("A10", 125e12),
    ("4090", 165e12),
    ("3090", 71e12),
    ("V100", 125e12),
    ("T4", 65e12),
]


def matmul_params(config: BartConfig) -> tuple[int, int]:
    """Matmul weights an encoder token / a decoder token goes through (the LM head is the decoder's)."""
    d, v = config.d_model, config.vocab_size
    enc_layer = 4 * d * d + 2 * d * config.encoder_ffn_dim
    dec_layer = 8 * d * d + 2 * d * config.decoder_ffn_dim
    return config.encoder_layers * enc_layer, config.decoder_layers * dec_layer + d * v


def flops_per_token(config: BartConfig, seq_len: int) -> float:
    """Training FLOPs (forward + backward) per target token, for source and target both ``seq_len`` long.

    6 x matmul weights, plus the attention score/value products: 12 x layers x d x seq for encoder
    self-attention, decoder self-attention and cross-attention (the PaLM appendix B count).
    For bart-4-768 at 512 this is ~0.55 GFLOP. ``batch_flops`` is the same count on real lengths.
    """
    enc, dec = matmul_params(config)
    attn = 12 * config.d_model * seq_len * (config.encoder_layers + 2 * config.decoder_layers)
    return 6 * (enc + dec) + attn


def batch_flops(config: BartConfig, sources: np.ndarray, targets: np.ndarray) -> float:
    """Training FLOPs of one batch from each example's real source length S and target length T.

    Per example, forward + backward = 3 x forward, a matmul of a k x n weight costs 2kn per row:

        6 * (E * S + D * T + Lkv * S) + 12 * d * (Le * S^2 + Ld * (T^2 + T * S))

    with E = ``matmul_params`` encoder weights, Lkv = Ld x 2d^2 the cross-attention key/value
    projections (they run on the S encoder states, not on the T decoder tokens), D = the decoder's
    other weights plus the LM head (d x vocab), Le / Ld the encoder / decoder layers. The second
    term is QK^T and AV: encoder self-attention S x S, decoder self-attention T x T (counted whole,
    as PaLM and MosaicML do, not halved for the causal mask) and cross-attention T x S. Pads cost
    nothing here: the MFU counts useful work only. ``flops_per_token`` is this per token at S = T.
    """
    d = config.d_model
    enc, dec = matmul_params(config)
    cross_kv = config.decoder_layers * 2 * d * d
    s, t = np.asarray(sources, dtype=np.float64), np.asarray(targets, dtype=np.float64)
    matmul = 6 * (enc * s + (dec - cross_kv) * t + cross_kv * s)
    attn = 12 * d * (config.encoder_layers * s * s + config.decoder_layers * (t * t + t * s))
    return float((matmul + attn).sum())


def peak_flops(device: torch.device) -> float | None:
    """The device's dense bf16 peak, or None when unknown (CPU, unlisted GPU)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_FLOPS if key in name), None)


@dataclass
class Throughput:
    """This rank's counts since the last report: examples, real (non-pad) target tokens, padded target
    positions and the training FLOPs of the real source and target lengths (``batch_flops``)."""

    config: BartConfig
    peak_flops: float | None
    counts: list[float] = field(default_factory=lambda: [0, 0, 0, 0.0])
    started: float = field(default_factory=time.perf_counter)
    paused_for: float = 0.0

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Time spent inside (evaluation, checkpoints) does not count against throughput."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.paused_for += time.perf_counter() - start

    def add(self, batch: dict[str, torch.Tensor]) -> None:
        """Count one micro-batch: call it on the CPU batch, before it moves to the device (in numpy,
        so it never touches a device tensor)."""
        labels = batch["labels"].numpy()
        targets = (labels != -100).sum(1)
        self.counts[0] += labels.shape[0]
        self.counts[1] += int(targets.sum())
        self.counts[2] += labels.size
        self.counts[3] += batch_flops(self.config, batch["attention_mask"].numpy().sum(1), targets)

    def local(self) -> torch.Tensor:
        return torch.tensor(self.counts, dtype=torch.float64)

    def report(self, totals: torch.Tensor, num_processes: int) -> dict[str, float]:
        """Rates from ``totals`` (the counts summed over all ranks); then start counting afresh."""
        seconds = max(time.perf_counter() - self.started - self.paused_for, 1e-9)
        examples, tokens, positions, flops = (float(x) for x in totals)
        out = {
            "train/examples_per_sec": examples / seconds,
            "train/tokens_per_sec": tokens / seconds,
            "train/fill_ratio": tokens / max(positions, 1.0),
        }
        if self.peak_flops:
            out["train/mfu"] = flops / num_processes / seconds / self.peak_flops
        self.counts = [0, 0, 0, 0.0]
        self.started, self.paused_for = time.perf_counter(), 0.0
        return out
