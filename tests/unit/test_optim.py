"""``train.lr_schedule``: each schedule after warmup against values computed by hand, and its errors."""

from __future__ import annotations

import json
import math

import pytest
import torch

from data_prep.errors import UserError
from pretrain.config import build_config
from pretrain.optim import SCHEDULES, build_optimizer, build_scheduler, extend_schedule

LR = 1e-3  # max_steps 100, warmup_ratio 0.1: 10 warmup steps


def lrs(schedule: str, steps: list[int], **train) -> list[float]:
    """The LR after each of ``steps`` optimizer steps, from the config keys as a user sets them."""
    overrides = {"train.lr_schedule": schedule, "train.lr": LR, "train.max_steps": 100}
    overrides |= {"train.warmup_ratio": 0.1, **{f"train.{k}": v for k, v in train.items()}}
    cfg = build_config({}, overrides).train
    optimizer = build_optimizer(torch.nn.Linear(2, 2), cfg, fused=False)
    return lrs_at(optimizer, build_scheduler(optimizer, cfg), 0, steps)


def lrs_at(optimizer, scheduler, done: int, steps: list[int]) -> list[float]:
    """Step on from optimizer step ``done``; the LR after each of ``steps``."""
    out = []
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


def resumed(schedule: str, first: int, at: int, then: int, until: list[int]) -> tuple[float, list[float]]:
    """LR at ``at`` of a ``first``-step run, and the LRs at ``until`` after resuming it with ``then``."""
    base = {"train.lr_schedule": schedule, "train.lr": LR, "train.warmup_ratio": 0.1}
    cfg = build_config({}, {**base, "train.max_steps": first}).train
    optimizer = build_optimizer(torch.nn.Linear(2, 2), cfg, fused=False)
    scheduler = build_scheduler(optimizer, cfg)
    [before] = lrs_at(optimizer, scheduler, 0, [at])
    saved = json.loads(json.dumps(scheduler.state_dict()))  # as in trainer_state.json
    cfg = build_config({}, {**base, "train.max_steps": then}).train
    optimizer = build_optimizer(torch.nn.Linear(2, 2), cfg, fused=False)
    scheduler = build_scheduler(optimizer, cfg)
    scheduler.load_state_dict(saved)
    note = extend_schedule(scheduler, cfg, at)
    assert (note is None) == (first == then)
    return before, lrs_at(optimizer, scheduler, at, until)


def test_raising_max_steps_on_resume_stretches_the_rest_of_the_schedule():
    # linear, 100 steps (10 warmup), resumed at 50 with 200: from LR(50) = lr * 50/90 down to 0 at 200
    before, after = resumed("linear", 100, 50, 200, [51, 125, 200])
    assert before == pytest.approx(LR * 50 / 90)
    assert after == pytest.approx([LR * (50 - 50 / 150) / 90, before / 2, 0.0], abs=1e-12)  # no jump
    _, after = resumed("cosine", 100, 50, 300, [175, 300])  # 175 maps to 50 + 125 * 50 / 250 = 75
    assert after == pytest.approx([LR * 0.5 * (1 + math.cos(math.pi * (75 - 10) / 90)), 0.0], abs=1e-12)
    _, same = resumed("linear", 100, 50, 100, [75])  # unchanged max_steps: the schedule as it was
    assert same == pytest.approx([LR * 25 / 90])
    _, sqrt = resumed("inverse_sqrt", 100, 50, 400, [90])  # no end: nothing to stretch
    assert sqrt == pytest.approx([LR * math.sqrt(10 / 90)])


def test_the_plan_is_saved_with_the_scheduler_and_a_second_change_composes():
    base = {"train.lr_schedule": "linear", "train.lr": LR, "train.warmup_ratio": 0.1, "train.max_steps": 100}
    cfg = build_config({}, base).train
    scheduler = build_scheduler(build_optimizer(torch.nn.Linear(2, 2), cfg, fused=False), cfg)
    assert json.loads(json.dumps(scheduler.state_dict()))["plan"] == [[0, 100]]
    longer = build_config({}, {**base, "train.max_steps": 200}).train
    extend_schedule(scheduler, longer, 50)
    longest = build_config({}, {**base, "train.max_steps": 400}).train
    extend_schedule(scheduler, longest, 125)
    assert scheduler.plan == [[0, 100], [50, 200], [125, 400]]
    factor = scheduler.lr_lambdas[0]
    assert factor(125) == pytest.approx(25 / 90) and factor(400) == 0.0
    assert factor(125 + 275 / 2) == pytest.approx(25 / 90 / 2)
    with pytest.raises(UserError, match="not beyond the resumed step"):
        extend_schedule(scheduler, build_config({}, {**base, "train.max_steps": 100}).train, 150)
