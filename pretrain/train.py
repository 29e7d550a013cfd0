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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from accelerate import Accelerator, PartialState
from accelerate.utils import DistributedType, ProjectConfiguration, parse_flag_from_env, set_seed
from tqdm.auto import tqdm

from data_prep.errors import UserError
from data_prep.noise import Denoiser
from pretrain import card, tracking
from pretrain.checkpoint import TrainState, load_checkpoint, resume_candidates, run_id, save_checkpoint
from pretrain.collate import IGNORE_INDEX, DenoisingCollator
from pretrain.config import CHOICES, Config, TrainConfig
from pretrain.console import Clock, interactive, log_line, startup_summary
from pretrain.data import EpochBatchSampler, NoisedDataset, Shards, load_shards, make_loader
from pretrain.export import export
from pretrain.heldout import Evaluation
from pretrain.loss import labelled_rows, use_fused_loss
from pretrain.metrics import Throughput, peak_flops
from pretrain.model import build_model
from pretrain.optim import build_optimizer, build_scheduler, extend_schedule
from pretrain.preemption import Preemption
from pretrain.rundir import RunDir, run_identity
from pretrain.stepstats import LossWindow, StepStats
from pretrain.tracking import manifest_markdown, trackers

COMPILE = {"auto": None, "true": True, "yes": True, "false": False, "no": False}


def train(cfg: Config) -> Path:
    """Run (or resume) the pre-training described by ``cfg``; returns the final export directory."""
    validate(cfg)
    with RunDir(Path(cfg.train.output_dir)).hold():  # one job per output_dir, until it ends
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
    attention, backends = cfg.model.attn_implementation, CHOICES["model.attn_implementation"]
    if attention not in backends:
        raise UserError(f"model.attn_implementation must be one of {', '.join(backends)}, not '{attention}'")
    if attention == "flash_attention_2" and importlib.util.find_spec("flash_attn") is None:
        raise UserError("model.attn_implementation flash_attention_2 needs the flash-attn package")
    compile_model(cfg.train)
    if cfg.train.loss_chunks < 0 or cfg.data.pad_to_multiple_of < 1:
        raise UserError("train.loss_chunks must be at least 0 and data.pad_to_multiple_of at least 1")
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


def compile_model(cfg: TrainConfig) -> bool:
    """``train.compile``: ``auto`` compiles on CUDA (where it pays), never on CPU (where compiling costs
    minutes and saves little)."""
    choice = COMPILE.get(str(cfg.compile).lower(), "bad")
    if choice == "bad":
        raise UserError(f"train.compile must be auto, true or false, not '{cfg.compile}'")
    return torch.cuda.is_available() if choice is None else bool(choice)


