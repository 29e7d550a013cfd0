"""Cluster preemption: SIGTERM / SIGUSR1 save a checkpoint and exit cleanly (status 0), on 1 and 2 ranks, and
the resumed run equals the uninterrupted one; ``train.save_every_minutes`` saves by the clock."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import ROOT, run_training, scalars, tiny_overrides, write_shards
from safetensors.torch import load_file

SETTINGS = {
    "train.max_steps": 120,
    "train.log_every": 5,
    "train.eval_every": 1000,
    "train.save_every": 1000,
    "data.num_workers": 1,  # a loader worker that must outlive the signal
}
pytestmark = pytest.mark.slow


def command(data: Path, out: Path, ranks: int, **extra) -> tuple[list[str], dict[str, str]]:
    args = ["-m", "pretrain", "--config", str(ROOT / "configs" / "tiny.yaml")]
    for key, value in tiny_overrides(data, out, **SETTINGS, **extra).items():
        args += [f"--{key}", "null" if value is None else str(value)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if ranks == 1:
        return [sys.executable, *args], env
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(ranks)]
    launcher += ["--master_addr", "127.0.0.1", "--master_port", str(port)]
    return [*launcher, *args], {**env, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}


def ranks_of(launcher: int) -> list[int]:
    """The trainer processes torchrun started (its children running ``-m pretrain``)."""
    children = Path(f"/proc/{launcher}/task/{launcher}/children").read_text().split()
    return [int(c) for c in children if b"pretrain" in Path(f"/proc/{c}/cmdline").read_bytes()]


def signalled_run(data: Path, out: Path, ranks: int, sig: signal.Signals) -> str:
    """Start a run, send ``sig`` to every rank after its 10th step is logged, return its output."""
    cmd, env = command(data, out, ranks)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("step 10/"):
            for pid in [proc.pid] if ranks == 1 else ranks_of(proc.pid):
                os.kill(pid, sig)
            break
    rest, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, "".join(lines) + rest
    return "".join(lines) + rest


def same_run(out: Path, reference: Path) -> None:
    """The resumed run logged the same losses and ended with the same weights as the reference, to the bit."""
    got, want = scalars(out)["train/loss"], scalars(reference)["train/loss"]
    a, b = (load_file(d / "hf" / "final" / "model.safetensors") for d in (out, reference))
    assert got == want and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="POSIX signals")
def test_sigterm_saves_exits_cleanly_and_resumes_to_the_same_run(tmp_path):
    data = write_shards(tmp_path / "shards")
    reference = tmp_path / "reference"
    run_training(data, reference, **SETTINGS)
    out = tmp_path / "run"
    text = signalled_run(data, out, 1, signal.SIGTERM)
    step = int(re.search(r"stopped by SIGTERM at step (\d+): saved", text).group(1))
    assert 10 <= step < 120 and (out / "checkpoints" / f"step-{step}" / "trainer_state.json").is_file()
    assert not (out / "hf" / "final").exists() and "Traceback" not in text
    run_training(data, out, **SETTINGS, **{"train.resume": "auto"})
    # To the bit: the loss window is summed exactly (float64), wherever the signal's read splits it.
    same_run(out, reference)


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc to find the ranks")
def test_sigusr1_on_two_ranks_saves_at_the_same_step_and_resumes(tmp_path):
    data = write_shards(tmp_path / "shards")
    reference = tmp_path / "reference"
    cmd, env = command(data, reference, 2)
    assert subprocess.run(cmd, env=env, capture_output=True, timeout=300).returncode == 0
    out = tmp_path / "run"
    text = signalled_run(data, out, 2, signal.SIGUSR1)
    step = int(re.search(r"stopped by SIGUSR1 at step (\d+): saved", text).group(1))
    assert step % 10 == 0  # the ranks agree on the flag every 10 steps
    assert (out / "checkpoints" / f"step-{step}" / "random_states_1.pkl").is_file()  # both ranks saved
    cmd, env = command(data, out, 2, **{"train.resume": "auto"})
    assert subprocess.run(cmd, env=env, capture_output=True, timeout=300).returncode == 0
    same_run(out, reference)


def test_save_every_minutes_saves_checkpoints_by_the_clock(shards, tmp_path):
    out = tmp_path / "run"
    every_step = {"train.max_steps": 4, "train.save_every": 100, "train.save_every_minutes": 1e-9}
    run_training(shards, out, **every_step)
    assert sorted(p.name for p in (out / "checkpoints").iterdir())[-2:] == ["step-3", "step-4"]
    assert sorted(p.name for p in (out / "hf").iterdir()) == ["final", "step-4"]  # exports stay scheduled
