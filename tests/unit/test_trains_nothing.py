"""The unit tree's guard (tests/unit/conftest.py) holds: the trainer, its step and any optimizer step that
would move a parameter fail in a unit test; a scheduler stepped over gradient-free parameters does not."""

from __future__ import annotations

import pytest
import torch
from helpers import run_training

MESSAGE = "unit tests train nothing: move this test to tests/e2e"  # the guard's (an AssertionError)


def test_the_trainer_fails_loudly_in_a_unit_test(shards, tmp_path):
    with pytest.raises(AssertionError, match=MESSAGE):
        run_training(shards, tmp_path / "run", **{"train.max_steps": 1})


def test_the_training_step_fails_loudly():
    import pretrain.train

    with pytest.raises(AssertionError, match=MESSAGE):
        pretrain.train.train_step(None, iter(()), None)


def test_an_optimizer_step_that_moves_a_parameter_fails_loudly():
    layer = torch.nn.Linear(2, 2)
    before = layer.weight.detach().clone()
    optimizer = torch.optim.AdamW(layer.parameters(), lr=0.1)
    layer(torch.ones(1, 2)).sum().backward()
    with pytest.raises(AssertionError, match="an optimizer step of AdamW"):
        optimizer.step()
    assert torch.equal(layer.weight, before)  # refused before anything moved


def test_a_schedule_stepped_without_gradients_is_not_training():
    layer = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(layer.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: step / 10)
    for _ in range(3):
        optimizer.step()
        scheduler.step()
    assert scheduler.get_last_lr() == [pytest.approx(0.03)]