def grad_accum_steps(cfg: TrainConfig, num_processes: int) -> int:
    """``grad_accum``, or ``global_batch_size / (batch_size * processes)``; the two must agree.

    A per-device ``batch_size`` bigger than the global batch's share of a process is lowered to that
    share (``cfg`` is updated): the seed recipe's 64 on one GPU is 8 per device on 8 GPUs, grad_accum 1,
    so the same config runs as written on any number of GPUs that divides the global batch."""
    if cfg.global_batch_size is None:
        return cfg.grad_accum or 1
    share, rest = divmod(cfg.global_batch_size, num_processes)
    if cfg.batch_size > share and not rest and share:
        cfg.batch_size = share
    per_step = cfg.batch_size * num_processes
    if cfg.global_batch_size % per_step:
        hint = cfg.global_batch_size // num_processes
        fix = (
            f": pass --train.batch_size {hint} or less" if cfg.global_batch_size % num_processes == 0 else ""
        )
        raise UserError(
            f"train.global_batch_size {cfg.global_batch_size} is not a multiple of batch_size "
            f"{cfg.batch_size} x {num_processes} processes{fix}"
        )
    derived = cfg.global_batch_size // per_step
    if cfg.grad_accum is not None and cfg.grad_accum != derived:
        raise UserError(
            f"train.grad_accum {cfg.grad_accum} contradicts global_batch_size {cfg.global_batch_size} "
            f"= {cfg.batch_size} per device x {num_processes} processes x {derived}"
        )
    return derived


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
    last_eval: dict[str, float] = field(default_factory=dict)  # the newest evaluation, for the model card

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
        log_with=trackers(tc.report_to) or None,
        project_config=ProjectConfiguration(project_dir=str(rundir.root), logging_dir=str(rundir.root)),
        step_scheduler_with_optimizer=False,
    )
    use_tf32(tc.tf32)

    shards = load_shards(cfg.data.path, cfg.data.verify)
    identity = run_identity(cfg, shards.vocab_sha256, shards.manifest.get("plan_sha256"))
    rundir.check(identity, resume=bool(tc.resume))
    if shards.seq_length > cfg.model.max_position_embeddings:
        raise UserError(
            f"the data's seq_length {shards.seq_length} exceeds model.max_position_embeddings "
            f"{cfg.model.max_position_embeddings}"
        )
    planned = planned_steps(tc, tc.batch_size * grad_accum * accelerator.num_processes, shards)
    if planned:
        tc.max_steps, why = planned
        accelerator.print(why)
    tok, noise = shards.tokenizer, cfg.noise.build()
    dataset = NoisedDataset(shards.train, Denoiser.from_tokenizer(noise, tok, seed=tc.seed))

    # Model, optimizer and the LR schedule (stepped by us once per optimizer step, never prepared).
    set_seed(tc.seed)
    model = build_model(cfg.model, tok, shards.dir.vocab_file, shards.train)
    use_fused_loss(model, tc.loss_chunks)  # the LM head on the labelled rows only, fused unless 0
    # Fused AdamW (CUDA and CPU) can skip a NaN/inf step on the device (``found_inf``): no host sync.
    optimizer = build_optimizer(model, tc, fused=True)
    scheduler = build_scheduler(optimizer, tc)
    if compile_model(tc):
        model.compile()
    model, optimizer = accelerator.prepare(model, optimizer)
    set_seed(tc.seed, device_specific=True)  # same initial weights everywhere, different dropout per rank
    state = TrainState()
    resumed = load_checkpoint(accelerator, resume_candidates(cfg, rundir), state, scheduler, run_id(identity))
    note = extend_schedule(scheduler, tc, state.step)  # a changed max_steps: the rest is stretched
    if note:
        accelerator.print(note)

    rank, world = accelerator.process_index, accelerator.num_processes
    sampler = EpochBatchSampler(
        len(shards.train), tc.batch_size, rank, world, tc.seed, state.epoch, state.offset
    )
    collate = DenoisingCollator(
        tok.pad_token_id, cfg.data.pad_to_multiple_of, cfg.data.decoder_attention_mask
    )
    loader = make_loader(
        dataset, sampler, collate, cfg.data.num_workers, pin_memory=torch.cuda.is_available()
    )
    eval_noise = Denoiser.from_tokenizer(noise, tok, seed=cfg.eval.noise_seed)
    evaluation = Evaluation.build(shards.valid, eval_noise, cfg.eval, accelerator)
    config = accelerator.unwrap_model(model).config
    meter = Throughput(config, peak_flops(accelerator.device))
    return Trainer(
        cfg, accelerator, rundir, identity, shards, model, optimizer, scheduler, state, resumed, sampler,
        loader, collate, evaluation, meter, grad_accum,
    )  # fmt: skip


