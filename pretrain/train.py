"""The training loop: BART denoising pre-training through accelerate, read top to bottom.

``train(cfg)`` = ``validate`` (the config against this machine; the config checked its own values when
it was loaded) -> ``build`` (the plan, accelerator, data, noise, model, optimizer, schedule, resume: all
in memory, nothing written) -> ``begin`` (the run directory and TensorBoard are written only now, once
every check has passed) -> ``loop`` (one optimizer step over grad_accum micro-batches; then each hook
that is due: log, evaluate, checkpoint + export) -> ``finish`` (the final export, or the stop by a
signal).
"""

from __future__ import annotations

import importlib.util
import math
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
from pretrain.config import Config
from pretrain.console import Clock, interactive, log_line, startup_summary
from pretrain.data import EpochBatchSampler, NoisedDataset, Shards, load_shards, make_loader
from pretrain.export import export
from pretrain.heldout import Evaluation
from pretrain.loss import labelled_rows, use_fused_loss
from pretrain.metrics import Throughput, peak_flops
from pretrain.model import build_model
from pretrain.optim import build_optimizer, build_scheduler, extend_schedule
from pretrain.plan import Plan, make_plan
from pretrain.preemption import Preemption
from pretrain.rundir import RunDir, run_identity
from pretrain.stepstats import StepStats
from pretrain.tracking import manifest_markdown, trackers


def train(cfg: Config) -> Path:
    """Run (or resume) the pre-training described by ``cfg``; returns the final export directory."""
    validate(cfg)
    with RunDir(Path(cfg.train.output_dir)).hold():  # one job per output_dir, until it ends
        trainer = build(cfg)
        begin(trainer)
        return loop(trainer)


# -- validate: the config against this machine ---------------------------------------------------------


def validate(cfg: Config) -> None:
    """What the config alone cannot say about itself: this machine and this launch. Reads, changes nothing."""
    if not cfg.data.path:
        raise UserError(
            "data.path is not set: pass --data.path DIR (a directory made by `data_prep prepare`)"
        )
    if (
        cfg.model.attn_implementation == "flash_attention_2"
        and importlib.util.find_spec("flash_attn") is None
    ):
        raise UserError("model.attn_implementation flash_attention_2 needs the flash-attn package")
    if cfg.train.mixed_precision == "fp16" and not torch.cuda.is_available():
        raise UserError("train.mixed_precision fp16 needs a GPU")
    out = Path(cfg.train.output_dir)
    if any(p.exists() and not p.is_dir() for p in out.parents):
        raise UserError(f"train.output_dir {out} lies inside a file")


def use_tf32(on: bool) -> None:
    """TF32 for fp32 CUDA matmuls (Ampere and newer); CPU matmuls stay exact fp32."""
    matmul = torch.backends.cuda.matmul
    if hasattr(matmul, "fp32_precision"):  # torch >= 2.9
        matmul.fp32_precision = "tf32" if on else "ieee"
    else:
        matmul.allow_tf32 = on


# -- build: every component, in memory --------------------------------------------------------------------


@dataclass(frozen=True)
class Every:
    """When a hook is due: every ``every`` steps, and at the run's last step."""

    every: int
    last: int

    def due(self, step: int) -> bool:
        return step % self.every == 0 or step == self.last


@dataclass
class Trainer:
    """What ``build`` made and the loop works with, by role."""

    # what to run: the config as loaded, and what the run derived from it
    cfg: Config
    plan: Plan
    # where it goes: the run directory, and the identity its checkpoints carry
    rundir: RunDir
    identity: dict[str, Any]
    # the data: shards, this rank's resumable order, the batches
    shards: Shards
    sampler: EpochBatchSampler
    loader: torch.utils.data.DataLoader
    collate: DenoisingCollator
    # the model and its optimization
    accelerator: Accelerator
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    # progress: the loop's state (saved in every checkpoint), and the checkpoint it resumed from
    state: TrainState
    resumed: Path | None
    # the hooks: when each is due, and what the log and the evaluation use
    log_hook: Every
    eval_hook: Every
    save_hook: Every
    evaluation: Evaluation
    meter: Throughput
    last_eval: dict[str, float] = field(default_factory=dict)  # the newest evaluation, for the model card


