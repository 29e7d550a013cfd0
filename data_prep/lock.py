"""One job per output directory: the lock that ``prepare``, ``merge``, ``vocab`` and the trainer hold.

``DIR/.lock`` is created with ``O_CREAT | O_EXCL`` (atomic on local disks and on NFS-like shared
filesystems) and holds ``{host, pid, start, heartbeat, refresh}`` as JSON. While the job runs a daemon
thread rewrites ``heartbeat`` every ``refresh`` seconds, and the file is ``flock``-ed where the filesystem
allows. A second job gets a one-line ``UserError`` naming the holder. A lock whose holder is gone is taken
over with a warning: on the same host when its pid is gone (or, as with a pid reused after a restart, no
process holds the file's flock any more); from another host when its heartbeat is older than
``STALE_REFRESHES`` refreshes (5 minutes by default: hosts sharing a filesystem keep their clocks closer).
A job killed outright (SIGKILL, out of memory) leaves its lock; the next job takes it over this way.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from data_prep.errors import UserError

LOCK_NAME = ".lock"
# seconds between heartbeats (a cluster whose jobs should be taken over sooner may lower it)
REFRESH_SECONDS = float(os.environ.get("BART_LOCK_REFRESH_SECONDS", "30"))
STALE_REFRESHES = 10  # a lock from another host is stale after this many refreshes without one


def contents(root: Path) -> list[Path]:
    """The entries of a (locked) directory, without its lock file: what the emptiness checks look at."""
    return [p for p in root.iterdir() if p.name != LOCK_NAME] if root.is_dir() else []


class DirLock:
    """The exclusive lock of one job on ``root`` (``with DirLock(...)``, or ``acquire``/``release``).

    ``root`` is created when missing, and removed again at release if the job left it empty, so that a
    job that fails its checks leaves nothing behind. ``label`` names the directory in messages."""

    def __init__(self, root: Path, label: str, refresh: float = REFRESH_SECONDS) -> None:
        self.root, self.label, self.refresh = root, label, refresh
        self.path = root / LOCK_NAME
        self._fd: int | None = None
        self._record: dict[str, Any] = {}
        self._created_root = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> DirLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock, or raise a one-line UserError naming the job that holds it."""
        if self.root.exists() and not self.root.is_dir():
            raise UserError(f"{self.label} {self.root} exists and is not a directory")
        try:
            for _ in range(3):  # a stale lock is moved aside, then created afresh
                self._created_root = self._created_root or not self.root.exists()
                self.root.mkdir(parents=True, exist_ok=True)
                try:
                    fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
                except FileExistsError:
                    self._take_over_if_gone()
                    continue
                self._hold(fd)
                return
        except OSError as exc:
            raise UserError(f"cannot lock {self.label} {self.root}: {exc.strerror or exc}") from None
        raise UserError(f"cannot lock {self.label} {self.root}: other jobs keep taking its lock")

    def release(self) -> None:
        """Stop the heartbeat and remove the lock file (unless another job took it over meanwhile)."""
        if self._fd is None:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with contextlib.suppress(FileNotFoundError):
            if os.stat(self.path).st_ino == os.fstat(self._fd).st_ino:
                self.path.unlink()
        os.close(self._fd)  # drops the flock
        self._fd = None
        if self._created_root:
            with contextlib.suppress(OSError):  # not empty: the job wrote something, which stays
                self.root.rmdir()

    def _hold(self, fd: int) -> None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            flocked = True
        except OSError:  # a shared filesystem mounted without lock support: host, pid and heartbeat only
            flocked = False
        self._fd = fd
        now = _now()
        self._record = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "start": now,
            "heartbeat": now,
            "refresh": self.refresh,
            "flock": flocked,
        }
        self._write()
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name="lock-heartbeat", daemon=True)
        self._thread.start()

    def _write(self) -> None:
        data = json.dumps(self._record).encode()
        os.pwrite(self._fd, data, 0)  # in place: the flock stays on this file
        os.ftruncate(self._fd, len(data))
        os.fsync(self._fd)  # another host reads it from the server

    def _beat(self) -> None:
        while not self._stop.wait(self.refresh):
            self._record["heartbeat"] = _now()
            with contextlib.suppress(OSError):  # a full disk or a flaky mount: the next beat tries again
                self._write()

    def _take_over_if_gone(self) -> None:
        """Raise the UserError naming a live holder; else move its lock aside, with a warning."""
        holder = read_lock(self.path)
        if holder is None:
            return  # released meanwhile: try to create it again
        why = self._gone(holder)
        if why is None:
            raise UserError(
                f"{self.label} {self.root} is in use by another job ({describe(holder)}): wait for it to "
                f"end, or use another directory (lock file {self.path})"
            )
        aside = self.path.with_name(f"{LOCK_NAME}.gone.{socket.gethostname()}.{os.getpid()}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return  # another job moved it first
        if read_lock(aside) != holder:  # not the lock judged: a live one (a beat, or a job that took over)
            with contextlib.suppress(FileExistsError):
                os.link(aside, self.path)
            aside.unlink()
            return
        aside.unlink()
        print(
            f"warning: taking over the lock of {self.root}, whose job is gone ({why}: {describe(holder)})",
            file=sys.stderr,
        )

    def _gone(self, holder: dict[str, Any]) -> str | None:
        """Why the holder is no more, or None while it may still run."""
        pid = holder.get("pid")
        if holder.get("host") == socket.gethostname() and isinstance(pid, int) and pid > 0:
            if not _pid_alive(pid):
                return f"pid {pid} is gone"
            if holder.get("flock") and self._flock_free():
                return f"pid {pid} is another process now"
            return None
        age = time.time() - holder["heartbeat_time"]
        timeout = STALE_REFRESHES * float(holder.get("refresh") or self.refresh)
        if age > timeout:
            return f"no heartbeat for {age:.0f} s, more than {timeout:.0f} s"
        return None

    def _flock_free(self) -> bool:
        """True when no process holds the lock file's flock (the holder kept it for its whole life)."""
        try:
            fd = os.open(self.path, os.O_RDWR)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError:
            return False
        finally:
            os.close(fd)


def read_lock(path: Path) -> dict[str, Any] | None:
    """The holder recorded in a lock file plus ``heartbeat_time`` (seconds since the epoch; the file's
    mtime when its content is unreadable, as when cut short by a kill); None when there is no file."""
    for attempt in range(2):
        try:
            text, mtime = path.read_text(encoding="utf-8"), path.stat().st_mtime
        except FileNotFoundError:
            return None
        try:
            holder = json.loads(text)
            beat = datetime.fromisoformat(holder["heartbeat"]).timestamp()
            return {**holder, "heartbeat_time": beat}
        except (ValueError, KeyError, TypeError):
            if attempt == 0:
                time.sleep(0.05)  # read while being rewritten: once more
    return {"heartbeat_time": mtime}


def describe(holder: dict[str, Any]) -> str:
    """``host H, pid P, started T``: how messages name a lock's holder."""
    if "pid" not in holder:
        return "an unreadable lock file"
    return f"host {holder.get('host')}, pid {holder.get('pid')}, started {holder.get('start')}"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        pass
    return True
