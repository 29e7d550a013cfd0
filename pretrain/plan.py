"""What a run derives at start from its config, its world (processes, GPU) and its data: the ``Plan``.

The config stays as it was loaded (and as ``config.yaml`` records it); everything computed from it lives
here, once: the per-device batch (lowered to the global batch's share of a process), grad_accum,
max_steps from a token or epoch budget, the resolved precision and whether to compile. The run prints
the plan, and records it in TensorBoard and the model card.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from typing import Any

import torch

from data_prep.errors import UserError
from pretrain.config import COMPILE, Config, TrainConfig
from pretrain.data import Shards


@dataclass(frozen=True)
class Plan:
    processes: int
    batch_size: int  # examples per micro-batch, per device (train.batch_size, or the global batch's share)
    grad_accum: int  # micro-batches per optimizer step
    max_steps: int  # optimizer steps of the whole run
    budget: str | None  # how a max_tokens / max_epochs budget gave max_steps; None: train.max_steps as set
    mixed_precision: str  # no | bf16 | fp16 (auto resolved)
    compile: bool

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.grad_accum * self.processes

    def as_dict(self) -> dict[str, Any]:
        """What the run records in ``plan.json`` (``pretrain.rundir``), the global batch included."""
        return {**dataclasses.asdict(self), "global_batch": self.global_batch}

    def hparams(self) -> dict[str, int | str | bool]:
        """The plan as ``run.*`` hyper-parameters, next to the config's in TensorBoard."""
        return {f"run.{k}": v for k, v in self.as_dict().items() if k != "budget"}

    def describe(self) -> str:
        """The global batch and how it is made: "64 = 8 per device x grad_accum 1 x 8 processes"."""
        return (
            f"{self.global_batch} = {self.batch_size} per device x grad_accum {self.grad_accum} "
            f"x {self.processes} processes"
        )


def make_plan(cfg: Config, processes: int, shards: Shards) -> Plan:
    tc = cfg.train
    batch_size, grad_accum = split_batch(tc, processes)
    planned = planned_steps(tc, batch_size * grad_accum * processes, shards)
    max_steps, budget = planned or (tc.max_steps, None)
    return Plan(
        processes=processes,
        batch_size=batch_size,
        grad_accum=grad_accum,
        max_steps=max_steps,
        budget=budget,
        mixed_precision=mixed_precision(tc),
        compile=compile_model(tc),
    )


def split_batch(tc: TrainConfig, processes: int) -> tuple[int, int]:
    """(per-device batch, grad_accum): ``grad_accum``, or ``global_batch_size / (batch_size * processes)``;
    the two must agree.

    A per-device ``batch_size`` bigger than the global batch's share of a process is lowered to that
    share: the seed recipe's 64 on one GPU is 8 per device on 8 GPUs, grad_accum 1, so the same config
    runs as written on any number of GPUs that divides the global batch."""
    batch = tc.batch_size
    if tc.global_batch_size is None:
        return batch, tc.grad_accum or 1
    share, rest = divmod(tc.global_batch_size, processes)
    if batch > share and not rest and share:
        batch = share
    per_step = batch * processes
    if tc.global_batch_size % per_step:
        hint = tc.global_batch_size // processes
        fix = f": pass --train.batch_size {hint} or less" if tc.global_batch_size % processes == 0 else ""
        raise UserError(
            f"train.global_batch_size {tc.global_batch_size} is not a multiple of batch_size "
            f"{batch} x {processes} processes{fix}"
        )
    derived = tc.global_batch_size // per_step
    if tc.grad_accum is not None and tc.grad_accum != derived:
        raise UserError(
            f"train.grad_accum {tc.grad_accum} contradicts global_batch_size {tc.global_batch_size} "
            f"= {batch} per device x {processes} processes x {derived}"
        )
    return batch, derived


def planned_steps(tc: TrainConfig, global_batch: int, shards: Shards) -> tuple[int, str] | None:
    """``max_steps`` from ``max_epochs`` (examples) or ``max_tokens`` (target tokens: a row of n ids is
    n - 1 labels), rounded up to whole steps; with the reason, for the log. None: ``max_steps`` stands."""
    examples = len(shards.train)
    if tc.max_epochs is not None:
        steps = math.ceil(tc.max_epochs * examples / global_batch)
        why = f"train.max_epochs {tc.max_epochs:g} x {examples:,} examples / {global_batch} per step"
        return steps, f"{why} = {steps:,} steps"
    if tc.max_tokens is not None:
        per_example = shards.target_tokens_per_example
        steps = math.ceil(tc.max_tokens / (per_example * global_batch))
        why = f"train.max_tokens {tc.max_tokens:,} / ({per_example:.1f} target tokens x {global_batch})"
        return steps, f"{why} = {steps:,} steps"
    return None


def mixed_precision(tc: TrainConfig) -> str:
    """``auto`` -> what ``accelerate launch`` was told, else bf16 on a GPU that has it, else fp32 ("no")."""
    if tc.mixed_precision == "auto":
        cuda = torch.cuda.is_available()
        launcher = os.environ.get("ACCELERATE_MIXED_PRECISION")
        return launcher or ("bf16" if cuda and torch.cuda.is_bf16_supported() else "no")
    return tc.mixed_precision


def compile_model(tc: TrainConfig) -> bool:
    """``train.compile``: ``auto`` compiles on CUDA (where it pays), never on CPU (where compiling costs
    minutes and saves little)."""
    choice = COMPILE[str(tc.compile).lower()]
    return torch.cuda.is_available() if choice is None else choice
