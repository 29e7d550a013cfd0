"""``pretrain.downstream.probe`` fine-tunes a tiny export and ``random`` on a synthetic task: each seed is
deterministic, and the table and the report follow. (It trains: e2e; the library's other parts:
tests/unit/test_downstream.py.)"""

from __future__ import annotations

import json

import pytest

from pretrain.downstream import ModelResult, Recipe, format_table, load_task, probe, report
from pretrain.resolve import resolve

pytestmark = pytest.mark.slow  # fine-tunes


def test_each_seed_is_deterministic(export, task_files):
    task = load_task(task_files["train"], task_files["dev"], task_files["test"])
    recipe = Recipe(epochs=2, lr=1e-3, batch_size=8, max_length=24)

    def once(seeds: list[int], names: tuple[str, ...] = (str(export),)) -> list[ModelResult]:
        return probe(resolve(list(names)), task, recipe, seeds, progress=False)

    a, b = once([0])[0].runs[0], once([0])[0].runs[0]
    assert (a.train_loss, a.dev, a.test, a.dev_accuracy_per_epoch) == (
        b.train_loss,
        b.dev,
        b.test,
        b.dev_accuracy_per_epoch,
    )
    assert once([1])[0].runs[0].train_loss != a.train_loss
    results = once([0, 1], (str(export), "random"))
    assert [r.kind for r in results] == ["export", "random"] and [len(r.runs) for r in results] == [2, 2]
    assert results[0].runs[0].train_loss == a.train_loss
    assert results[1].runs[0].train_loss != a.train_loss  # random: the seed's fresh weights, not the export's
    table = format_table(task, results, recipe)
    assert "gain of pre-training" in table and "test macro-F1" in table
    assert json.loads(json.dumps(report(task, recipe, results)))["task"]["train"] == 24
