"""The training loop: BART denoising pre-training through accelerate, read top to bottom.

setup (accelerator, data, noise, model, optimizer, schedule, resume) -> loop over optimizer steps
(grad_accum micro-batches each; skip NaN/inf steps) -> log / evaluate / checkpoint + export -> final export.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
import yaml
from accelerate import Accelerator, PartialState
from accelerate.utils import DistributedType, ProjectConfiguration, parse_flag_from_env, set_seed
from tqdm.auto import tqdm

from data_prep.collate import DenoisingCollator
from data_prep.errors import UserError
from data_prep.noise import Denoiser, NoiseConfig
from pretrain.checkpoint import (
    TrainState,
    check_output_dir,
    complete_checkpoints,
    load_checkpoint,
    prune,
    resume_candidates,
    run_identity,
    save_checkpoint,
    write_run_file,
)
from pretrain.config import Config, TrainConfig
from pretrain.data import EpochBatchSampler, NoisedDataset, load_shards, make_loader
from pretrain.evaluate import build_eval_set, evaluate, rank_slice, samples_markdown, unigram_accuracy
from pretrain.export import export_model
from pretrain.metrics import Throughput, flops_per_token, peak_flops
from pretrain.model import build_model
from pretrain.optim import build_optimizer, build_scheduler
from pretrain.report import CONFIG_FILE, manifest_markdown


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


def use_tf32(on: bool) -> None:
    """TF32 for fp32 CUDA matmuls (Ampere and newer); CPU matmuls stay exact fp32."""
    matmul = torch.backends.cuda.matmul
    if hasattr(matmul, "fp32_precision"):  # torch >= 2.9
        matmul.fp32_precision = "tf32" if on else "ieee"
    else:
        matmul.allow_tf32 = on


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


def train(cfg: Config) -> Path:
    """Run (or resume) the pre-training described by ``cfg``; returns the final export directory."""
    tc = cfg.train
    out = Path(tc.output_dir)
    # The process group first (as accelerate would make it), to derive grad_accum for the Accelerator.
    processes = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU")).num_processes
    grad_accum = grad_accum_steps(tc, processes)
    accelerator = Accelerator(
        mixed_precision=mixed_precision(tc),
        gradient_accumulation_steps=grad_accum,
        log_with="tensorboard",
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out)),
        step_scheduler_with_optimizer=False,
    )
    main = accelerator.is_main_process
    use_tf32(tc.tf32)

    # Data, noise and the run directory.
    shards = load_shards(cfg.data.path)
    tok, vocab_file = shards.tokenizer, shards.path / "tokenizer" / "vocab.txt"
    identity = run_identity(cfg, shards.vocab_sha256)
    check_output_dir(cfg, out, identity)
    accelerator.wait_for_everyone()
    if main:
        out.mkdir(parents=True, exist_ok=True)
        write_run_file(out, identity)
        (out / CONFIG_FILE).write_text(yaml.safe_dump(cfg.to_dict(), allow_unicode=True, sort_keys=False))
    try:
        noise_cfg = NoiseConfig.from_preset(cfg.noise.preset, **cfg.noise.params)
    except (KeyError, ValueError, TypeError) as exc:
        raise UserError(f"bad noise settings (preset '{cfg.noise.preset}'): {exc}") from None
    seq_len = int(shards.manifest.get("seq_length", 512))
    if seq_len > cfg.model.max_position_embeddings:
        raise UserError(
            f"the data's seq_length {seq_len} exceeds model.max_position_embeddings "
            f"{cfg.model.max_position_embeddings}"
        )
    collate = DenoisingCollator(pad_id=tok.pad_token_id)
    dataset = NoisedDataset(shards.train, Denoiser.from_tokenizer(noise_cfg, tok, seed=tc.seed))

    # Model, optimizer and the LR schedule (stepped by us once per optimizer step, never prepared).
    set_seed(tc.seed)
    model = build_model(cfg.model, tok, vocab_file, shards.train)
    optimizer = build_optimizer(model, tc, fused=torch.cuda.is_available())
    scheduler = build_scheduler(optimizer, tc)
    if tc.compile:
        model.compile()
    model, optimizer = accelerator.prepare(model, optimizer)
    set_seed(tc.seed, device_specific=True)  # same initial weights everywhere, different dropout per rank
    state = TrainState()
    accelerator.register_for_checkpointing(scheduler, state)
    resumed = load_checkpoint(accelerator, resume_candidates(cfg, out), state)

    sampler = EpochBatchSampler(
        len(shards.train),
        tc.batch_size,
        accelerator.process_index,
        accelerator.num_processes,
        tc.seed,
        state.epoch,
        state.offset,
    )
    loader = make_loader(
        dataset, sampler, collate, cfg.data.num_workers, pin_memory=torch.cuda.is_available()
    )
    eval_set = []
    if shards.valid is not None:
        eval_denoiser = Denoiser.from_tokenizer(noise_cfg, tok, seed=cfg.eval.noise_seed)
        eval_set = build_eval_set(shards.valid, eval_denoiser, cfg.eval.num_examples)
    eval_share = (
        rank_slice(eval_set, accelerator.process_index, accelerator.num_processes) if eval_set else []
    )
    baseline = unigram_accuracy(eval_set)
    can_sample = accelerator.distributed_type != DistributedType.FSDP and not (
        accelerator.distributed_type == DistributedType.DEEPSPEED
        and accelerator.state.deepspeed_plugin.zero_stage == 3
    )

    meter = Throughput(
        flops_per_token(accelerator.unwrap_model(model).config, seq_len), peak_flops(accelerator.device)
    )
    global_batch = tc.batch_size * grad_accum * accelerator.num_processes
    accelerator.init_trackers("tensorboard", config=cfg.flat())
    accelerator.log(
        {"run/manifest": manifest_markdown(shards.manifest), "run/global_batch": global_batch},
        step=state.step,
    )
    precision_name = {"no": "fp32"}.get(accelerator.mixed_precision, accelerator.mixed_precision)
    accelerator.print(
        f"global batch {global_batch} = {tc.batch_size} per device x grad_accum {grad_accum} x "
        f"{accelerator.num_processes} processes; {len(shards.train):,} training examples; "
        f"{precision_name} on {accelerator.device}"
        + (f"; resumed from {resumed} at step {state.step}" if resumed else "")
    )

    # The loop: one iteration = one optimizer step over grad_accum micro-batches.
    batches = iter(loader)
    bar = tqdm(total=tc.max_steps, initial=state.step, disable=not main, desc="train", unit="step")
    interval_loss, interval_steps = 0.0, 0
    model.train()
    while state.step < tc.max_steps:
        step_loss = torch.zeros((), device=accelerator.device)
        for _ in range(grad_accum):
            batch = next(batches)
            meter.add(batch)
            state.epoch, state.offset = sampler.advance(state.epoch, state.offset)
            batch = {k: v.to(accelerator.device, non_blocking=True) for k, v in batch.items()}
            with accelerator.accumulate(model):
                loss = model(**batch).loss
                accelerator.backward(loss)
            step_loss += loss.detach()

        grad_norm = accelerator.clip_grad_norm_(model.parameters(), tc.max_grad_norm or math.inf)
        step_loss = accelerator.reduce(step_loss / grad_accum, reduction="mean").item()
        grad_norm = float(grad_norm) if grad_norm is not None else 0.0
        finite = math.isfinite(step_loss) and (
            math.isfinite(grad_norm) or accelerator.mixed_precision == "fp16"
        )
        if finite:
            optimizer.step()
            state.bad_streak = 0
        else:
            state.bad_steps += 1
            state.bad_streak += 1
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        state.step += 1
        bar.update(1)

        if not finite:
            if state.bad_streak >= tc.max_bad_steps:
                done = complete_checkpoints(out)
                accelerator.end_training()
                raise UserError(
                    f"loss or gradient was NaN/inf for {state.bad_streak} steps in a row (up to step "
                    f"{state.step}); stopped. Last good checkpoint: "
                    f"{done[-1][1] if done else 'none'} (lower train.lr or check the data)"
                )
            continue
        interval_loss += step_loss
        interval_steps += 1

        if state.step % tc.log_every == 0 or state.step == tc.max_steps:
            totals = accelerator.reduce(meter.local().to(accelerator.device), reduction="sum").cpu()
            logs = {
                "train/loss": interval_loss / interval_steps,
                "train/lr": scheduler.get_last_lr()[0],
                "train/grad_norm": grad_norm,
                "train/epoch": state.epoch + state.offset / len(shards.train),
                "train/skipped_steps": state.bad_steps,
                **meter.report(totals, accelerator.num_processes),
            }
            if torch.cuda.is_available():
                logs["train/gpu_mem_gb"] = torch.cuda.max_memory_allocated() / 2**30
            accelerator.log(logs, step=state.step)
            bar.set_postfix(
                loss=f"{logs['train/loss']:.4f}",
                lr=f"{logs['train/lr']:.2e}",
                tok_s=f"{logs['train/tokens_per_sec']:,.0f}",
                refresh=False,
            )
            interval_loss, interval_steps = 0.0, 0

        if eval_share and (state.step % tc.eval_every == 0 or state.step == tc.max_steps):
            with meter.paused():
                metrics = evaluate(model, eval_share, collate, cfg.eval.batch_size, accelerator)
                metrics["eval/unigram_accuracy"] = baseline
                if main and can_sample:
                    unwrapped = accelerator.unwrap_model(model)
                    metrics["samples/fill_in"] = samples_markdown(unwrapped, tok, cfg.eval, eval_set)
                accelerator.log(metrics, step=state.step)
            bar.write(
                f"step {state.step}: eval loss {metrics['eval/loss']:.4f}, "
                f"accuracy on corrupted tokens {metrics['eval/accuracy']:.3f} "
                f"(unigram baseline {baseline:.3f})"
            )

        if state.step % tc.save_every == 0 or state.step == tc.max_steps:
            with meter.paused():
                save_checkpoint(accelerator, out, state, tc.keep_checkpoints)
                export(accelerator, model, shards.path / "tokenizer", out / "hf" / f"step-{state.step}")
                if main:
                    prune(out / "hf", tc.keep_exports)

    bar.close()
    final = out / "hf" / "final"
    export(accelerator, model, shards.path / "tokenizer", final)
    accelerator.end_training()
    accelerator.print(f"done: {state.step} steps, {state.bad_steps} skipped; export in {final}")
    return final


def export(accelerator: Accelerator, model: torch.nn.Module, tokenizer_dir: Path, target: Path) -> None:
    """Gather the full weights (a collective under FSDP / ZeRO-3) and write the export on the main process."""
    state_dict = accelerator.get_state_dict(model)
    if accelerator.is_main_process:
        export_model(accelerator.unwrap_model(model), state_dict, tokenizer_dir, target)
    accelerator.wait_for_everyone()
