"""``pretrain.rundir`` pruning under ``train.keep_exports``: a small default, 0 keeps every ``hf/step-N``,
``hf/final`` is never pruned."""

from __future__ import annotations

import pytest

from pretrain.config import build_config
from pretrain.rundir import RunDir


def exports_after_prune(tmp_path, keep: int) -> list[str]:
    run = RunDir(tmp_path)
    for step in (100, 200, 300, 1000):
        run.export(step).mkdir(parents=True)
    run.final_export.mkdir()
    run.prune(run.exports_dir, keep)
    return [p.name for p in run.exports()]


def test_the_default_keeps_two_step_exports_and_final(tmp_path):
    keep = build_config({}).train.keep_exports
    assert keep == 2
    assert exports_after_prune(tmp_path, keep) == ["step-300", "step-1000", "final"]  # by step, not by name


@pytest.mark.parametrize(("keep", "left"), [(0, 4), (1, 1), (9, 4)])
def test_zero_keeps_all(tmp_path, keep, left):
    names = exports_after_prune(tmp_path, keep)
    assert names[-1] == "final" and len(names) == left + 1
