"""``data_prep.workers``: the pool of ``prepare``. One worker means the main process; the workers start up
front with one tokenizer thread each and are gone afterwards; a worker that dies fails the run with one
line instead of hanging it; ``process_units`` skips the units already done, hands out the biggest first,
sums the stats and shows progress from the shared counters; a worker exits once its parent is gone.

The units themselves are a fake (``UnitProcessor``); the handing out runs in a thread pool, except for the
two tests that need real processes (the start-up and a worker's death)."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import re
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import data_prep.workers as workers
from data_prep.errors import UserError
from data_prep.manifest import SplitCounts, UnitStats
from data_prep.shards import ShardDir
from data_prep.workers import ProgressBar, Workers, process_units, start_workers


def unit(file_index: int, size: int, range_index: int = 0, path: str = "") -> workers.Unit:
    return workers.Unit(file_index, range_index, path or f"f{file_index}.txt", 0, None, size, "lines")


class FakeProcessor:
    """Stands in for ``UnitProcessor``: reports a unit's bytes as progress, returns stats made from its
    size, and marks it done; a unit whose path starts with ``binary`` is skipped as such."""

    made: list[object] = []  # the configs processors were made with
    ran: list[str] = []  # unit names, in the order they ran

    def __init__(self, cfg: object) -> None:
        FakeProcessor.made.append(cfg)

    def run(self, u, shards: ShardDir, progress) -> UnitStats:
        FakeProcessor.ran.append(u.name)
        progress(u.size, 2 * u.size, 3 * u.size)
        shards.marker(u.name).parent.mkdir(parents=True, exist_ok=True)
        shards.marker(u.name).write_text("{}")
        if u.path.startswith("binary"):
            return UnitStats(status="binary")
        return UnitStats(
            chars=2 * u.size, train=SplitCounts(documents=1, examples=u.size), valid=SplitCounts(1)
        )


@pytest.fixture
def fake_units(monkeypatch, tmp_path) -> ShardDir:
    FakeProcessor.made, FakeProcessor.ran = [], []
    monkeypatch.setattr(workers, "UnitProcessor", FakeProcessor)
    monkeypatch.setattr(workers, "_processor", None)
    shards = ShardDir(tmp_path / "out")
    shards.work_dir.mkdir(parents=True)
    return shards


@pytest.fixture
def thread_workers(monkeypatch):
    """``Workers`` whose pool is one thread of this process (so the fakes apply), with real counters."""
    counters = multiprocessing.get_context("spawn").Array("q", 3)
    monkeypatch.setattr(workers, "_counters", counters)
    with ThreadPoolExecutor(1) as pool:
        yield Workers(pool, counters)


UNITS = [unit(0, 10), unit(1, 50), unit(2, 30), unit(3, 40)]


def test_the_units_are_handed_out_biggest_first_and_their_stats_summed(fake_units, thread_workers):
    stats, seconds = process_units(UNITS, {"seq_length": 48}, fake_units, thread_workers, quiet=True)
    assert FakeProcessor.ran == [UNITS[i].name for i in (1, 3, 2, 0)]  # by size, largest first
    assert stats.chars == 2 * 130 and stats.train.examples == 130
    assert stats.train.documents == 4 and stats.valid.documents == 4
    assert list(thread_workers.counters) == [130, 260, 390]  # bytes, chars, tokens reported as progress
    assert seconds >= 0


def test_the_workers_read_the_jobs_config_once_from_the_shard_directory(fake_units, thread_workers):
    process_units(UNITS, {"seq_length": 48}, fake_units, thread_workers, quiet=True)
    assert pickle.loads(fake_units.worker_config_file.read_bytes()) == {"seq_length": 48}
    assert FakeProcessor.made == [{"seq_length": 48}]  # one processor for the four units of this job
    other = ShardDir(fake_units.root.parent / "other")
    other.work_dir.mkdir(parents=True)
    process_units([unit(5, 1), unit(6, 2)], {"seq_length": 64}, other, thread_workers, quiet=True)
    assert FakeProcessor.made == [{"seq_length": 48}, {"seq_length": 64}]  # another job: its own config


def test_units_already_done_are_not_run_again(fake_units, thread_workers):
    for done in UNITS[:2]:
        fake_units.marker(done.name).parent.mkdir(parents=True, exist_ok=True)
        fake_units.marker(done.name).write_text("{}")
    stats, _ = process_units(UNITS, {}, fake_units, thread_workers, quiet=True)
    assert sorted(FakeProcessor.ran) == [UNITS[2].name, UNITS[3].name]
    assert stats.train.examples == 70  # the fresh units only
    FakeProcessor.ran.clear()
    stats, _ = process_units(UNITS, {}, fake_units, thread_workers, quiet=True)
    assert FakeProcessor.ran == [] and stats.train.examples == 0


@pytest.mark.parametrize("use_workers", [False, True])
def test_without_workers_or_with_one_unit_left_the_main_process_runs_in_order(
    fake_units, thread_workers, use_workers
):
    pool = thread_workers if use_workers else None
    units = UNITS if not use_workers else UNITS[:1]
    stats, _ = process_units(units, {"k": 1}, fake_units, pool, quiet=True)
    assert FakeProcessor.ran == [u.name for u in units]  # in the given order, nothing sorted
    assert FakeProcessor.made == [{"k": 1}] and not fake_units.worker_config_file.exists()
    assert stats.train.examples == sum(u.size for u in units)


def test_a_skipped_file_is_said_once_for_its_first_unit(fake_units, thread_workers, capsys):
    units = [unit(0, 5, 0, "binary.bin"), unit(0, 5, 1, "binary.bin"), unit(1, 5, 0, "text.txt")]
    process_units(units, {}, fake_units, thread_workers, quiet=True)
    err = capsys.readouterr().err
    assert err.count("warning: skipped binary file binary.bin") == 1 and "text.txt" not in err


def test_the_progress_bar_counts_what_it_is_told_and_catches_up_with_the_counters(capsys):
    counters = multiprocessing.get_context("spawn").Array("q", 3)
    bar = ProgressBar(total=1000, initial=100, quiet=False)
    bar.add(10, 20, 30)
    assert bar.seen == [10, 20, 30] and bar.bar.n == 110
    counters[:] = [50, 100, 150]  # what the workers have done so far
    bar.sync(counters)
    assert bar.seen == [50, 100, 150] and bar.bar.n == 150
    bar.sync(counters)  # nothing new
    assert bar.seen == [50, 100, 150] and bar.bar.n == 150
    bar.bar.refresh()
    bar.bar.close()
    assert re.search(r"prepare: +15%.*M chars/s, .*M tokens/s", capsys.readouterr().err)


def test_one_worker_means_the_main_process_does_the_work():
    before = multiprocessing.active_children()
    with start_workers(1) as pool:
        assert pool is None
        assert multiprocessing.active_children() == before


def test_workers_start_up_front_with_one_tokenizer_thread_each_and_are_gone_afterwards():
    with start_workers(2) as pool:
        assert list(pool.counters) == [0, 0, 0]
        children = multiprocessing.active_children()
        assert len(children) == 2  # started already, before any unit was submitted
        assert pool.pool.submit(os.getenv, "TOKENIZERS_PARALLELISM").result() == "false"
    assert not any(child.is_alive() for child in children)


def test_a_worker_that_dies_fails_the_run_in_one_line_instead_of_hanging(capsys):
    with pytest.raises(UserError) as caught, start_workers(2) as pool:
        pool.pool.submit(os._exit, 9).result()  # as the OOM killer would
    message = str(caught.value)
    assert message.startswith("a worker process died") and "--resume" in message and "\n" not in message
    assert multiprocessing.active_children() == []


def test_a_worker_exits_as_soon_as_its_parent_is_gone(monkeypatch):
    parents = iter([42, 42, 42, 1])  # the parent dies: the worker is re-parented
    exits: list[int] = []
    monkeypatch.setattr(workers, "WATCHDOG_SECONDS", 0)
    monkeypatch.setattr(workers.os, "getppid", lambda: next(parents))
    monkeypatch.setattr(workers.os, "_exit", exits.append)
    started = time.monotonic()
    workers._exit_with_parent(42)
    assert exits == [1] and time.monotonic() - started < 5
    assert next(parents, None) is None  # it looked until the parent changed, and no longer


def test_progress_from_a_worker_goes_into_the_shared_counters(monkeypatch):
    counters = multiprocessing.get_context("spawn").Array("q", 3)
    monkeypatch.setattr(workers, "_counters", counters)
    workers._add_progress(1, 2, 3)
    workers._add_progress(10, 20, 30)
    assert list(counters) == [11, 22, 33]
