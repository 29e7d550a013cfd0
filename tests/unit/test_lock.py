"""``data_prep.lock.DirLock`` against real holder processes: refused while the holder lives, taken over with
a warning once it is gone (same host: its pid; another host: its heartbeat), and the heartbeat goes on."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from helpers import ROOT

from data_prep.errors import UserError
from data_prep.lock import LOCK_NAME, STALE_REFRESHES, DirLock, read_lock

HOLDER = """
import sys
from pathlib import Path
from data_prep.lock import DirLock
with DirLock(Path(sys.argv[1]), "output", float(sys.argv[2])):
    print("held", flush=True)
    sys.stdin.read()
"""


def start_holder(root: Path, refresh: float = 30.0) -> subprocess.Popen:
    """A process that holds the lock of ``root`` until its stdin is closed."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(root), str(refresh)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline() == "held\n"
    return proc


def stamp(seconds_ago: float) -> str:
    return (datetime.now(timezone.utc) - timedelta(seconds=seconds_ago)).isoformat(timespec="milliseconds")


def plant(root: Path, **fields) -> Path:
    """A lock file as another job would have left it."""
    root.mkdir(parents=True, exist_ok=True)
    record = {"host": "elsewhere", "pid": 4242, "start": stamp(7200), "heartbeat": stamp(0), "refresh": 30.0}
    (root / LOCK_NAME).write_text(json.dumps({**record, **fields}))
    return root / LOCK_NAME


def test_a_second_job_is_refused_with_one_line_naming_the_holder(tmp_path):
    root = tmp_path / "out"
    holder = start_holder(root)
    try:
        with pytest.raises(UserError) as refused:
            DirLock(root, "output").acquire()
        message = str(refused.value)
        assert "\n" not in message and f"output {root} is in use by another job" in message
        assert f"host {socket.gethostname()}, pid {holder.pid}, started 20" in message
        assert read_lock(root / LOCK_NAME)["pid"] == holder.pid  # the refused job left it alone
    finally:
        holder.communicate("")
    assert holder.returncode == 0 and not root.exists()  # released; the directory it made is gone again
    with DirLock(root, "output"):  # free now
        assert read_lock(root / LOCK_NAME)["pid"] == os.getpid()


def test_the_lock_of_a_killed_process_is_taken_over_with_a_warning(tmp_path, capsys):
    root = tmp_path / "out"
    holder = start_holder(root)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    (root / "kept.txt").write_text("the dead job's work")
    with DirLock(root, "output"):
        assert read_lock(root / LOCK_NAME)["pid"] == os.getpid()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"warning: taking over the lock of {root}" in err
    assert f"pid {holder.pid} is gone" in err
    assert sorted(p.name for p in root.iterdir()) == ["kept.txt"]  # released; the work stays


def test_a_reused_pid_that_holds_no_flock_does_not_keep_the_lock(tmp_path, capsys):
    """After a restart (a container's) the pid on record may be a live process again: the flock tells."""
    root = tmp_path / "out"
    plant(root, host=socket.gethostname(), pid=os.getppid(), flock=True)
    with DirLock(root, "output"):
        pass
    assert f"pid {os.getppid()} is another process now" in capsys.readouterr().err
    plant(root, host=socket.gethostname(), pid=os.getppid(), flock=False)  # no flock on record: the pid rules
    with pytest.raises(UserError, match=f"pid {os.getppid()}, started"):
        DirLock(root, "output").acquire()


def test_another_hosts_lock_is_taken_over_only_when_its_heartbeat_is_old(tmp_path, capsys):
    root = tmp_path / "out"
    timeout = STALE_REFRESHES * 30.0
    plant(root, heartbeat=stamp(timeout - 30))  # late, but within the timeout: may still run
    with pytest.raises(UserError, match="in use by another job \\(host elsewhere, pid 4242, started"):
        DirLock(root, "output").acquire()
    assert capsys.readouterr().err == ""
    plant(root, heartbeat=stamp(timeout + 30))
    with DirLock(root, "output"):
        assert read_lock(root / LOCK_NAME)["host"] == socket.gethostname()
    err = capsys.readouterr().err
    assert "host elsewhere, pid 4242" in err and f"more than {timeout:.0f} s" in err
    assert not (root / LOCK_NAME).exists()  # released (the directory was there before: it stays)


def test_an_unreadable_lock_counts_by_its_age(tmp_path):
    """A lock file cut short (a kill while it was written) holds no heartbeat: its mtime is one."""
    root = tmp_path / "out"
    lock = plant(root)
    lock.write_text("")
    with pytest.raises(UserError, match="an unreadable lock file"):
        DirLock(root, "output").acquire()
    old = time.time() - STALE_REFRESHES * 30.0 - 60
    os.utime(lock, (old, old))
    with DirLock(root, "output"):
        assert read_lock(lock)["pid"] == os.getpid()


def test_the_heartbeat_advances_while_the_holder_runs(tmp_path):
    root = tmp_path / "out"
    holder = start_holder(root, refresh=0.1)
    try:
        first = read_lock(root / LOCK_NAME)
        deadline = time.monotonic() + 10
        while read_lock(root / LOCK_NAME)["heartbeat"] == first["heartbeat"] and time.monotonic() < deadline:
            time.sleep(0.05)
        later = read_lock(root / LOCK_NAME)
    finally:
        holder.communicate("")
    assert later["heartbeat_time"] > first["heartbeat_time"] and later["start"] == first["start"]
    assert later["pid"] == holder.pid and later["refresh"] == 0.1


def test_a_lock_taken_over_from_a_job_is_not_removed_by_that_job(tmp_path):
    root = tmp_path / "out"
    mine = DirLock(root, "output")
    mine.acquire()
    os.unlink(root / LOCK_NAME)  # as a job on another host that judged this one gone would move it
    theirs = plant(root)
    mine.release()
    assert read_lock(theirs)["host"] == "elsewhere"


def test_a_file_in_the_way_is_a_one_line_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UserError, match=f"^output {blocker} exists and is not a directory$"):
        DirLock(blocker, "output").acquire()
