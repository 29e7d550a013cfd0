"""pretrain.plan: what a run derives at start (batch split, grad_accum, max_steps, precision, compile),
computed from a config that stays as it was loaded."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import pytest
import torch
from helpers import tiny_overrides

from data_prep.errors import UserError
from pretrain.config import load_config
from pretrain.plan import make_plan, mixed_precision
from pretrain.train import validate


@dataclass
class FakeShards:
    """What the plan reads of opened shards: the training rows and their mean target tokens."""

    examples: int
    target_tokens_per_example: float = 100.0
    train: list = field(init=False)

    def __post_init__(self) -> None:
        self.train = [None] * self.examples


def test_the_plan_lowers_the_per_device_batch_and_the_config_stays_as_loaded():
    cfg = load_config(None, {"train.batch_size": "64", "train.global_batch_size": "64"})
    before = copy.deepcopy(cfg)
    plan = make_plan(cfg, 8, FakeShards(1000))
    assert (plan.batch_size, plan.grad_accum, plan.processes, plan.global_batch) == (8, 1, 8, 64)
    assert plan.describe() == "64 = 8 per device x grad_accum 1 x 8 processes"
    assert cfg == before and cfg.train.batch_size == 64


@pytest.mark.parametrize(
    ("budget", "steps"),
    [
        ({"train.max_epochs": "2"}, math.ceil(2 * 1000 / 16)),
        ({"train.max_tokens": "160000"}, math.ceil(160_000 / (100 * 16))),
        ({"train.max_steps": "77"}, 77),
    ],
)
def test_max_steps_from_a_budget_is_the_plans_and_says_why(budget, steps):
    cfg = load_config(None, {"train.batch_size": "4", "train.grad_accum": "4", **budget})
    before = copy.deepcopy(cfg)
    plan = make_plan(cfg, 1, FakeShards(1000))
    assert plan.max_steps == steps and cfg == before
    key = next(iter(budget))
    if key == "train.max_steps":
        assert plan.budget is None
    else:
        assert plan.budget.startswith(key) and plan.budget.endswith(f"= {steps} steps")
    assert plan.as_dict()["max_steps"] == steps and plan.as_dict()["budget"] == plan.budget
    assert plan.hparams()["run.max_steps"] == steps and plan.hparams()["run.global_batch"] == 16


def test_precision_and_compile_are_resolved_once(monkeypatch):
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    cfg = load_config(None, {"train.compile": "no"})
    plan = make_plan(cfg, 1, FakeShards(10))
    cuda = torch.cuda.is_available()
    assert (
        plan.mixed_precision
        == mixed_precision(cfg.train)
        == ("bf16" if cuda and torch.cuda.is_bf16_supported() else "no")
    )
    assert plan.compile is False and cfg.train.compile == "no" and cfg.train.mixed_precision == "auto"
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "fp16")  # what `accelerate launch` was told
    assert make_plan(cfg, 1, FakeShards(10)).mixed_precision == "fp16"


def test_validate_reads_and_changes_nothing(tmp_path):
    cfg = load_config(
        None, {"data.path": str(tmp_path / "shards"), "train.output_dir": str(tmp_path / "run")}
    )
    before = copy.deepcopy(cfg)
    validate(cfg)
    assert cfg == before and list(tmp_path.iterdir()) == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="lies inside a file"):
        validate(load_config(None, {"data.path": "d", "train.output_dir": str(tmp_path / "file" / "run")}))


# -- the fast path settings ---------------------------------------------------------------------------------


def test_fast_path_settings_are_checked(shards, tmp_path):
    from data_prep.errors import UserError
    from pretrain.plan import compile_model

    cfg = load_config(None, tiny_overrides(shards, tmp_path))
    assert cfg.train.compile == "auto" and compile_model(cfg.train) is torch.cuda.is_available()
    for value, expected in (("true", True), ("yes", True), ("false", False), ("no", False)):
        cfg.train.compile = value  # YAML true / false arrive as "yes" / "no"
        assert compile_model(cfg.train) is expected
    with pytest.raises(UserError, match="'train.compile' must be auto, true or false, not 'sometimes'"):
        load_config(None, tiny_overrides(shards, tmp_path, **{"train.compile": "sometimes"}))
    for key, value, why in (
        ("train.loss_chunks", -1, "at least 0"),
        ("data.pad_to_multiple_of", 0, "at least 1"),
    ):
        with pytest.raises(UserError, match=f"'{key}' must be {why}, not {value}"):
            load_config(None, tiny_overrides(shards, tmp_path, **{key: value}))
