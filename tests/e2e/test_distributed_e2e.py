"""A real 2-rank gloo group on CPU (torchrun): same as 1 rank with grad_accum 2; resumable on 2 ranks."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import run_training, scalars, tiny_overrides, write_shards
from safetensors.torch import load_file

NO_DROPOUT = {"model.dropout": 0.0, "model.attention_dropout": 0.0, "model.activation_dropout": 0.0}
SETTINGS = {
    "train.batch_size": 2,
    "train.max_steps": 6,
    "train.save_every": 3,
    "train.eval_every": 3,
    "eval.num_examples": 7,
    **NO_DROPOUT,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_2_ranks(data: Path, out: Path, **extra) -> None:
    args = []
    for key, value in tiny_overrides(data, out, **SETTINGS, **extra).items():
        args += [f"--{key}", "null" if value is None else str(value)]
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(free_port()),
        "-m",
        "pretrain",
        "--config",
        str(Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml"),
        *args,
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 processes" in proc.stdout


@pytest.mark.slow
def test_two_ranks_match_one_rank_with_grad_accum_and_resume_on_two_ranks(tmp_path):
    data = write_shards(tmp_path)
    torchrun_2_ranks(data, tmp_path / "ddp")
    run_training(data, tmp_path / "single", **SETTINGS, **{"train.grad_accum": 2})

    ddp, single = scalars(tmp_path / "ddp"), scalars(tmp_path / "single")
    assert [s for s, _ in ddp["train/loss"]] == list(range(1, 7))
    for tag in ("train/loss", "eval/loss", "eval/accuracy", "train/lr"):
        assert len(ddp[tag]) == len(single[tag])
        for (s1, v1), (s2, v2) in zip(ddp[tag], single[tag], strict=True):
            assert s1 == s2 and v1 == pytest.approx(v2, abs=1e-4), (tag, s1)
    # 2 ranks x 2 examples and 1 rank x 2 x 2 both process 4 examples per step
    assert ddp["train/examples_per_sec"][0][1] > 0

    # resume on 2 ranks from the step-3 checkpoint, as after a crash in step 4
    resumed = tmp_path / "resumed"
    shutil.copytree(tmp_path / "ddp", resumed)
    shutil.rmtree(resumed / "checkpoints" / "step-6")
    shutil.rmtree(resumed / "hf")
    torchrun_2_ranks(data, resumed, **{"train.resume": "auto"})
    a = load_file(tmp_path / "ddp" / "hf" / "final" / "model.safetensors")
    b = load_file(resumed / "hf" / "final" / "model.safetensors")
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-6
    again = scalars(resumed)["train/loss"]
    assert [s for s, _ in again] == list(range(1, 7))
    assert [v for _, v in again] == pytest.approx([v for _, v in ddp["train/loss"]], abs=1e-6)
    assert all(torch.isfinite(v).all() for v in b.values())
