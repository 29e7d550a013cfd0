"""The LR schedule and the step budget in real training runs: logged as chosen, max_steps from a token or
epoch budget, and a resumed run with more steps going on from its LR."""

from __future__ import annotations

import json
import math
import shutil

import datasets
import pytest
import yaml
from helpers import run_training, scalars

from data_prep.errors import UserError
from pretrain.config import build_config
from pretrain.runlog import max_steps_of


def test_training_logs_the_chosen_schedule(shards, tmp_path):
    run_training(shards, tmp_path / "run", None, **{"train.lr_schedule": "cosine", "train.max_steps": 6})
    logged = [lr for _, lr in scalars(tmp_path / "run")["train/lr"]]
    # 6 steps, warmup int(0.6) = 0: 0.5 * (1 + cos(pi * s / 6)) * 3e-3 after step s = 1..6
    assert logged == pytest.approx([0.5 * (1 + math.cos(math.pi * s / 6)) * 3e-3 for s in range(1, 7)])


def test_max_epochs_and_max_tokens_set_max_steps(shards, tmp_path, capsys):
    out = run_training(shards, tmp_path / "epochs", **{"train.max_epochs": 0.1, "train.eval_every": 100})
    examples = len(datasets.load_from_disk(str(shards / "train")))
    steps = math.ceil(0.1 * examples / 4)  # batch 4
    assert (
        f"train.max_epochs 0.1 x {examples:,} examples / 4 per step = {steps} steps"
        in capsys.readouterr().out
    )
    assert [s for s, _ in scalars(out.parents[1])["train/loss"]][-1] == steps
    # the run records its plan; the report reads the planned steps from it, config.yaml stays as written
    assert max_steps_of(out.parents[1]) == steps
    assert json.loads((out.parents[1] / "plan.json").read_text())["max_steps"] == steps
    assert yaml.safe_load((out.parents[1] / "config.yaml").read_text())["train"]["max_epochs"] == 0.1
    counts = json.loads((shards / "manifest.json").read_text())["counts"]["train"]
    per_example = (counts["ids"] - counts["examples"]) / counts["examples"]
    run_training(shards, tmp_path / "tokens", **{"train.max_tokens": 1000, "train.eval_every": 100})
    assert f"= {math.ceil(1000 / (per_example * 4))} steps" in capsys.readouterr().out
    with pytest.raises(UserError, match="not both"):
        build_config({}, {"train.max_tokens": "1000", "train.max_epochs": "1"})


def test_a_resumed_run_with_more_steps_goes_on_from_its_lr(shards, tmp_path, capsys):
    """8 steps (no warmup: int(0.1 * 8) = 0) resumed at step 4 with 16: linear from lr * 4/8 down to 0."""
    out = tmp_path / "run"
    run_training(shards, out, **{"train.max_steps": 8, "train.save_every": 4, "train.eval_every": 100})
    shutil.rmtree(out / "checkpoints" / "step-8")
    run_training(shards, out, **{"train.max_steps": 16, "train.save_every": 4, "train.eval_every": 100,
                                 "train.resume": "auto"})  # fmt: skip
    assert "train.max_steps changed from 8 to 16 at step 4" in capsys.readouterr().out
    lr = dict(scalars(out)["train/lr"])
    base = 3e-3  # helpers.tiny_overrides
    assert lr[4] == pytest.approx(base * 4 / 8)
    assert lr[5] == pytest.approx(base * (4 - 1 / 3) / 8) and lr[10] == pytest.approx(base * 2 / 8)
    assert lr[16] == 0.0
