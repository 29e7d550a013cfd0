"""``train.report_to``: accelerate's tracker names, checked before anything runs."""

from __future__ import annotations

import importlib.util

import pytest

from data_prep.errors import UserError
from pretrain.config import load_config
from pretrain.tracking import trackers


def test_report_to_names_accelerates_trackers():
    assert trackers("tensorboard") == ["tensorboard"]
    assert trackers("none") == [] and trackers("") == []
    with pytest.raises(UserError, match=r"'train.report_to' must name accelerate trackers \(.*tensorboard.*"):
        load_config(None, {"train.report_to": "tensorboard,tensorbord"})  # the config's one check


@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="wandb is installed here")
def test_a_tracker_that_is_not_installed_is_a_one_line_error():
    with pytest.raises(UserError, match="wandb is not installed"):
        trackers("tensorboard,wandb")
