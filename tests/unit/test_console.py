"""``pretrain.console``: the bar only on a terminal; otherwise one greppable line per log interval (step,
loss, lr, grad_norm, tokens/s, mfu when known, elapsed, eta); the start-up summary. The clock is a fake."""

from __future__ import annotations

import re
import sys

import pytest

import pretrain.console
from pretrain.console import Clock, _amount, interactive, log_line, startup_summary

LOGS = {
    "train/loss": 5.43214,
    "train/lr": 4.99e-5,
    "train/grad_norm": 1.2344,
    "train/tokens_per_sec": 12345.4,
}


@pytest.fixture
def now(monkeypatch) -> list[float]:
    """``time.monotonic`` of the console, set by the test: ``now[0] = seconds``."""
    value = [100.0]
    monkeypatch.setattr(pretrain.console.time, "monotonic", lambda: value[0])
    return value


def clock_at(now: list[float], first_step: int) -> Clock:
    """A clock started now (its default start is the real ``time.monotonic``, bound when it was defined)."""
    return Clock(first_step=first_step, started=now[0])


class Stream:
    def __init__(self, tty: bool) -> None:
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize("tty", [True, False])
def test_interactive_means_stderr_is_a_terminal(monkeypatch, tty):
    monkeypatch.setattr(sys, "stderr", Stream(tty))
    assert interactive() is tty


def test_the_clock_starts_when_it_is_made():
    clock = Clock(first_step=0)
    assert 0 <= clock.elapsed() < 60


def test_the_clock_measures_this_launch_and_its_eta_from_the_steps_done_in_it(now):
    clock = clock_at(now, 1000)  # resumed at step 1000
    assert clock.eta(1000, 2000) is None  # no step yet: no estimate
    now[0] += 50
    assert clock.elapsed() == 50
    assert clock.eta(1010, 2000) == pytest.approx(50 / 10 * 990)  # 5 s per step, 990 to go
    assert clock.eta(2000, 2000) == 0


def test_one_line_per_interval_with_every_number(now):
    clock = clock_at(now, 0)
    now[0] += 754  # 0:12:34
    line = log_line(1200, 1_000_000, {**LOGS, "train/mfu": 0.3821}, clock)
    assert "\n" not in line
    assert line == (
        "step 1200/1000000 loss 5.4321 lr 4.99e-05 grad_norm 1.234 tokens/s 12,345 mfu 38.2% "
        f"elapsed 0:12:34 eta {pretrain.console.timedelta(seconds=round(754 / 1200 * 998800))}"
    )
    assert re.search(r"eta \d+ days, \d+:\d\d:\d\d$", line)


def test_without_mfu_or_a_step_done_those_parts_say_so(now):
    line = log_line(5, 10, LOGS, clock_at(now, 5))
    assert "mfu" not in line and line.endswith("elapsed 0:00:00 eta ?")


def test_the_startup_summary_plans_tokens_epochs_and_the_fill(now):
    manifest = {
        "counts": {"train": {"ids": 48_000, "examples": 100}},
        "fill": {"train": {"fill_ratio": 0.9612}},
    }
    text = startup_summary(139_420_000, 1_000_000, 64, 10_000, manifest)
    assert text == (
        "model: 139.4 M parameters; plan: 1,000,000 steps x 64 examples = 30.72 B target tokens, "
        "6,400.00 epochs of 10,000 examples; the data's real-token fill ratio 96.1%"
    )


def test_the_summary_of_a_manifest_without_counts_or_fill():
    text = startup_summary(1_000, 10, 4, 0, {})
    assert text.startswith("model: 0.0 M parameters; plan: 10 steps x 4 examples = 0 target tokens")
    assert "fill ratio" not in text and "40.00 epochs of 0 examples" in text  # no division by zero


@pytest.mark.parametrize(
    ("n", "shown"),
    [(12_345, "12,345"), (999_999, "999,999"), (9_600_000, "9.6 M"), (33_554_432_000, "33.55 B")],
)
def test_amounts_are_written_the_short_way(n, shown):
    assert _amount(n) == shown
