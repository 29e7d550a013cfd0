"""AdamW with UER-py's decay exclusions, and the warmup + linear-decay learning-rate schedule."""

from __future__ import annotations

import torch
from transformers import get_linear_schedule_with_warmup

from pretrain.config import TrainConfig


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig, fused: bool) -> torch.optim.AdamW:
    """AdamW; biases and LayerNorm weights (every parameter with fewer than 2 dims) get no weight decay."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(
        groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, fused=fused or None
    )


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup over ``warmup_ratio * max_steps`` optimizer steps, then linear decay to 0.

    Stepped once per optimizer step by the loop itself (never through ``accelerator.prepare``, which
    would step it once per process and shrink the schedule by the number of processes).
    """
    warmup = int(cfg.warmup_ratio * cfg.max_steps)
    return get_linear_schedule_with_warmup(optimizer, warmup, cfg.max_steps)
