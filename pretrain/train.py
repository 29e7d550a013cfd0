"""The training loop: BART denoising pre-training through accelerate, read top to bottom.

``train(cfg)`` = ``validate`` (the config alone) -> ``build`` (accelerator, data, noise, model, optimizer,
schedule, resume: all in memory, nothing written) -> ``begin`` (the run directory and TensorBoard are
written only now, once every check has passed) -> ``loop`` (one optimizer step over grad_accum
micro-batches, then the ``maybe_*`` hooks: log, evaluate, checkpoint + export) -> the final export.
"""

from __future__ import annotations

import importlib.util
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from accelerate import Accelerator, PartialState
from accelerate.utils import ProjectConfiguration, parse_flag_from_env, set_seed
from tqdm.auto import tqdm

from data_prep.errors import UserError
from data_prep.noise import Denoiser
from pretrain.checkpoint import TrainState, load_checkpoint, resume_candidates, save_checkpoint
from pretrain.collate import DenoisingCollator
from pretrain.config import Config, TrainConfig
from pretrain.data import EpochBatchSampler, NoisedDataset, Shards, load_shards, make_loader
from pretrain.evaluate import Evaluation
from pretrain.export import export
from pretrain.metrics import Throughput, flops_per_token, peak_flops
from pretrain.model import build_model
from pretrain.optim import build_optimizer, build_scheduler
from pretrain.report import manifest_markdown
from pretrain.rundir import RunDir, run_identity

ATTENTION = ("sdpa", "eager", "flash_attention_2")


def train(cfg: Config) -> Path:
    """Run (or resume) the pre-training described by ``cfg``; returns the final export directory."""
    validate(cfg)
    trainer = build(cfg)
    begin(trainer)
    return loop(trainer)


# -- validate: the checks that need nothing but the config ------------------------------------------------


def validate(cfg: Config) -> None:
    """The checks that need only the config (the rest run in ``build``, still before anything is written)."""
    mixed_precision(cfg.train)
    if not cfg.data.path:
        raise UserError(
            "data.path is not set: pass --data.path DIR (a directory made by `data_prep prepare`)"
        )
    attention = cfg.model.attn_implementation
    if attention not in ATTENTION:
        raise UserError(f"model.attn_implementation must be one of {', '.join(ATTENTION)}, not '{attention}'")
    if attention == "flash_attention_2" and importlib.util.find_spec("flash_attn") is None:
        raise UserError("model.attn_implementation flash_attention_2 needs the flash-attn package")
    out = Path(cfg.train.output_dir)
    if any(p.exists() and not p.is_dir() for p in out.parents):
        raise UserError(f"train.output_dir {out} lies inside a file")


def mixed_precision(cfg: TrainConfig) -> str:
    """``auto`` -> what ``accelerate launch`` was told, else bf16 on a GPU that has it, else fp32 ("no")."""
    cuda = torch.cuda.is_available()
    if cfg.mixed_precision == "auto":
        launcher = os.environ.get("ACCELERATE_MIXED_PRECISION")
        return launcher or ("bf16" if cuda and torch.cuda.is_bf16_supported() else "no")
    if cfg.mixed_precision not in ("no", "bf16", "fp16"):
        raise UserError(f"train.mixed_precision must be auto, no, bf16 or fp16, not '{cfg.mixed_precision}'")
    if cfg.mixed_precision == "fp16" and not cuda:
        raise UserError("train.mixed_precision fp16 needs a GPU")
    return cfg.mixed_precision


