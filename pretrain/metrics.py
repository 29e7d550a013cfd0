"""Throughput accounting: real tokens per second, fill ratio, FLOPs per token and MFU."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

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
    For bart-4-768 at 512 this is ~0.55 GFLOP.
    """
    enc, dec = matmul_params(config)
    attn = 12 * config.d_model * seq_len * (config.encoder_layers + 2 * config.decoder_layers)
    return 6 * (enc + dec) + attn


def peak_flops(device: torch.device) -> float | None:
    """The device's dense bf16 peak, or None when unknown (CPU, unlisted GPU)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_FLOPS if key in name), None)


@dataclass
class Throughput:
    """This rank's counts since the last report: examples, real (non-pad) target tokens, padded positions."""

    flops_per_token: float
    peak_flops: float | None
    counts: list[int] = field(default_factory=lambda: [0, 0, 0])
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
        """Count one micro-batch (call it on the CPU batch, before it moves to the device)."""
        labels = batch["labels"]
        self.counts[0] += labels.shape[0]
        self.counts[1] += int((labels != -100).sum())
        self.counts[2] += labels.numel()

    def local(self) -> torch.Tensor:
        return torch.tensor(self.counts, dtype=torch.float64)

    def report(self, totals: torch.Tensor, num_processes: int) -> dict[str, float]:
        """Rates from ``totals`` (the counts summed over all ranks); then start counting afresh."""
        seconds = max(time.perf_counter() - self.started - self.paused_for, 1e-9)
        examples, tokens, positions = (float(x) for x in totals)
        out = {
            "train/examples_per_sec": examples / seconds,
            "train/tokens_per_sec": tokens / seconds,
            "train/fill_ratio": tokens / max(positions, 1.0),
        }
        if self.peak_flops:
            out["train/mfu"] = tokens / num_processes * self.flops_per_token / seconds / self.peak_flops
        self.counts = [0, 0, 0]
        self.started, self.paused_for = time.perf_counter(), 0.0
        return out
