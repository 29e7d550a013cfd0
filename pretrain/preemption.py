"""Preemption and time-based saves: SIGTERM / SIGUSR1 (what cluster schedulers send before they kill or
requeue a job) ask for a checkpoint and a clean exit; ``train.save_every_minutes`` asks for a checkpoint.

A signal only sets a flag; the loop asks ``Preemption.check`` after each step. With several ranks the
flags are combined (one tiny all-reduce every ``SYNC_EVERY`` steps, the only extra host sync), so every
rank saves at the same step. DataLoader workers ignore SIGUSR1, so a scheduler that sends it to every
process of the job does not kill the loader under the checkpoint. They keep SIGTERM: it is how the
DataLoader (and multiprocessing at exit) stops a worker, and a worker deaf to it deadlocks the exit
(the parent waits for the worker, the worker for the parent to die).
"""

from __future__ import annotations

import signal
import threading
import time
from types import FrameType
from typing import Any

import torch
from accelerate import Accelerator

SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGUSR1", None)) if s)
SYNC_EVERY = 10  # steps between the ranks' agreement on the flags


class Preemption:
    """The flags a signal or the clock raises, installed for the duration of the loop (``with``)."""

    def __init__(self, save_every_minutes: float) -> None:
        self.interval = save_every_minutes * 60
        self.received: int | None = None
        self.last_save = time.monotonic()
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> Preemption:
        if threading.current_thread() is threading.main_thread():  # signal handlers live there only
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received = signum

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.received).name if self.received else "a signal"

    def check(self, accelerator: Accelerator, step: int) -> tuple[bool, bool]:
        """(stop: a signal arrived, save: a checkpoint is due by the clock), the same on every rank."""
        flags = [
            self.received is not None,
            bool(self.interval) and time.monotonic() - self.last_save >= self.interval,
        ]
        if accelerator.num_processes > 1:
            if step % SYNC_EVERY:
                return False, False
            agreed = accelerator.reduce(
                torch.tensor(flags, dtype=torch.float32, device=accelerator.device), "sum"
            )
            flags = [v > 0 for v in agreed.tolist()]
        return flags[0], flags[1]

    def saved(self) -> None:
        self.last_save = time.monotonic()


def ignore_in_workers(worker_id: int) -> None:
    """``worker_init_fn`` of the DataLoader: SIGUSR1 is the main process's (see the module docstring)."""
    if hasattr(signal, "SIGUSR1"):
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
