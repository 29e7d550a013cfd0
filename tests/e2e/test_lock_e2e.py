"""One job per output directory, with the real commands in real processes: a second ``python -m pretrain``
or ``prepare`` on a directory in use exits 2 naming the first (on 2 ranks too, none left waiting); the first
goes on with its heartbeat advancing and releases the lock when it ends (a SIGTERM exit included); the
lock of a job killed outright is taken over with a warning, and its directory resumes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import ROOT, clue_corpus, run_training, tiny_overrides, write_shards

from data_prep.lock import LOCK_NAME, read_lock

pytestmark = pytest.mark.slow
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "BART_LOCK_REFRESH_SECONDS": "0.2"}
HOLDER = """
import sys
from pathlib import Path
from data_prep.lock import DirLock
with DirLock(Path(sys.argv[1]), "train.output_dir"):
    print("held", flush=True)
    sys.stdin.read()
"""
LONG = {
    "train.max_steps": 100_000,
    "train.log_every": 5,
    "train.eval_every": 10**6,
    "train.save_every": 10**6,
}


def pretrain_command(data: Path, out: Path, **extra) -> list[str]:
    args = [sys.executable, "-m", "pretrain", "--config", str(ROOT / "configs" / "tiny.yaml")]
    for key, value in tiny_overrides(data, out, **extra).items():
        args += [f"--{key}", "null" if value is None else str(value)]
    return args


def prepare_command(vocab: Path, inputs: Path, out: Path, *extra: str) -> list[str]:
    args = [sys.executable, "-m", "data_prep", "prepare", "--input", str(inputs), "--tokenizer", str(vocab)]
    return [*args, "--output", str(out), "--quiet", "--workers", "1", "--unit-mb", "0.01", *extra]


def error_line(stderr: str, command: str) -> str:
    """The command's one-line error (libraries may print their own warnings before it)."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith(f"{command}: error: ")]
    assert len(lines) == 1, stderr
    return lines[0]