def begin(t: Trainer) -> None:
    """Write the run directory (all checks have passed) and start TensorBoard."""
    acc = t.accelerator
    acc.wait_for_everyone()
    config_yaml = yaml.safe_dump(t.cfg.to_dict(), allow_unicode=True, sort_keys=False)
    if acc.is_main_process:
        if t.rundir.start(t.identity, config_yaml):
            acc.print(
                f"{t.rundir.root} held no checkpoint yet: starting afresh (the earlier logs are removed)"
            )
        for name in t.rundir.clean_temporaries():
            acc.print(f"removed {name}, left by an interrupted save")
        for name in t.rundir.set_aside_after(t.state.step) if t.resumed else []:
            acc.print(f"set aside {name}: newer than the checkpoint this run resumes from")
    acc.wait_for_everyone()
    complete_export(t)
    derived = {
        "run.global_batch": t.global_batch,
        "run.grad_accum": t.grad_accum,
        "run.processes": acc.num_processes,
    }
    names = trackers(t.cfg.train.report_to)
    tracking.start(acc, names, t.rundir.tensorboard_dir.name, {**t.cfg.flat(), **derived}, config_yaml)
    acc.log({"run/manifest": manifest_markdown(t.shards.manifest)}, step=t.state.step)
    params = sum(p.numel() for p in acc.unwrap_model(t.model).parameters())
    acc.print(
        startup_summary(params, t.cfg.train.max_steps, t.global_batch, len(t.shards.train), t.shards.manifest)
    )
    acc.print(
        f"global batch {t.global_batch} = {t.cfg.train.batch_size} per device x grad_accum {t.grad_accum} x "
        f"{acc.num_processes} processes; {len(t.shards.train):,} training examples; "
        f"{precision_name(acc)} on {acc.device}"
        + (f"; resumed from {t.resumed} at step {t.state.step}" if t.resumed else "")
    )


# -- the loop ---------------------------------------------------------------------------------------------


def loop(t: Trainer) -> Path:
    """Optimizer steps until ``max_steps``; a NaN/inf step is skipped (and counted) instead of applied.

    The steps never wait for the device: their numbers stay there (``StepStats``) until a step where a
    hook is due (log, evaluate or save) reads them. A skipped step is not logged, evaluated or saved,
    and ``max_bad_steps`` skipped steps in a row stop the run at that read.
    """
    tc, acc = t.cfg.train, t.accelerator
    batches = iter(t.loader)
    bar = tqdm(
        total=tc.max_steps,
        initial=t.state.step,
        disable=not (acc.is_main_process and interactive()),  # else one log line per interval
        desc="train",
        unit="step",
    )
    clock = Clock(first_step=t.state.step)
    seconds_before = t.state.seconds  # the training time of the earlier launches
    window = LossWindow(t.state.window_loss, t.state.window_steps)  # a resumed interval goes on
    stats = StepStats.start(acc.device, t.state.bad_streak)
    t.model.train()
    with Preemption(tc.save_every_minutes) as preemption:
        while t.state.step < tc.max_steps:
            train_step(t, batches, stats)
            bar.update(1)
            stop, timed = preemption.check(acc, t.state.step)
            hooks = (tc.log_every, tc.eval_every, tc.save_every)
            if not (stop or timed or any(due(t.state.step, every, tc.max_steps) for every in hooks)):
                continue
            applied, worst_streak, grad_norm = stats.read(t.state, window)
            t.state.seconds = seconds_before + clock.elapsed()
            stop_if_diverged(t, worst_streak)
            if applied:
                maybe_log(t, window, grad_norm, bar, clock)
                maybe_evaluate(t, bar)
            t.state.window_loss, t.state.window_steps = window.total, window.steps
            if maybe_save(t, applied, forced=stop or timed):
                preemption.saved()
            if stop:
                bar.close()
                acc.end_training()
                acc.print(
                    f"stopped by {preemption.signal_name} at step {t.state.step}: saved "
                    f"{t.rundir.checkpoint(t.state.step)}; the same command with --train.resume auto goes on"
                )
                return t.rundir.checkpoint(t.state.step)
    bar.close()
    export_to(t, t.rundir.final_export)
    acc.end_training()
    acc.print(f"done: {t.state.step} steps, {t.state.bad_steps} skipped; export in {t.rundir.final_export}")
    return t.rundir.final_export


