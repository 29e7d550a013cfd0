"""AdamW with UER-py's decay exclusions, and the learning-rate schedule (transformers' own functions)."""

from __future__ import annotations

import torch
from transformers import get_scheduler

from data_prep.errors import UserError
from pretrain.config import TrainConfig

# train.lr_schedule -> the transformers schedule; every one starts with linear warmup from 0.
SCHEDULES = {
    "linear": "linear",  # then linear decay to 0 at max_steps
    "cosine": "cosine",  # then half a cosine down to 0 at max_steps
    "constant": "constant_with_warmup",  # then train.lr until the end
    "inverse_sqrt": "inverse_sqrt",  # then lr * sqrt(warmup / step) (fairseq; without warmup: 10,000)
    "polynomial": "polynomial",  # then (lr - lr_end) * (1 - progress) ** lr_power + lr_end
}


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
    """``train.lr_schedule`` after ``warmup_ratio * max_steps`` optimizer steps of linear warmup.

    Stepped once per optimizer step by the loop itself (never through ``accelerator.prepare``, which
    would step it once per process and shrink the schedule by the number of processes).
    """
    if cfg.lr_schedule not in SCHEDULES:
        raise UserError(
            f"config key 'train.lr_schedule' must be one of {', '.join(SCHEDULES)}, got {cfg.lr_schedule!r}"
        )
    if cfg.lr_schedule == "polynomial" and not 0 <= cfg.lr_end < cfg.lr:
        raise UserError(
            f"config key 'train.lr_end' must be >= 0 and below train.lr ({cfg.lr}), got {cfg.lr_end}"
        )
    extra = {"lr_end": cfg.lr_end, "power": cfg.lr_power} if cfg.lr_schedule == "polynomial" else None
    return get_scheduler(
        SCHEDULES[cfg.lr_schedule],
        optimizer,
        num_warmup_steps=int(cfg.warmup_ratio * cfg.max_steps),
        num_training_steps=cfg.max_steps,
        scheduler_specific_kwargs=extra,
    )
