"""``train.lr_schedule``: each schedule after warmup against values computed by hand, and its errors."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import run_training, scalars

from data_prep.errors import UserError
from pretrain.config import build_config
from pretrain.optim import SCHEDULES, build_optimizer, build_scheduler

LR = 1e-3  # max_steps 100, warmup_ratio 0.1: 10 warmup steps


def lrs(schedule: str, steps: list[int], **train) -> list[float]:
    """The LR after each of ``steps`` optimizer steps, from the config keys as a user sets them."""
    overrides = {"train.lr_schedule": schedule, "train.lr": LR, "train.max_steps": 100}
    overrides |= {"train.warmup_ratio": 0.1, **{f"train.{k}": v for k, v in train.items()}}
    cfg = build_config({}, overrides).train
    optimizer = build_optimizer(torch.nn.Linear(2, 2), cfg, fused=False)
    scheduler = build_scheduler(optimizer, cfg)
    out, done = [], 0
    for step in steps:
        for _ in range(step - done):
            optimizer.step()
            scheduler.step()
        done = step
        out.append(scheduler.get_last_lr()[0])
    return out


@pytest.mark.parametrize(
    ("schedule", "train", "expected"),
    [
        # step:      0, 5 (warmup), 10 (peak), 40, 55 (half of the decay), 100 (the end)
        ("linear", {}, [0, LR / 2, LR, LR * 60 / 90, LR / 2, 0]),
        ("cosine", {}, [0, LR / 2, LR, LR * 0.75, LR / 2, 0]),  # 0.5 * (1 + cos(pi/3)) at 1/3 of the decay
        ("constant", {}, [0, LR / 2, LR, LR, LR, LR]),
        ("inverse_sqrt", {}, [0, LR / 2, LR, LR / 2, LR * math.sqrt(10 / 55), LR * math.sqrt(10 / 100)]),
        (
            "polynomial",
            {"lr_power": 2.0, "lr_end": 1e-4},
            [0, LR / 2, LR, 9e-4 * 4 / 9 + 1e-4, 3.25e-4, 1e-4],
        ),
    ],
)
def test_schedule_values(schedule, train, expected):
    assert lrs(schedule, [0, 5, 10, 40, 55, 100], **train) == pytest.approx(expected, abs=1e-12)


def test_every_schedule_is_tested_and_linear_is_the_default():
    assert set(SCHEDULES) == {"linear", "cosine", "constant", "inverse_sqrt", "polynomial"}
    assert build_config({}).train.lr_schedule == "linear"


def test_bad_schedule_settings_are_one_line_user_errors():
    with pytest.raises(UserError, match="must be one of linear, cosine, constant, inverse_sqrt, polynomial"):
        lrs("cosin", [1])
    with pytest.raises(UserError, match="train.lr_end' must be >= 0 and below train.lr"):
        lrs("polynomial", [1], lr_end=LR)


@pytest.mark.slow
def test_training_logs_the_chosen_schedule(shards, tmp_path):
    run_training(shards, tmp_path / "run", None, **{"train.lr_schedule": "cosine", "train.max_steps": 6})
    logged = [lr for _, lr in scalars(tmp_path / "run")["train/lr"]]
    # 6 steps, warmup int(0.6) = 0: 0.5 * (1 + cos(pi * s / 6)) * 3e-3 after step s = 1..6
    assert logged == pytest.approx([0.5 * (1 + math.cos(math.pi * s / 6)) * 3e-3 for s in range(1, 7)])