def train_step(t: Trainer, batches: Iterator[dict[str, torch.Tensor]], stats: StepStats) -> None:
    """One optimizer step over ``grad_accum`` micro-batches, queued on the device without a host sync.

    The loss is token-weighted over the whole step: the sum of every target token's loss, over all
    micro-batches and all ranks, divided by the step's target tokens (one all-reduce of that count), so
    64 x 1, 8 x 8 and 8 ranks x 8 train on the same loss. A NaN/inf loss or gradient norm skips the
    update on the device (fused AdamW's ``found_inf``; under fp16 the grad scaler does it).
    """
    acc, state = t.accelerator, t.state
    micro = []
    for _ in range(t.grad_accum):
        batch = next(batches)
        t.meter.add(batch)
        state.epoch, state.offset = t.sampler.advance(state.epoch, state.offset)
        rows = labelled_rows(batch["labels"], max(t.cfg.train.loss_chunks, 1))  # on the host: no device sync
        batch = {**batch, "label_rows": rows}
        micro.append({k: v.to(acc.device, non_blocking=True) for k, v in batch.items()})
    counts = [(batch["labels"] != IGNORE_INDEX).sum() for batch in micro]
    tokens = acc.reduce(torch.stack(counts).sum(), reduction="sum")
    scale = t.grad_accum * acc.num_processes / tokens  # acc.backward divides by grad_accum, DDP by ranks
    loss_sum = torch.zeros((), device=acc.device)
    for batch, count in zip(micro, counts, strict=True):
        with acc.accumulate(t.model):
            loss = t.model(**batch).loss * count
            acc.backward(loss * scale)
        loss_sum += loss.detach()
    grad_norm = gradient_norm(t)
    step_loss = acc.reduce(loss_sum, reduction="sum") / tokens
    finite = torch.isfinite(step_loss)
    if acc.mixed_precision != "fp16" and acc.distributed_type != DistributedType.DEEPSPEED:
        finite &= torch.isfinite(grad_norm)
        t.optimizer.optimizer.found_inf = (~finite).float()  # build_optimizer(fused=True)
    t.optimizer.step()
    t.scheduler.step()
    t.optimizer.zero_grad(set_to_none=True)
    stats.record(step_loss, grad_norm, finite)
    state.step += 1


def gradient_norm(t: Trainer) -> torch.Tensor:
    """The global gradient norm, clipped to ``max_grad_norm`` only when that is set: with clipping off a
    clip pass would only multiply every gradient by 1.0. Sharded (FSDP, DeepSpeed) and fp16-scaled
    gradients take accelerate's path, which knows how to reduce and unscale them."""
    acc, max_norm = t.accelerator, t.cfg.train.max_grad_norm
    clip = 0 < max_norm < math.inf
    sharded = acc.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)
    if clip or sharded or acc.mixed_precision == "fp16":
        norm = acc.clip_grad_norm_(t.model.parameters(), max_norm if clip else math.inf)
        return torch.zeros((), device=acc.device) if norm is None else norm  # None: DeepSpeed clips itself
    return torch.nn.utils.get_total_norm([p.grad for p in t.model.parameters() if p.grad is not None])


def stop_if_diverged(t: Trainer, worst_streak: int) -> None:
    if worst_streak >= t.cfg.train.max_bad_steps:
        done = t.rundir.complete_checkpoints()
        t.accelerator.end_training()
        raise UserError(
            f"loss or gradient was NaN/inf for {worst_streak} steps in a row (up to step "
            f"{t.state.step}); stopped. Last good checkpoint: "
            f"{done[-1][1] if done else 'none'} (lower train.lr or check the data)"
        )


def due(step: int, every: int, last: int) -> bool:
    return step % every == 0 or step == last


def maybe_log(t: Trainer, window: LossWindow, grad_norm: float, bar: tqdm, clock: Clock) -> None:
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
    if bar.disable:
        acc.print(log_line(state.step, tc.max_steps, logs, clock))
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
        t.last_eval = {k: v for k, v in metrics.items() if isinstance(v, float)}
        t.accelerator.log(metrics, step=t.state.step)
    bar.write(
        f"step {t.state.step}: eval loss {metrics['eval/loss']:.4f}, "
        f"accuracy on corrupted tokens {metrics['eval/accuracy']:.3f} (unigram baseline {ev.baseline:.3f})"
    )