def grad_accum_steps(cfg: TrainConfig, num_processes: int) -> int:
    """``grad_accum``, or ``global_batch_size / (batch_size * processes)``; the two must agree."""
    per_step = cfg.batch_size * num_processes
    if cfg.global_batch_size is None:
        return cfg.grad_accum or 1
    if cfg.global_batch_size % per_step:
        raise UserError(
            f"train.global_batch_size {cfg.global_batch_size} is not a multiple of batch_size "
            f"{cfg.batch_size} x {num_processes} processes"
        )
    derived = cfg.global_batch_size // per_step
    if cfg.grad_accum is not None and cfg.grad_accum != derived:
        raise UserError(
            f"train.grad_accum {cfg.grad_accum} contradicts global_batch_size {cfg.global_batch_size} "
            f"= {cfg.batch_size} per device x {num_processes} processes x {derived}"
        )
    return derived


def use_tf32(on: bool) -> None:
    """TF32 for fp32 CUDA matmuls (Ampere and newer); CPU matmuls stay exact fp32."""
    matmul = torch.backends.cuda.matmul
    if hasattr(matmul, "fp32_precision"):  # torch >= 2.9
        matmul.fp32_precision = "tf32" if on else "ieee"
    else:
        matmul.allow_tf32 = on


# -- build: every component, in memory --------------------------------------------------------------------


@dataclass
class Trainer:
    """What ``build`` made and the loop works with."""

    cfg: Config
    accelerator: Accelerator
    rundir: RunDir
    identity: dict[str, Any]
    shards: Shards
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    state: TrainState
    resumed: Path | None
    sampler: EpochBatchSampler
    loader: torch.utils.data.DataLoader
    collate: DenoisingCollator
    evaluation: Evaluation
    meter: Throughput
    grad_accum: int

    @property
    def global_batch(self) -> int:
        return self.cfg.train.batch_size * self.grad_accum * self.accelerator.num_processes


def build(cfg: Config) -> Trainer:
    tc = cfg.train
    rundir = RunDir(Path(tc.output_dir))
    # The process group first (as accelerate would make it), to derive grad_accum for the Accelerator.
    grad_accum = grad_accum_steps(
        tc, PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU")).num_processes
    )
    accelerator = Accelerator(
        mixed_precision=mixed_precision(tc),
        gradient_accumulation_steps=grad_accum,
        log_with="tensorboard",
        project_config=ProjectConfiguration(project_dir=str(rundir.root), logging_dir=str(rundir.root)),
        step_scheduler_with_optimizer=False,
    )
    use_tf32(tc.tf32)

    shards = load_shards(cfg.data.path)
    identity = run_identity(cfg, shards.vocab_sha256)
    rundir.check(identity, resume=bool(tc.resume))
    if shards.seq_length > cfg.model.max_position_embeddings:
        raise UserError(
            f"the data's seq_length {shards.seq_length} exceeds model.max_position_embeddings "
            f"{cfg.model.max_position_embeddings}"
        )
    tok, noise = shards.tokenizer, cfg.noise.build()
    dataset = NoisedDataset(shards.train, Denoiser.from_tokenizer(noise, tok, seed=tc.seed))

    # Model, optimizer and the LR schedule (stepped by us once per optimizer step, never prepared).
    set_seed(tc.seed)
    model = build_model(cfg.model, tok, shards.dir.vocab_file, shards.train)
    optimizer = build_optimizer(model, tc, fused=torch.cuda.is_available())
    scheduler = build_scheduler(optimizer, tc)
    if tc.compile:
        model.compile()
    model, optimizer = accelerator.prepare(model, optimizer)
    set_seed(tc.seed, device_specific=True)  # same initial weights everywhere, different dropout per rank
    state = TrainState()
    accelerator.register_for_checkpointing(scheduler, state)
    resumed = load_checkpoint(accelerator, resume_candidates(cfg, rundir), state)

    rank, world = accelerator.process_index, accelerator.num_processes
    sampler = EpochBatchSampler(
        len(shards.train), tc.batch_size, rank, world, tc.seed, state.epoch, state.offset
    )
    collate = DenoisingCollator(pad_id=tok.pad_token_id)
    loader = make_loader(
        dataset, sampler, collate, cfg.data.num_workers, pin_memory=torch.cuda.is_available()
    )
    eval_noise = Denoiser.from_tokenizer(noise, tok, seed=cfg.eval.noise_seed)
    evaluation = Evaluation.build(shards.valid, eval_noise, cfg.eval, accelerator)
    config = accelerator.unwrap_model(model).config
    meter = Throughput(flops_per_token(config, shards.seq_length), peak_flops(accelerator.device))
    return Trainer(
        cfg, accelerator, rundir, identity, shards, model, optimizer, scheduler, state, resumed, sampler,
        loader, collate, evaluation, meter, grad_accum,
    )  # fmt: skip