def heartbeat_advances(lock: Path) -> dict:
    first = read_lock(lock)
    deadline = time.monotonic() + 30
    while (now := read_lock(lock))["heartbeat"] == first["heartbeat"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert now["heartbeat_time"] > first["heartbeat_time"] and now["start"] == first["start"]
    return now


def dead_pid() -> int:
    """The pid of a process of this host that has ended (and was reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_second_training_on_a_run_dir_in_use_exits_2_naming_the_first(tmp_path, capsys):
    data = write_shards(tmp_path / "shards")
    out = tmp_path / "run"
    first = subprocess.Popen(
        pretrain_command(data, out, **LONG),
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = []
        for line in first.stdout:  # the first is in its loop
            lines.append(line)
            if line.startswith("step 5/"):
                break
        second = subprocess.run(
            pretrain_command(data, out), env=ENV, capture_output=True, text=True, timeout=300
        )
        assert second.returncode == 2, second.stderr[-3000:]
        error = error_line(second.stderr, "bart-pretrain")
        assert f"train.output_dir {out} is in use by another job" in error
        assert f"(host {socket.gethostname()}, pid {first.pid}, started 20" in error
        assert first.poll() is None, "".join(lines)  # the first goes on undisturbed
        assert heartbeat_advances(out / LOCK_NAME)["pid"] == first.pid
        first.send_signal(signal.SIGTERM)  # a scheduler's preemption: save, exit cleanly, release
        rest, _ = first.communicate(timeout=240)
    finally:
        first.kill()
        first.wait()
    assert first.returncode == 0, "".join(lines) + rest
    assert "stopped by SIGTERM" in rest and not (out / LOCK_NAME).exists()
    assert len(list((out / "tensorboard").glob("events.out.tfevents.*"))) == 1  # the second wrote nothing
    [(step, checkpoint)] = [(int(p.name[5:]), p) for p in (out / "checkpoints").iterdir()]

    # as if the first had crashed instead: its lock is left; the same command resumes (and finishes)
    stale = {"host": socket.gethostname(), "pid": dead_pid(), "start": "2020-01-01T00:00:00.000+00:00"}
    (out / LOCK_NAME).write_text(json.dumps({**stale, "heartbeat": stale["start"], "refresh": 0.2}))
    capsys.readouterr()
    run_training(data, out, **{**LONG, "train.max_steps": step + 2, "train.resume": "auto"})
    err = capsys.readouterr().err
    assert f"taking over the lock of {out}, whose job is gone (pid {stale['pid']} is gone" in err
    assert (out / "hf" / "final" / "model.safetensors").is_file() and not (out / LOCK_NAME).exists()
    assert checkpoint.is_dir()


def test_two_ranks_refused_both_exit_with_the_error_none_waits(tmp_path, shards):
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(out)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "held\n"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
        launcher += ["--master_addr", "127.0.0.1", "--master_port", str(port)]
        env = {**ENV, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
        cmd = [*launcher, *pretrain_command(shards, out)[1:]]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)  # a hang fails here
    finally:
        holder.communicate("")
    refused = f"bart-pretrain: error: train.output_dir {out} is in use by another job (host "
    assert proc.returncode != 0 and proc.stderr.count(refused) == 2, proc.stderr[-3000:]  # from both ranks
    assert f"pid {holder.pid}, started" in proc.stderr and not out.exists()


def test_a_second_prepare_into_an_output_in_use_exits_2_while_the_first_finishes(tmp_path, vocab):
    inputs = tmp_path / "in"
    for i in range(6):  # a few seconds of work: the second is refused while the first runs
        clue_corpus(inputs / f"f{i}.txt", 800, seed=60 + i)
    out = tmp_path / "out"
    first = subprocess.Popen(prepare_command(vocab, inputs, out), env=ENV, stderr=subprocess.PIPE, text=True)
    try:
        while first.poll() is None and not (out / ".prep" / "plan.json").is_file():
            time.sleep(0.01)
        second = subprocess.run(
            prepare_command(vocab, inputs, out, "--resume"),
            env=ENV,
            capture_output=True,
            text=True,
            timeout=120,
        )
        running = first.poll() is None
        beat = heartbeat_advances(out / LOCK_NAME) if running else None
        _, first_err = first.communicate(timeout=300)
    finally:
        first.kill()
        first.wait()
    assert running, "the first prepare ended before the second one was refused: make its corpus bigger"
    assert second.returncode == 2 and second.stderr.count("\n") == 1, second.stderr
    assert (
        f"output {out} is in use by another job (host {socket.gethostname()}, pid {first.pid}"
        in second.stderr
    )
    assert beat["pid"] == first.pid
    assert first.returncode == 0 and first_err == "", first_err
    assert (out / "manifest.json").is_file() and not (out / LOCK_NAME).exists()
    again = subprocess.run(
        prepare_command(vocab, inputs, out, "--resume"), env=ENV, capture_output=True, text=True
    )
    assert again.returncode == 0 and "already complete" in again.stdout, again.stderr
    inspect = [sys.executable, "-m", "data_prep", "inspect", str(out), "--verify"]
    assert subprocess.run(inspect, env=ENV, capture_output=True, text=True).returncode == 0


def test_a_prepare_killed_outright_leaves_a_lock_that_resume_takes_over(tmp_path, vocab):
    inputs = tmp_path / "in"
    for i in range(4):
        clue_corpus(inputs / f"f{i}.txt", 300, seed=60 + i)
    out = tmp_path / "out"
    first = subprocess.Popen(prepare_command(vocab, inputs, out), env=ENV)
    units = out / ".prep" / "units"
    while first.poll() is None and not (units.is_dir() and any(units.iterdir())):
        time.sleep(0.01)
    first.send_signal(signal.SIGKILL)
    assert first.wait() == -signal.SIGKILL
    assert read_lock(out / LOCK_NAME)["pid"] == first.pid  # left behind
    resumed = subprocess.run(
        prepare_command(vocab, inputs, out, "--resume"), env=ENV, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    assert (
        f"warning: taking over the lock of {out}, whose job is gone (pid {first.pid} is gone"
        in resumed.stderr
    )
    assert (out / "manifest.json").is_file() and not (out / LOCK_NAME).exists()
