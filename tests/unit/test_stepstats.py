"""``pretrain.stepstats``: the loop's numbers between two reads, kept as tensors (float64 on a CPU or GPU,
so that a sum of float32 losses is exact whatever the reads split it into). ``record`` sums the loss of
applied steps only (a NaN of a skipped step never reaches the sum) and counts applied and skipped steps and
the streak of skipped ones; ``read`` moves the sums into the ``TrainState`` (its loss window, ``bad_steps``,
``bad_streak``), starts the sums again, and returns (last step applied, the worst streak since the last
read, the last gradient norm). A streak carries over reads (and over a resume, from ``start``)."""

from __future__ import annotations

import math

import pytest
import torch

from pretrain.checkpoint import TrainState
from pretrain.stepstats import StepStats

CPU = torch.device("cpu")


def step(stats: StepStats, loss: float, grad_norm: float = 1.0, finite: bool | None = None) -> None:
    ok = math.isfinite(loss) if finite is None else finite
    stats.record(torch.tensor(loss), torch.tensor(grad_norm), torch.tensor(ok))


def test_start():
    stats = StepStats.start(CPU, streak=2)
    values = [
        stats.loss,
        stats.applied,
        stats.skipped,
        stats.streak,
        stats.worst,
        stats.finite,
        stats.grad_norm,
    ]
    assert [v.item() for v in values] == [0, 0, 0, 2, 2, 1, 0]
    assert all(v.dtype == torch.float64 and v.device == CPU and v.dim() == 0 for v in values)


def test_the_loss_window_does_not_depend_on_where_the_reads_split_it():
    """float32 losses summed in float64 are exact: a read in the middle of a window (a signal's save)
    leaves the logged loss the same to the bit."""
    losses = (torch.rand(200, generator=torch.Generator().manual_seed(0)) * 9 + 1).tolist()
    losses = [torch.tensor(x, dtype=torch.float32) for x in losses]
    means = []
    for splits in ([], [1], [37, 120], list(range(0, 200, 7))):
        stats, state = StepStats.start(CPU, 0), TrainState()
        for i, loss in enumerate(losses):
            if i in splits:
                stats.read(state)
            stats.record(loss, torch.tensor(1.0, dtype=torch.float32), torch.tensor(True))
        stats.read(state)
        means.append(state.take_mean_loss())
    assert len(set(means)) == 1, means
    assert means[0] == math.fsum(x.item() for x in losses) / 200


def test_read_moves_the_sums_into_the_train_state():
    stats, state = StepStats.start(CPU, 0), TrainState()
    for loss in (2.0, 3.0, 4.0):
        step(stats, loss, grad_norm=loss / 2)
    assert stats.read(state) == (True, 0, 2.0)
    assert (state.window_loss, state.window_steps, state.bad_steps, state.bad_streak) == (9.0, 3, 0, 0)
    assert [v.item() for v in (stats.loss, stats.applied, stats.skipped)] == [0, 0, 0]  # started again
    step(stats, 1.0, grad_norm=0.25)
    assert stats.read(state) == (True, 0, 0.25)
    assert (state.window_loss, state.window_steps) == (10.0, 4)  # the window keeps adding up until logged
    assert state.take_mean_loss() == 2.5


def test_skipped_steps_are_counted_and_their_loss_left_out():
    stats, state = StepStats.start(CPU, 0), TrainState(bad_steps=5)
    step(stats, 2.0)
    step(stats, float("nan"), grad_norm=float("nan"))
    step(stats, float("inf"))
    step(stats, 7.0, finite=False)  # a finite loss with a non-finite gradient: skipped all the same
    step(stats, 4.0, grad_norm=3.0)
    step(stats, float("nan"))
    finite, worst, grad_norm = stats.read(state)
    assert (finite, worst, grad_norm) == (False, 3, 1.0)  # the last step was skipped; the worst streak 3
    assert (state.window_loss, state.window_steps) == (6.0, 2)  # no NaN reached the sum
    assert (state.bad_steps, state.bad_streak) == (5 + 4, 1)  # the streak up to the last step


def test_a_streak_carries_over_reads_and_the_worst_starts_from_it():
    stats, state = StepStats.start(CPU, 0), TrainState()
    step(stats, float("nan"))
    step(stats, float("nan"))
    assert stats.read(state)[:2] == (False, 2) and state.bad_streak == 2
    step(stats, float("nan"))
    assert stats.read(state)[:2] == (False, 3) and state.bad_streak == 3  # 3 in a row across two reads
    step(stats, 1.0)
    step(stats, float("nan"))
    assert stats.read(state)[:2] == (False, 3)  # the streak of 3 was still running at the last read
    assert state.bad_streak == 1 and state.bad_steps == 4
    step(stats, 1.0)
    assert stats.read(state)[:2] == (True, 1) and state.bad_streak == 0
    assert stats.read(state)[:2] == (True, 0)  # nothing since: no streak


def test_a_resumed_streak_counts_on():
    stats, state = StepStats.start(CPU, streak=4), TrainState(bad_streak=4)
    assert stats.read(state)[:2] == (True, 4)
    step(stats, float("nan"))
    assert stats.read(state)[:2] == (False, 5) and state.bad_streak == 5


def test_record_keeps_no_graph():
    stats = StepStats.start(CPU, 0)
    weight = torch.ones(3, requires_grad=True)
    loss = (weight * 2).sum()
    grad_norm = weight.norm()
    stats.record(loss.detach(), grad_norm, torch.tensor(True))
    assert not stats.grad_norm.requires_grad
    assert stats.read(TrainState())[2] == pytest.approx(math.sqrt(3))