def begin(t: Trainer) -> None:
    """Write the run directory (all checks have passed) and start TensorBoard."""
    acc = t.accelerator
    acc.wait_for_everyone()
    if acc.is_main_process:
        config_yaml = yaml.safe_dump(t.cfg.to_dict(), allow_unicode=True, sort_keys=False)
        if t.rundir.start(t.identity, config_yaml):
            acc.print(
                f"{t.rundir.root} held no checkpoint yet: starting afresh (the earlier logs are removed)"
            )
    acc.wait_for_everyone()
    acc.init_trackers(t.rundir.tensorboard_dir.name, config=t.cfg.flat())
    run_logs = {"run/manifest": manifest_markdown(t.shards.manifest), "run/global_batch": t.global_batch}
    acc.log(run_logs, step=t.state.step)
    precision = {"no": "fp32"}.get(acc.mixed_precision, acc.mixed_precision)
    acc.print(
        f"global batch {t.global_batch} = {t.cfg.train.batch_size} per device x grad_accum {t.grad_accum} x "
        f"{acc.num_processes} processes; {len(t.shards.train):,} training examples; "
        f"{precision} on {acc.device}"
        + (f"; resumed from {t.resumed} at step {t.state.step}" if t.resumed else "")
    )


# -- the loop ---------------------------------------------------------------------------------------------


def loop(t: Trainer) -> Path:
    """Optimizer steps until ``max_steps``; a NaN/inf step is skipped (and counted) instead of applied."""
    tc, acc = t.cfg.train, t.accelerator
    batches = iter(t.loader)
    bar = tqdm(
        total=tc.max_steps, initial=t.state.step, disable=not acc.is_main_process, desc="train", unit="step"
    )
    window = LossWindow()
    t.model.train()
    while t.state.step < tc.max_steps:
        loss, grad_norm = train_step(t, batches)
        bar.update(1)
        if loss is None:
            stop_if_diverged(t)
            continue
        window.add(loss)
        maybe_log(t, window, grad_norm, bar)
        maybe_evaluate(t, bar)
        maybe_save(t)
    bar.close()
    export(acc, t.model, t.shards.dir.tokenizer_dir, t.rundir.final_export)
    acc.end_training()
    acc.print(f"done: {t.state.step} steps, {t.state.bad_steps} skipped; export in {t.rundir.final_export}")
    return t.rundir.final_export


def train_step(t: Trainer, batches: Iterator[dict[str, torch.Tensor]]) -> tuple[float | None, float]:
    """One optimizer step over ``grad_accum`` micro-batches: (mean loss over ranks, or None when the loss
    or gradient was not finite and the update was skipped; the gradient norm)."""
    acc, state = t.accelerator, t.state
    step_loss = torch.zeros((), device=acc.device)
    for _ in range(t.grad_accum):
        batch = next(batches)
        t.meter.add(batch)
        state.epoch, state.offset = t.sampler.advance(state.epoch, state.offset)
        batch = {k: v.to(acc.device, non_blocking=True) for k, v in batch.items()}
        with acc.accumulate(t.model):
            loss = t.model(**batch).loss
            acc.backward(loss)
        step_loss += loss.detach()
    grad_norm = acc.clip_grad_norm_(t.model.parameters(), t.cfg.train.max_grad_norm or math.inf)
    mean_loss = acc.reduce(step_loss / t.grad_accum, reduction="mean").item()
    norm = float(grad_norm) if grad_norm is not None else 0.0
    finite = math.isfinite(mean_loss) and (math.isfinite(norm) or acc.mixed_precision == "fp16")
    if finite:
        t.optimizer.step()
        state.bad_streak = 0
    else:
        state.bad_steps += 1
        state.bad_streak += 1
    t.scheduler.step()
    t.optimizer.zero_grad(set_to_none=True)
    state.step += 1
    return (mean_loss if finite else None), norm


