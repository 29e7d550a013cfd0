"""``train.report_to none``: a training run writes no event files."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow  # trains


def test_report_to_none_trains_without_event_files(shards, tmp_path):
    from helpers import run_training

    run_training(shards, tmp_path / "run", **{"train.max_steps": 2, "train.report_to": "none"})
    events = list((tmp_path / "run").rglob("events.out.tfevents*"))
    assert events == [] and (tmp_path / "run" / "hf" / "final" / "model.safetensors").is_file()
