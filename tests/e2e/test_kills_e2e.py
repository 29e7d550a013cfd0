"""Real SIGKILLs at seeded moments (``tests/killpoints.py``), then a resume: the result is the uninterrupted
one. Training (1 and 2 ranks) is killed inside a checkpoint write, an export, a prune, between the renames
that replace ``hf/final``, and at a random time; ``prepare`` (1 and 2 workers) inside a shard write and at
a random time. Afterwards: the same losses and final weights, every export, no temporary left.

One seeded round per kill point here (``BART_FAULT_ROUNDS=N`` for more, ``BART_FAULT_SEED`` to vary them;
``bench/faults.py`` runs the long variant and prints the figures).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import (
    ROOT,
    clue_corpus,
    prepare,
    run_training,
    scalars,
    tiny_overrides,
    tree_bytes,
    write_shards,
)
from killpoints import record
from safetensors.torch import load_file

KILLPOINTS = ROOT / "tests" / "killpoints.py"
SEED = int(os.environ.get("BART_FAULT_SEED", "0"))
ROUNDS = int(os.environ.get("BART_FAULT_ROUNDS", "1"))
SETTINGS = {
    "train.max_steps": 6,
    "train.save_every": 2,
    "train.eval_every": 3,
    "train.keep_checkpoints": 2,
    "train.keep_exports": 2,
}
# How often each point occurs in one 6-step run: 3 checkpoints x 3 torch.save files, 3 exports + final,
# 2 prunes (the step-2 checkpoint and export); ``time`` in milliseconds after the start.
OCCURRENCES = {"checkpoint": 9, "export": 4, "prune": 2, "time": 4500}
pytestmark = [pytest.mark.slow, pytest.mark.faults]  # counted by bench/faults.py


def rounds(point: str, low: int = 1) -> list[int]:
    rng = random.Random(f"{SEED}-{point}")
    return [rng.randint(low, OCCURRENCES[point]) for _ in range(ROUNDS)]


def argv(overrides: dict) -> list[str]:
    out = ["--config", str(ROOT / "configs" / "tiny.yaml")]
    for key, value in overrides.items():
        out += [f"--{key}", "null" if value is None else str(value)]
    return out


def killed_training(data: Path, out: Path, point: str, n: int, ranks: int = 1, **extra) -> int:
    """Run ``python -m pretrain`` (or torchrun with ``ranks``) armed to SIGKILL itself; its exit status."""
    args = [
        str(KILLPOINTS),
        point,
        str(n),
        "-m",
        "pretrain",
        *argv(tiny_overrides(data, out, **SETTINGS, **extra)),
    ]
    env = dict(os.environ)  # 1 rank: the threads of this process, so that its sums are in the same order
    if ranks > 1:
        env |= {"ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
        launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(ranks)]
        args = [*launcher, "--master_addr", "127.0.0.1", "--master_port", str(free_port()), *args]
    else:
        args = [sys.executable, *args]
    return subprocess.run(args, env=env, capture_output=True, timeout=300).returncode


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def temporaries(out: Path) -> list[str]:
    dirs = [out, out / "checkpoints", out / "hf"]
    names = [f"{d.name}/{p.name}" for d in dirs if d.is_dir() for p in d.iterdir() if p.name.startswith(".")]
    return sorted(n for n in names if ".set-aside-" not in n)  # set aside on purpose, not left over


def assert_same_run(out: Path, reference: Path, exact: bool = True) -> None:
    got, want = scalars(out)["train/loss"], scalars(reference)["train/loss"]
    assert [s for s, _ in got] == [s for s, _ in want]
    a, b = (load_file(d / "hf" / "final" / "model.safetensors") for d in (out, reference))
    if exact:
        assert got == want
        assert all(torch.equal(a[k], b[k]) for k in a)
    else:
        assert [v for _, v in got] == pytest.approx([v for _, v in want], abs=1e-6)
        assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-6
    assert sorted(p.name for p in (out / "hf").iterdir()) == sorted(
        p.name for p in (reference / "hf").iterdir()
    )
    assert temporaries(out) == []


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("kills")
    data = write_shards(root / "shards")
    run_training(data, root / "reference", **SETTINGS)
    return data, root / "reference"


@pytest.mark.parametrize("point", ["checkpoint", "export", "prune", "time"])
def test_training_killed_at_a_seeded_moment_resumes_to_the_same_run(reference, tmp_path, point):
    data, ref = reference
    for i, n in enumerate(rounds(point, low=2000 if point == "time" else 1)):
        out = tmp_path / f"run{i}"
        status = killed_training(data, out, point, n)
        assert status in (-signal.SIGKILL, 0), status  # 0: the run ended before the moment came
        run_training(data, out, **SETTINGS, **{"train.resume": "auto"})
        assert_same_run(out, ref)
        record(scenario="train, 1 rank", point=point, n=n, killed=status != 0)


def test_training_killed_between_the_renames_that_replace_hf_final(reference, tmp_path):
    data, ref = reference
    first = {**SETTINGS, "train.max_steps": 4}
    base = tmp_path / "base"
    run_training(data, base, **first)
    extended = Path(shutil.copytree(base, tmp_path / "extended"))
    run_training(data, extended, **SETTINGS, **{"train.resume": "auto"})  # the uninterrupted extension
    out = Path(shutil.copytree(base, tmp_path / "out"))
    assert killed_training(data, out, "replace", 1, **{"train.resume": "auto"}) == -signal.SIGKILL
    assert (out / "hf" / ".old-final").is_dir() and not (out / "hf" / "final").exists()
    run_training(data, out, **SETTINGS, **{"train.resume": "auto"})
    assert_same_run(out, extended)
    record(scenario="train, 1 rank", point="replace", n=1, killed=True)


def test_two_ranks_killed_inside_a_checkpoint_resume_to_the_same_run(tmp_path):
    data = write_shards(tmp_path / "shards")
    two = {"train.batch_size": 2}
    ref = tmp_path / "reference"
    assert killed_training(data, ref, "time", 10**7, ranks=2, **two) == 0  # never fires: a plain run
    for i, n in enumerate(rounds("checkpoint")):
        out = tmp_path / f"run{i}"
        assert killed_training(data, out, "checkpoint", n, ranks=2, **two) != 0
        assert killed_training(data, out, "time", 10**7, ranks=2, **two, **{"train.resume": "auto"}) == 0
        assert_same_run(out, ref, exact=False)
        record(scenario="train, 2 ranks", point="checkpoint", n=n, killed=True)
    # damage on one rank only (rank 1's RNG state): both ranks fall back to the previous checkpoint together
    out = Path(shutil.copytree(ref, tmp_path / "damaged"))
    (out / "checkpoints" / "step-6" / "random_states_1.pkl").write_bytes(b"garbage")
    shutil.rmtree(out / "hf" / "final")
    assert killed_training(data, out, "time", 10**7, ranks=2, **two, **{"train.resume": "auto"}) == 0
    assert (out / "checkpoints" / ".set-aside-step-6").is_dir()
    assert_same_run(out, ref, exact=False)


# -- prepare ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, vocab) -> tuple[Path, Path, tuple[str, ...]]:
    root = tmp_path_factory.mktemp("prep-kills")
    for i in range(3):
        clue_corpus(root / "in" / f"f{i}.txt", 300, seed=40 + i)
    args = ("--seq-length", "64", "--unit-mb", "0.005", "--valid-ratio", "0.1")
    assert prepare(vocab, [root / "in"], root / "ref", *args) == 0
    return root / "in", root / "ref", args


def killed_prepare(
    vocab: Path, inputs: Path, out: Path, args: tuple[str, ...], point: str, n: int, workers: int
):
    """``prepare`` SIGKILLed at ``point`` (``time`` with workers: the whole process group); its status."""
    group_kill = point == "time" and workers > 1
    armed = ("time", str(10**7)) if group_kill else (point, str(n))
    cmd = [sys.executable, str(KILLPOINTS), *armed, "-m", "data_prep", "prepare", "--quiet"]
    cmd += [
        "--input",
        str(inputs),
        "--tokenizer",
        str(vocab),
        "--output",
        str(out),
        *args,
        "--workers",
        str(workers),
    ]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if group_kill:  # n ms after the first unit is done
        units = out / ".prep" / "units"
        while proc.poll() is None and not (units.is_dir() and any(units.iterdir())):
            time.sleep(0.005)
        time.sleep(n / 1000)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.wait(timeout=300)


@pytest.mark.parametrize(("point", "workers", "top"), [("shard", 1, 30), ("time", 2, 400)])
def test_prepare_killed_at_a_seeded_moment_resumes_to_identical_bytes(
    corpus, vocab, tmp_path, point, workers, top
):
    inputs, ref, args = corpus
    rng = random.Random(f"{SEED}-prepare-{point}")
    for i in range(ROUNDS):
        out = tmp_path / f"out{i}"
        n = rng.randint(1 if point == "shard" else 0, top)
        status = killed_prepare(vocab, inputs, out, args, point, n, workers)
        assert status in (-signal.SIGKILL, 0), status
        resume = ("--resume",) if out.exists() else ()
        assert prepare(vocab, [inputs], out, *args, *resume) == 0
        assert tree_bytes(out) == tree_bytes(ref)
        record(scenario=f"prepare, {workers} worker(s)", point=point, n=n, killed=status != 0)