def precision_name(acc: Accelerator) -> str:
    return {"no": "fp32"}.get(acc.mixed_precision, acc.mixed_precision)


def export_to(t: Trainer, target: Path) -> None:
    """An export of the model as it is now, with its model card."""
    export(t.accelerator, t.model, t.shards.dir.tokenizer_dir, target, model_card(t, target))


def model_card(t: Trainer, target: Path) -> str:
    """The card of an export made now: the model, its data, how far its training went, its evaluation."""
    tc, acc, step = t.cfg.train, t.accelerator, t.state.step
    model = acc.unwrap_model(t.model)
    noise = t.cfg.noise.build()
    overrides = ", ".join(f"{k}={v}" for k, v in noise.overrides().items() if k != "preset")
    device = torch.cuda.get_device_name() if acc.device.type == "cuda" else acc.device.type
    more = "" if step < tc.max_steps else " --train.max_steps N"  # a finished run goes on with a new total
    training = card.Training(
        step=step,
        max_steps=tc.max_steps,
        global_batch=f"{t.global_batch} = {tc.batch_size} per device x grad_accum {t.grad_accum} x "
        f"{acc.num_processes} processes",
        target_tokens=step * t.global_batch * t.shards.target_tokens_per_example,
        optimizer=f"AdamW lr {tc.lr:g}, betas ({tc.beta1:g}, {tc.beta2:g}), eps {tc.eps:g}, weight decay "
        f"{tc.weight_decay:g}" + (f", gradient clipping {tc.max_grad_norm:g}" if tc.max_grad_norm else ""),
        schedule=f"{tc.warmup_ratio:.0%} linear warmup, then {tc.lr_schedule}",
        noise=noise.preset + (f" ({overrides})" if overrides else ""),
        precision=precision_name(acc),
        devices=f"{acc.num_processes} process{'es' if acc.num_processes > 1 else ''} on {device}",
        wall_seconds=t.state.seconds,
        resume_command=f"accelerate launch -m pretrain --config {t.rundir.config_file} "
        f"--train.resume auto{more}",
        init_from=t.cfg.model.init_from,
    )
    facts = card.Facts(
        name=f"{t.rundir.root.name}/{target.name}",
        config=model.config,
        parameters=sum(p.numel() for p in model.parameters()),
        head=card.head_of(model),
        manifest=t.shards.manifest,
        training=training,
        eval_metrics=t.last_eval,
        license=t.cfg.card.license,
        datasets=list(t.cfg.card.datasets),
    )
    return card.render(facts)


def complete_export(t: Trainer) -> None:
    """The ``hf/step-N`` export of the resumed checkpoint, if a kill or a full disk cut it short."""
    tc, step = t.cfg.train, t.state.step
    if t.resumed and due(step, tc.save_every, tc.max_steps) and not t.rundir.export(step).is_dir():
        export_to(t, t.rundir.export(step))
        t.accelerator.print(f"wrote {t.rundir.export(step)}, which the interrupted run did not finish")


def maybe_save(t: Trainer, applied: bool, forced: bool) -> bool:
    """A checkpoint and an ``hf/step-N`` export every ``save_every`` steps and at the last step (after an
    applied step); a checkpoint alone when ``forced`` (a signal, ``save_every_minutes``). True if saved."""
    tc, acc = t.cfg.train, t.accelerator
    scheduled = applied and due(t.state.step, tc.save_every, tc.max_steps)
    if not (scheduled or forced):
        return False
    with t.meter.paused():
        save_checkpoint(acc, t.rundir, t.state, t.scheduler, run_id(t.identity), tc.keep_checkpoints)
        if scheduled:
            export_to(t, t.rundir.export(t.state.step))
            if acc.is_main_process:
                t.rundir.prune(t.rundir.exports_dir, tc.keep_exports)
    return True
