"""``pretrain.preemption``: a real SIGTERM / SIGUSR1 to this process sets the flag (and kills nothing), the
clock asks for a save every ``save_every_minutes``, the handlers are put back on exit, several ranks agree
only every ``SYNC_EVERY`` steps, and DataLoader workers ignore SIGUSR1. The clock and the ranks are fakes;
the end-to-end saves on a signal are in tests/e2e/test_preemption_e2e.py."""

from __future__ import annotations

import os
import signal
import threading
from types import SimpleNamespace

import pytest
import torch

import pretrain.preemption
from pretrain.preemption import SIGNALS, SYNC_EVERY, Preemption, ignore_in_workers

ONE_RANK = SimpleNamespace(num_processes=1)


class FakeClock:
    """``time.monotonic`` that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(pretrain.preemption.time, "monotonic", fake)
    return fake


@pytest.fixture(autouse=True)
def handlers_restored():
    """Whatever a test does, the process's own handlers are the same afterwards."""
    before = {sig: signal.getsignal(sig) for sig in SIGNALS}
    yield
    for sig, handler in before.items():
        signal.signal(sig, handler)


def test_the_signals_are_sigterm_and_sigusr1():
    assert set(SIGNALS) == {signal.SIGTERM, signal.SIGUSR1}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_a_real_signal_to_this_process_sets_the_flag_and_stops_nothing_else(sig):
    with Preemption(save_every_minutes=0) as preemption:
        assert preemption.check(ONE_RANK, step=1) == (False, False)
        os.kill(os.getpid(), sig)  # delivered to the main thread before kill returns
        assert preemption.received == sig
        assert preemption.signal_name == sig.name
        assert preemption.check(ONE_RANK, step=2) == (True, False)
        assert preemption.check(ONE_RANK, step=3) == (True, False)  # it stays raised until the save


def test_without_a_signal_the_name_says_a_signal():
    assert Preemption(0).signal_name == "a signal"


def test_the_handlers_are_restored_on_exit_even_after_an_error():
    marker = []

    def mine(signum, frame):
        marker.append(signum)

    signal.signal(signal.SIGUSR1, mine)
    with pytest.raises(KeyboardInterrupt), Preemption(0) as preemption:
        assert signal.getsignal(signal.SIGUSR1) == preemption._handle
        assert signal.getsignal(signal.SIGTERM) == preemption._handle
        raise KeyboardInterrupt
    assert signal.getsignal(signal.SIGUSR1) is mine
    os.kill(os.getpid(), signal.SIGUSR1)
    assert marker == [signal.SIGUSR1] and preemption.received is None  # the old handler got it, not ours


def test_outside_the_main_thread_no_handler_is_installed():
    before = signal.getsignal(signal.SIGTERM)
    seen = {}

    def enter():
        with Preemption(0) as preemption:
            seen["inside"] = signal.getsignal(signal.SIGTERM)
            seen["previous"] = dict(preemption._previous)

    thread = threading.Thread(target=enter)
    thread.start()
    thread.join()
    assert seen == {"inside": before, "previous": {}}  # signal.signal would raise there


def test_save_every_minutes_asks_for_a_save_by_the_clock(clock):
    preemption = Preemption(save_every_minutes=2)
    assert preemption.check(ONE_RANK, 1) == (False, False)
    clock.now += 119.9
    assert preemption.check(ONE_RANK, 2) == (False, False)
    clock.now += 0.1  # two minutes since it was made
    assert preemption.check(ONE_RANK, 3) == (False, True)
    assert preemption.check(ONE_RANK, 4) == (False, True)  # until a save happened
    preemption.saved()
    assert preemption.check(ONE_RANK, 5) == (False, False)
    clock.now += 120
    assert preemption.check(ONE_RANK, 6) == (False, True)


def test_zero_minutes_never_saves_by_the_clock(clock):
    preemption = Preemption(save_every_minutes=0)
    clock.now += 10**6
    assert preemption.check(ONE_RANK, 1) == (False, False)


class FakeRanks:
    """Several ranks: ``reduce`` sums this rank's flags with ``others`` (what the other ranks raised)."""

    device = torch.device("cpu")

    def __init__(self, num_processes: int, others: list[float]) -> None:
        self.num_processes = num_processes
        self.others = torch.tensor(others)
        self.reductions = 0

    def reduce(self, tensor: torch.Tensor, reduction: str) -> torch.Tensor:
        assert reduction == "sum"
        self.reductions += 1
        return tensor + self.others


def test_several_ranks_agree_every_sync_every_steps_only(clock):
    ranks = FakeRanks(2, [1.0, 0.0])  # another rank got the signal
    preemption = Preemption(save_every_minutes=0)
    for step in range(1, SYNC_EVERY):
        assert preemption.check(ranks, step) == (False, False)
    assert ranks.reductions == 0  # no collective between the sync steps
    assert preemption.check(ranks, SYNC_EVERY) == (True, False)
    assert ranks.reductions == 1


def test_on_several_ranks_a_flag_of_this_rank_waits_for_the_sync_step(clock):
    ranks = FakeRanks(4, [0.0, 0.0])
    preemption = Preemption(save_every_minutes=1)
    preemption.received = signal.SIGUSR1
    clock.now += 60
    assert preemption.check(ranks, SYNC_EVERY + 3) == (False, False)
    assert preemption.check(ranks, 2 * SYNC_EVERY) == (True, True)


def test_loader_workers_ignore_sigusr1_and_keep_sigterm():
    term = signal.getsignal(signal.SIGTERM)
    ignore_in_workers(0)
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_IGN
    assert signal.getsignal(signal.SIGTERM) == term  # how the DataLoader stops a worker
    os.kill(os.getpid(), signal.SIGUSR1)  # ignored: this process lives on