def build(cfg: Config) -> Trainer:
    tc = cfg.train
    rundir = RunDir(Path(tc.output_dir))
    shards = load_shards(cfg.data.path, cfg.data.verify)
    # The process group first (as accelerate would make it): the plan needs the number of processes.
    plan = make_plan(cfg, PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU")).num_processes, shards)
    accelerator = Accelerator(
        mixed_precision=plan.mixed_precision,
        gradient_accumulation_steps=plan.grad_accum,
        log_with=trackers(tc.report_to) or None,
        project_config=ProjectConfiguration(project_dir=str(rundir.root), logging_dir=str(rundir.root)),
        step_scheduler_with_optimizer=False,
    )
    use_tf32(tc.tf32)
    identity = run_identity(cfg, shards.vocab_sha256, shards.manifest.get("plan_sha256"))
    rundir.check(identity, resume=bool(tc.resume))
    if shards.seq_length > cfg.model.max_position_embeddings:
        raise UserError(
            f"the data's seq_length {shards.seq_length} exceeds model.max_position_embeddings "
            f"{cfg.model.max_position_embeddings}"
        )
    if plan.budget:
        accelerator.print(plan.budget)
    tok, noise = shards.tokenizer, cfg.noise.build()
    dataset = NoisedDataset(shards.train, Denoiser.from_tokenizer(noise, tok, seed=tc.seed))

    # Model, optimizer and the LR schedule (stepped by us once per optimizer step, never prepared).
    set_seed(tc.seed)
    model = build_model(cfg.model, tok, shards.dir.vocab_file, shards.train)
    use_fused_loss(model, tc.loss_chunks)  # the LM head on the labelled rows only, fused unless 0
    # Fused AdamW (CUDA and CPU) can skip a NaN/inf step on the device (``found_inf``): no host sync.
    optimizer = build_optimizer(model, tc, fused=True)
    scheduler = build_scheduler(optimizer, tc, plan.max_steps)
    if plan.compile:
        model.compile()
    model, optimizer = accelerator.prepare(model, optimizer)
    set_seed(tc.seed, device_specific=True)  # same initial weights everywhere, different dropout per rank
    state = TrainState()
    resumed = load_checkpoint(accelerator, resume_candidates(cfg, rundir), state, scheduler, run_id(identity))
    note = extend_schedule(
        scheduler, tc, state.step, plan.max_steps
    )  # a new max_steps: the rest is stretched
    if note:
        accelerator.print(note)

    rank, world = accelerator.process_index, accelerator.num_processes
    sampler = EpochBatchSampler(
        len(shards.train), plan.batch_size, rank, world, tc.seed, state.epoch, state.offset
    )
    collate = DenoisingCollator(
        tok.pad_token_id, cfg.data.pad_to_multiple_of, cfg.data.decoder_attention_mask
    )
    loader = make_loader(
        dataset, sampler, collate, cfg.data.num_workers, pin_memory=torch.cuda.is_available()
    )
    eval_noise = Denoiser.from_tokenizer(noise, tok, seed=cfg.eval.noise_seed)
    evaluation = Evaluation.build(shards.valid, eval_noise, cfg.eval, accelerator)
    meter = Throughput(accelerator.unwrap_model(model).config, peak_flops(accelerator.device))
    return Trainer(
        cfg=cfg,
        plan=plan,
        rundir=rundir,
        identity=identity,
        shards=shards,
        sampler=sampler,
        loader=loader,
        collate=collate,
        accelerator=accelerator,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        state=state,
        resumed=resumed,
        log_hook=Every(tc.log_every, plan.max_steps),
        eval_hook=Every(tc.eval_every, plan.max_steps),
        save_hook=Every(tc.save_every, plan.max_steps),
        evaluation=evaluation,
        meter=meter,
    )


def begin(t: Trainer) -> None:
    """Write the run directory (all checks have passed) and start TensorBoard."""
    acc, plan = t.accelerator, t.plan
    acc.wait_for_everyone()
    config_yaml = yaml.safe_dump(t.cfg.to_dict(), allow_unicode=True, sort_keys=False)
    if acc.is_main_process:
        if t.rundir.start(t.identity, config_yaml, plan.as_dict()):
            acc.print(
                f"{t.rundir.root} held no checkpoint yet: starting afresh (the earlier logs are removed)"
            )
        for name in t.rundir.clean_temporaries():
            acc.print(f"removed {name}, left by an interrupted save")
        for name in t.rundir.set_aside_after(t.state.step) if t.resumed else []:
            acc.print(f"set aside {name}: newer than the checkpoint this run resumes from")
    acc.wait_for_everyone()
    complete_export(t)
    names = trackers(t.cfg.train.report_to)
    tracking.start(acc, names, t.rundir.tensorboard_dir.name, {**t.cfg.flat(), **plan.hparams()}, config_yaml)
    acc.log({"run/manifest": manifest_markdown(t.shards.manifest)}, step=t.state.step)
    params = sum(p.numel() for p in acc.unwrap_model(t.model).parameters())
    acc.print(
        startup_summary(params, plan.max_steps, plan.global_batch, len(t.shards.train), t.shards.manifest)
    )
    acc.print(
        f"global batch {plan.describe()}; {len(t.shards.train):,} training examples; "
        f"{precision_name(acc)} on {acc.device}"
        + (f"; resumed from {t.resumed} at step {t.state.step}" if t.resumed else "")
    )


# -- the loop ---------------------------------------------------------------------------------------------


def loop(t: Trainer) -> Path:
    """Optimizer steps until ``max_steps`` or a signal; a NaN/inf step is skipped (and counted).

    The steps never wait for the device: their numbers stay there (``StepStats``) until a step where a
    hook is due (log, evaluate, save, or a signal / ``save_every_minutes``) reads them, once. A skipped
    step is not logged, evaluated or saved, and ``max_bad_steps`` skipped steps in a row stop the run at
    that read.
    """
    acc, state = t.accelerator, t.state
    batches = iter(t.loader)
    bar = tqdm(
        total=t.plan.max_steps,
        initial=state.step,
        disable=not (acc.is_main_process and interactive()),  # else one log line per interval
        desc="train",
        unit="step",
    )
    clock = Clock(first_step=state.step)
    seconds_before = state.seconds  # the training time of the earlier launches
    stats = StepStats.start(acc.device, state.bad_streak)
    stopped_by = None
    t.model.train()
    with Preemption(t.cfg.train.save_every_minutes) as preemption:
        while state.step < t.plan.max_steps and stopped_by is None:
            train_step(t, batches, stats)
            bar.update(1)
            stop, timed = preemption.check(acc, state.step)
            log, evaluate, save = (hook.due(state.step) for hook in (t.log_hook, t.eval_hook, t.save_hook))
            if not (stop or timed or log or evaluate or save):
                continue
            applied, worst_streak, grad_norm = stats.read(state)
            state.seconds = seconds_before + clock.elapsed()
            stop_if_diverged(t, worst_streak)
            if applied and log:
                log_step(t, grad_norm, bar, clock)
            if applied and evaluate:
                run_evaluation(t, bar)
            if (applied and save) or stop or timed:
                save_step(t, export=applied and save)
                preemption.saved()
            if stop:
                stopped_by = preemption.signal_name
    return finish(t, bar, stopped_by)


def finish(t: Trainer, bar: tqdm, stopped_by: str | None) -> Path:
    """The end of every launch: the final export (or, stopped by a signal, the checkpoint just saved)."""
    acc, step = t.accelerator, t.state.step
    bar.close()
    if stopped_by is None:
        export_to(t, t.rundir.final_export)
    acc.end_training()
    if stopped_by is not None:
        acc.print(
            f"stopped by {stopped_by} at step {step}: saved {t.rundir.checkpoint(step)}; "
            "the same command with --train.resume auto goes on"
        )
        return t.rundir.checkpoint(step)
    acc.print(f"done: {step} steps, {t.state.bad_steps} skipped; export in {t.rundir.final_export}")
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
    for _ in range(t.plan.grad_accum):
        batch = next(batches)
        t.meter.add(batch)
        state.epoch, state.offset = t.sampler.advance(state.epoch, state.offset)
        rows = labelled_rows(batch["labels"], max(t.cfg.train.loss_chunks, 1))  # on the host: no device sync
        batch = {**batch, "label_rows": rows}
        micro.append({k: v.to(acc.device, non_blocking=True) for k, v in batch.items()})
    counts = [(batch["labels"] != IGNORE_INDEX).sum() for batch in micro]
    tokens = acc.reduce(torch.stack(counts).sum(), reduction="sum")
    scale = t.plan.grad_accum * acc.num_processes / tokens  # acc.backward divides by grad_accum, DDP by ranks
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
        # Fused AdamW (build_optimizer(fused=True)) reads ``found_inf`` in its step and leaves every
        # parameter and moment untouched where it is 1, on the device. accelerate's AcceleratedOptimizer
        # wraps the torch optimizer without copying it, so the attribute set on ``.optimizer`` is the one
        # its ``step`` sees; fp16 (the grad scaler sets it) and DeepSpeed (its own optimizer) skip this.
        t.optimizer.optimizer.found_inf = (~finite).float()
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


def log_step(t: Trainer, grad_norm: float, bar: tqdm, clock: Clock) -> None:
    """The training scalars (the loss window's mean, LR, throughput) to the trackers, and the bar/line."""
    acc, state = t.accelerator, t.state
    totals = acc.reduce(t.meter.local().to(acc.device), reduction="sum").cpu()
    logs = {
        "train/loss": state.take_mean_loss(),
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
        acc.print(log_line(state.step, t.plan.max_steps, logs, clock))
    bar.set_postfix(
        loss=f"{logs['train/loss']:.4f}",
        lr=f"{logs['train/lr']:.2e}",
        tok_s=f"{logs['train/tokens_per_sec']:,.0f}",
        refresh=False,
    )


def run_evaluation(t: Trainer, bar: tqdm) -> None:
    """The held-out loss and accuracy (and fill-in samples), with the throughput clock paused."""
    ev = t.evaluation
    if not ev.share:  # no held-out examples: nothing to evaluate
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
    tc, acc, step, plan = t.cfg.train, t.accelerator, t.state.step, t.plan
    model = acc.unwrap_model(t.model)
    noise = t.cfg.noise.build()
    overrides = ", ".join(f"{k}={v}" for k, v in noise.overrides().items() if k != "preset")
    device = torch.cuda.get_device_name() if acc.device.type == "cuda" else acc.device.type
    more = "" if step < plan.max_steps else " --train.max_steps N"  # a finished run goes on with a new total
    training = card.Training(
        step=step,
        max_steps=plan.max_steps,
        global_batch=plan.describe(),
        target_tokens=step * plan.global_batch * t.shards.target_tokens_per_example,
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
    step = t.state.step
    if t.resumed and t.save_hook.due(step) and not t.rundir.export(step).is_dir():
        export_to(t, t.rundir.export(step))
        t.accelerator.print(f"wrote {t.rundir.export(step)}, which the interrupted run did not finish")


def save_step(t: Trainer, export: bool) -> None:
    """A checkpoint; with ``export`` (a scheduled save after an applied step) also the ``hf/step-N``
    export, and the old ones pruned. A signal or ``save_every_minutes`` saves the checkpoint alone."""
    tc, acc = t.cfg.train, t.accelerator
    with t.meter.paused():
        save_checkpoint(acc, t.rundir, t.state, t.scheduler, run_id(t.identity), tc.keep_checkpoints)
        if export:
            export_to(t, t.rundir.export(t.state.step))
            if acc.is_main_process:
                t.rundir.prune(t.rundir.exports_dir, tc.keep_exports)
