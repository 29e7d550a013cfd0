"""The worker pool of ``prepare``: spawned processes that each turn units into Arrow files.

Units are independent (``data_prep.units``), so the pool only hands them out and shows progress. A
worker reads the job's ``UnitConfig`` once, from ``ShardDir.worker_config_file``; it reports the bytes,
characters and tokens it has done through a shared counter array that the main process shows as one
progress bar. A worker that dies (killed, out of memory) fails the run instead of hanging it.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from data_prep.atomic import write_bytes
from data_prep.errors import UserError
from data_prep.manifest import UnitStats
from data_prep.plan_units import Unit
from data_prep.shards import ShardDir
from data_prep.units import UnitConfig, UnitProcessor


class ProgressBar:
    """tqdm over input bytes, with chars/s and tokens/s, fed by per-block progress."""

    def __init__(self, total: int, initial: int, quiet: bool) -> None:
        self.bar = tqdm(
            total=total,
            initial=initial,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc="prepare",
            disable=quiet,
            file=sys.stderr,
        )
        self.started = time.perf_counter()
        self.seen = [0, 0, 0]  # bytes, chars, tokens

    def add(self, nbytes: int, chars: int, tokens: int) -> None:
        self.seen = [self.seen[0] + nbytes, self.seen[1] + chars, self.seen[2] + tokens]
        self.bar.update(nbytes)
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        self.bar.set_postfix_str(
            f"{self.seen[1] / elapsed / 1e6:.2f}M chars/s, {self.seen[2] / elapsed / 1e6:.2f}M tokens/s",
            refresh=False,
        )

    def sync(self, counters: Any) -> None:
        """Catch up with the shared (bytes, chars, tokens) counters of the worker processes."""
        with counters.get_lock():
            now = list(counters)
        self.add(*(a - b for a, b in zip(now, self.seen, strict=True)))


@dataclass(frozen=True)
class Workers:
    """The worker processes, and the shared (bytes, chars, tokens) counters they report progress in."""

    pool: ProcessPoolExecutor
    counters: Any


@contextlib.contextmanager
def start_workers(count: int) -> Iterator[Workers | None]:
    """``count`` spawned worker processes (None for one: the main process does the work).

    Started before the tokenizer is loaded, so that their start-up (imports) overlaps it. What was
    finished when a worker died is kept, for ``--resume``.
    """
    if count == 1:
        yield None
        return
    ctx = multiprocessing.get_context("spawn")
    counters = ctx.Array("q", 3)
    pool = ProcessPoolExecutor(count, ctx, initializer=_init_worker, initargs=(counters, os.getpid()))
    try:
        for _ in range(count):
            pool.submit(_warm_up)  # spawns the processes now (they are started on demand)
        yield Workers(pool, counters)
    except BrokenProcessPool:
        raise UserError(
            "a worker process died (killed, or out of memory?); run the same command with --resume "
            "to finish (fewer --workers need less memory)"
        ) from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def process_units(
    units: list[Unit], cfg: UnitConfig, shards: ShardDir, workers: Workers | None, quiet: bool
) -> tuple[UnitStats, float]:
    """Run the units that have no marker yet; their summed stats and the seconds taken."""
    pending = [u for u in units if not shards.marker(u.name).is_file()]
    fresh = UnitStats()
    total = sum(u.size for u in units)
    bar = ProgressBar(total, total - sum(u.size for u in pending), quiet)

    def done(unit: Unit, stats: UnitStats) -> None:
        fresh.chars += stats.chars
        fresh.train.add(stats.train)
        fresh.valid.add(stats.valid)
        if stats.status != "ok" and unit.range_index == 0:
            bar.bar.write(f"warning: skipped {stats.status} file {unit.path}", file=sys.stderr)

    with bar.bar:
        if workers is None or len(pending) <= 1:
            processor = UnitProcessor(cfg)
            for unit in pending:
                done(unit, processor.run(unit, shards, bar.add))
        else:
            write_bytes(shards.worker_config_file, pickle.dumps(cfg, protocol=pickle.HIGHEST_PROTOCOL))
            pending.sort(key=lambda u: -u.size)  # big units first: better balance; output order is fixed
            running = {workers.pool.submit(_run_unit, u, str(shards.root)) for u in pending}
            while running:
                finished, running = wait(running, timeout=0.5, return_when=FIRST_COMPLETED)
                for future in finished:
                    done(*future.result())
                bar.sync(workers.counters)
    return fresh, time.perf_counter() - bar.started


# -- inside a worker process -----------------------------------------------------------------------

WATCHDOG_SECONDS = 0.2
_processor: tuple[str, UnitProcessor] | None = None  # (shard directory, its processor)
_counters: Any = None


def _init_worker(counters: Any, parent: int) -> None:
    """One tokenizer thread per worker process (the processes are the parallelism), and a watchdog."""
    global _counters
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    _counters = counters
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True, name="watchdog").start()


def _exit_with_parent(parent: int) -> None:
    """Exit as soon as the main process is gone (SIGKILL/SIGTERM leave no time to stop the pool): an
    orphaned worker would finish its unit and then wait forever. Its unfinished unit has no marker, so
    ``--resume`` redoes it."""
    while os.getppid() == parent:
        time.sleep(WATCHDOG_SECONDS)
    os._exit(1)


def _warm_up() -> None:
    """A task that does nothing: submitting it starts a worker process (and its imports)."""


def _add_progress(nbytes: int, chars: int, tokens: int) -> None:
    with _counters.get_lock():
        _counters[0] += nbytes
        _counters[1] += chars
        _counters[2] += tokens


def _run_unit(unit: Unit, root: str) -> tuple[Unit, UnitStats]:
    """One unit of the job in ``root`` (the job's configuration is loaded once per worker)."""
    global _processor
    shards = ShardDir(Path(root))
    if _processor is None or _processor[0] != root:
        _processor = root, UnitProcessor(pickle.loads(shards.worker_config_file.read_bytes()))
    return unit, _processor[1].run(unit, shards, _add_progress)
