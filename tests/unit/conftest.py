"""The unit tree trains nothing, and this makes sure of it: inside a unit test the training loop, the
training step and any optimizer step that would change a parameter (one with a gradient) fail loudly.

Forward and backward passes, exports and schedulers stepped over gradient-free parameters are not
training and are allowed; a test that needs an optimizer step belongs in ``tests/e2e``.
"""

from __future__ import annotations

import pytest
from torch.optim.optimizer import register_optimizer_step_pre_hook

MESSAGE = "unit tests train nothing: move this test to tests/e2e"


class TrainingInUnitTest(AssertionError):
    """Raised when a unit test trains."""


def _refuse(*args: object, **kwargs: object) -> None:
    raise TrainingInUnitTest(MESSAGE)


def _refuse_a_step_with_gradients(optimizer, args, kwargs) -> None:
    if any(p.grad is not None for group in optimizer.param_groups for p in group["params"]):
        raise TrainingInUnitTest(f"{MESSAGE} (an optimizer step of {type(optimizer).__name__})")


@pytest.fixture(autouse=True)
def trains_nothing(monkeypatch):
    """``pretrain.train.loop`` / ``train_step`` and gradient-bearing optimizer steps raise in unit tests."""
    import pretrain.train

    for name in ("loop", "train_step"):
        if hasattr(pretrain.train, name):
            monkeypatch.setattr(pretrain.train, name, _refuse)
    handle = register_optimizer_step_pre_hook(_refuse_a_step_with_gradients)
    yield
    handle.remove()
