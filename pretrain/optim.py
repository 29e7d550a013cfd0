"""AdamW with UER-py's decay exclusions, and the learning-rate schedule (transformers' own functions)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from transformers import get_scheduler

from data_prep.errors import UserError
from pretrain.config import SCHEDULES, TrainConfig


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig, fused: bool) -> torch.optim.AdamW:
    """AdamW; biases and LayerNorm weights get no weight decay: every parameter with fewer than 2 dims,
    and a trained ``final_logits_bias`` (shape [1, vocab], by name)."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 or name.endswith("bias") else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(
        groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, fused=fused or None
    )


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, max_steps: int | None = None
) -> torch.optim.lr_scheduler.LambdaLR:
    """``train.lr_schedule`` after ``warmup_ratio * max_steps`` optimizer steps of linear warmup;
    ``max_steps``: the run's plan (from a token or epoch budget), else ``cfg.max_steps``.

    Stepped once per optimizer step by the loop itself (never through ``accelerator.prepare``, which
    would step it once per process and shrink the schedule by the number of processes). Its ``plan``
    (``[[0, max_steps]]``, then one ``[step, max_steps]`` per change of ``max_steps`` on resume) is part
    of its state, so it is saved and restored with it; ``extend_schedule`` follows a change.
    """
    total = cfg.max_steps if max_steps is None else max_steps
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(cfg, [[0, total]]))
    scheduler.plan = [[0, total]]
    return scheduler


def extend_schedule(
    scheduler: torch.optim.lr_scheduler.LambdaLR, cfg: TrainConfig, step: int, max_steps: int | None = None
) -> str | None:
    """A resumed run whose ``max_steps`` changed: the rest of the schedule, from the LR at ``step`` to its
    end value, is stretched (or squeezed) over the new remaining steps, so the LR goes on without a jump.
    (``constant`` and ``inverse_sqrt`` do not depend on ``max_steps``; a schedule that had already ended
    stays at its end value.) Returns a note saying so, or None when nothing changed."""
    total = cfg.max_steps if max_steps is None else max_steps
    plan = [list(p) for p in getattr(scheduler, "plan", [[0, total]])]  # as restored
    before, note = plan[-1][1], None
    if before != total:
        if total <= step:
            raise UserError(f"train.max_steps {total} is not beyond the resumed step {step}")
        plan.append([step, total])
        note = (
            f"train.max_steps changed from {before:,} to {total:,} at step {step:,}: the rest of "
            f"the {cfg.lr_schedule} schedule is stretched over the new remaining steps (no LR jump)"
        )
    scheduler.plan = plan
    scheduler.lr_lambdas = [_schedule(cfg, plan)] * len(scheduler.optimizer.param_groups)
    return note


def _schedule(cfg: TrainConfig, plan: list[list[int]]) -> Callable[[int], float]:
    """The LR factor per step: transformers' schedule for the first ``max_steps``, then each change."""
    first = plan[0][1]
    # on an optimizer of its own, so the real one's LR stays as it is
    dummy = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=cfg.lr)
    factor = _transformers_schedule(dummy, cfg, first).lr_lambdas[0]
    if cfg.lr_schedule in ("constant", "inverse_sqrt"):
        return factor
    previous = first
    for at, max_steps in plan[1:]:
        factor = _stretched(factor, at, previous, max_steps)
        previous = max_steps
    return factor


def _stretched(factor: Callable[[int], float], at: int, old_end: int, new_end: int) -> Callable[[int], float]:
    scale = (old_end - at) / (new_end - at)
    return lambda step: factor(step) if step <= at else factor(at + (step - at) * scale)


def _transformers_schedule(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, max_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    extra = {"lr_end": cfg.lr_end, "power": cfg.lr_power} if cfg.lr_schedule == "polynomial" else None
    return get_scheduler(
        SCHEDULES[cfg.lr_schedule],
        optimizer,
        num_warmup_steps=int(cfg.warmup_ratio * max_steps),
        num_training_steps=max_steps,
        scheduler_specific_kwargs=extra,
    )