def stop_if_diverged(t: Trainer) -> None:
    if t.state.bad_streak >= t.cfg.train.max_bad_steps:
        done = t.rundir.complete_checkpoints()
        t.accelerator.end_training()
        raise UserError(
            f"loss or gradient was NaN/inf for {t.state.bad_streak} steps in a row (up to step "
            f"{t.state.step}); stopped. Last good checkpoint: "
            f"{done[-1][1] if done else 'none'} (lower train.lr or check the data)"
        )


@dataclass
class LossWindow:
    """The training losses since the last log."""

    total: float = 0.0
    steps: int = 0

    def add(self, loss: float) -> None:
        self.total, self.steps = self.total + loss, self.steps + 1

    def take(self) -> float:
        mean = self.total / self.steps
        self.total, self.steps = 0.0, 0
        return mean


def due(step: int, every: int, last: int) -> bool:
    return step % every == 0 or step == last


def maybe_log(t: Trainer, window: LossWindow, grad_norm: float, bar: tqdm) -> None:
    tc, acc, state = t.cfg.train, t.accelerator, t.state
    if not due(state.step, tc.log_every, tc.max_steps):
        return
    totals = acc.reduce(t.meter.local().to(acc.device), reduction="sum").cpu()
    logs = {
        "train/loss": window.take(),
        "train/lr": t.scheduler.get_last_lr()[0],
        "train/grad_norm": grad_norm,
        "train/epoch": state.epoch + state.offset / len(t.shards.train),
        "train/skipped_steps": state.bad_steps,
        **t.meter.report(totals, acc.num_processes),
    }
    if torch.cuda.is_available():
        logs["train/gpu_mem_gb"] = torch.cuda.max_memory_allocated() / 2**30
    acc.log(logs, step=state.step)
    bar.set_postfix(
        loss=f"{logs['train/loss']:.4f}",
        lr=f"{logs['train/lr']:.2e}",
        tok_s=f"{logs['train/tokens_per_sec']:,.0f}",
        refresh=False,
    )


def maybe_evaluate(t: Trainer, bar: tqdm) -> None:
    tc, ev = t.cfg.train, t.evaluation
    if not ev.share or not due(t.state.step, tc.eval_every, tc.max_steps):
        return
    with t.meter.paused():
        metrics = ev.run(t.model, t.accelerator, t.collate, t.shards.tokenizer, t.cfg.eval)
        t.accelerator.log(metrics, step=t.state.step)
    bar.write(
        f"step {t.state.step}: eval loss {metrics['eval/loss']:.4f}, "
        f"accuracy on corrupted tokens {metrics['eval/accuracy']:.3f} (unigram baseline {ev.baseline:.3f})"
    )


def maybe_save(t: Trainer) -> None:
    """A checkpoint and an ``hf/step-N`` export every ``save_every`` steps and at the last step."""
    tc, acc = t.cfg.train, t.accelerator
    if not due(t.state.step, tc.save_every, tc.max_steps):
        return
    with t.meter.paused():
        save_checkpoint(acc, t.rundir, t.state, tc.keep_checkpoints)
        export(acc, t.model, t.shards.dir.tokenizer_dir, t.rundir.export(t.state.step))
        if acc.is_main_process:
            t.rundir.prune(t.rundir.exports_dir, tc.keep_exports)
