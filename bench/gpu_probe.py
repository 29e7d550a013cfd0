"""One GPU probe: the shipped recipe and the fast path side by side, measured by the real trainer pieces.

    python bench/gpu_probe.py [--budget-s 360] [--out DIR]        # one CUDA GPU, bf16, bart-4-768 at 512
    python bench/gpu_probe.py --tiny                              # the same on the CPU, a tiny model, in CI

It builds its own shards (the embedded People's Daily corpus through `data_prep prepare`, a vocab of the
seed model's 21,128 entries), then for each variant builds the real trainer (``pretrain.train.build``:
loader with noise workers, model, fused AdamW, accelerate) and times ``train_step``, reading the device
only every ``log_every`` steps as the loop does. Variants run in priority order until ``--budget-s``
is spent (the rest are listed as skipped); each starts from a reset dynamo. Then a short run of the real
``python -m pretrain`` CLI with the fast settings. It prints one markdown table:

    variant | ms/step | target tokens/s | MFU (honest) | peak GB | syncs/step | attention kernel

ms/step and tokens/s are per optimizer step of 64 examples (the recipe's global batch); MFU counts the
FLOPs of the real source and target lengths (``pretrain.metrics.batch_flops``) against the device's
dense bf16 peak; syncs/step are host-device syncs seen by ``torch.cuda.set_sync_debug_mode`` over two
steps; attention kernel: the SDPA kernels one profiled step ran (flash, cudnn, efficient, math).
Above the table, the share of padded decoder rows per variant: since issue 21 the loss (fused or not)
sends only the labelled rows through the [d_model x 21,128] LM head (found on the host, so no extra
device sync), so that share of the LM head's matmul FLOPs, softmax passes and logits memory is no longer
spent: a few percent with packed shards (their padding is the rounding to ``pad_to_multiple_of``), about
half with ``prepare --layout uer`` or any one-document-per-example data. MFU counts real tokens only, so
it was never credited with the padded rows: the change shows as ms/step and tokens/s.
A machine that lacks a package it needs gets one line naming them and exit status 2.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import math
import os
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NEEDS = ("torch", "transformers", "accelerate", "datasets", "snownlp", "tensorboard", "yaml", "tqdm", "numpy")
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
SEED_VOCAB = 21128  # uer/bart-chinese-4-768's vocab: the LM head's size is a large part of the step

# Shipped recipe (configs/bart-4-768.yaml before the fast path, on one GPU) and the fast one.
SHIPPED = {
    "train.batch_size": 8, "train.grad_accum": 8, "train.compile": "false", "train.loss_chunks": 0,
    "data.decoder_attention_mask": True, "data.pad_to_multiple_of": 1, "train.log_every": 1,
}  # fmt: skip
FAST = {
    "train.batch_size": 64, "train.grad_accum": 1, "train.compile": "true", "train.loss_chunks": 8,
    "data.decoder_attention_mask": False, "data.pad_to_multiple_of": 64, "train.log_every": 100,
}  # fmt: skip
FAST_EAGER = {**FAST, "train.compile": "false"}
# Priority order, as the budget may end the list early: the side-by-side comparison first, then each
# change switched off one at a time (eager, so that all fit: compiling costs about a minute a variant).
VARIANTS: list[tuple[str, dict]] = [
    ("shipped 8x8 eager", SHIPPED),
    ("fast: 64x1 compiled, all changes", FAST),
    ("64x1 eager, shipped settings", {**SHIPPED, "train.batch_size": 64, "train.grad_accum": 1}),
    ("fast, eager", FAST_EAGER),
    ("fast eager, unfused loss (fp32 logits)", {**FAST_EAGER, "train.loss_chunks": 0}),
    ("fast eager, with decoder mask", {**FAST_EAGER, "data.decoder_attention_mask": True}),
    ("fast eager, log (sync) every step", {**FAST_EAGER, "train.log_every": 1}),
    ("fast eager, pad to 8", {**FAST_EAGER, "data.pad_to_multiple_of": 8}),
    ("fast eager, attention_dropout 0.125", {**FAST_EAGER, "model.attention_dropout": 0.125}),
    ("fast eager, attention_dropout 0", {**FAST_EAGER, "model.attention_dropout": 0.0}),
    ("64x1 compiled, shipped settings", {**SHIPPED, "train.batch_size": 64, "train.grad_accum": 1,
                                         "train.compile": "true"}),
]  # fmt: skip
KERNELS = ("flash", "cudnn", "efficient", "math")  # as named in aten::_scaled_dot_product_*


def missing_packages() -> list[str]:
    return [name for name in NEEDS if importlib.util.find_spec(name) is None]


@dataclass
class Row:
    variant: str
    ms: float = math.nan
    tokens_s: float = math.nan
    mfu: float | None = None
    peak_gb: float | None = None
    syncs: float | None = None
    kernels: str = ""
    note: str = ""
    padded: float | None = None  # share of padded decoder rows, which the loss no longer projects

    def cells(self) -> list[str]:
        if self.note:
            return [self.variant, self.note, "", "", "", "", ""]
        return [
            self.variant,
            "-" if math.isnan(self.ms) else f"{self.ms:,.1f}",
            f"{self.tokens_s:,.0f}",
            "n/a" if self.mfu is None else f"{self.mfu:.1%}",
            "n/a" if self.peak_gb is None else f"{self.peak_gb:.1f}",
            "n/a" if self.syncs is None else f"{self.syncs:.1f}",
            self.kernels,
        ]


def table(rows: list[Row]) -> str:
    head = [
        "variant",
        "ms/step",
        "target tokens/s",
        "MFU (honest)",
        "peak GB",
        "syncs/step",
        "attention kernel",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(r.cells()) + " |" for r in rows])


# -- shards -------------------------------------------------------------------------------------------


def make_shards(root: Path, seq: int, max_chars: int, workers: int, vocab_size: int | None) -> Path:
    """The embedded corpus, a vocab of its characters (padded with [unused] entries to ``vocab_size``)
    and its shards."""
    from data_prep.__main__ import main as data_main
    from data_prep.democorpus import write_corpus

    corpus, vocab = root / "corpus.txt", root / "vocab"
    write_corpus(corpus, max_chars)
    chars = sorted({c for c in corpus.read_text(encoding="utf-8") if not c.isspace()})
    entries = list(dict.fromkeys(SPECIALS + chars))
    if vocab_size:
        entries = (entries + [f"[unused{i}]" for i in range(vocab_size - len(entries))])[:vocab_size]
    vocab.mkdir()
    (vocab / "vocab.txt").write_text("\n".join(entries) + "\n", encoding="utf-8")
    out = root / "shards"
    argv = ["prepare", "--input", str(corpus), "--tokenizer", str(vocab), "--output", str(out), "--quiet"]
    argv += ["--seq-length", str(seq), "--workers", str(workers), "--valid-ratio", "0.01"]
    if data_main(argv) != 0:
        raise SystemExit("data_prep prepare failed")
    return out


# -- one variant --------------------------------------------------------------------------------------


def settings(args: argparse.Namespace, shards: Path, out: Path, variant: dict) -> dict:
    base = {
        "data.path": str(shards), "train.output_dir": str(out), "data.num_workers": args.workers,
        "eval.num_examples": 8, "model.vocab_size": SEED_VOCAB, "train.max_steps": 1_000_000,
    }  # fmt: skip
    if args.tiny:  # a tiny model; batch sizes / 8; eager (compiling costs minutes on a CPU)
        base.update(TINY_MODEL, **{"model.vocab_size": None})
        variant = {**variant, "train.batch_size": max(1, variant["train.batch_size"] // 8)}
        variant["data.pad_to_multiple_of"] = min(variant["data.pad_to_multiple_of"], 16)
        variant["train.compile"] = "false"
    return {**base, **variant}


TINY_MODEL = {
    "model.d_model": 64, "model.encoder_layers": 1, "model.decoder_layers": 1,
    "model.encoder_attention_heads": 2, "model.decoder_attention_heads": 2, "model.encoder_ffn_dim": 128,
    "model.decoder_ffn_dim": 128, "model.max_position_embeddings": 128, "train.mixed_precision": "no",
}  # fmt: skip


def fresh_process_state() -> None:
    """What one variant leaves behind must not shape the next: dynamo's caches, accelerate's singletons."""
    import torch
    from accelerate.state import AcceleratorState, GradientState, PartialState

    torch._dynamo.reset()
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    PartialState._reset_state()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def attention_kernels(run_step) -> str:
    """The SDPA kernels that one step runs, from the profiler's aten op names."""
    import torch

    with torch.profiler.profile() as prof:
        run_step()
    names = {e.key for e in prof.key_averages()}
    found = {kernel for kernel in KERNELS for n in names if "scaled_dot_product" in n and kernel in n}
    return "+".join(sorted(found)) or "none seen"


def measure(name: str, cfg_overrides: dict, measure_s: float, tiny: bool) -> Row:
    import torch
    import torch._dynamo.utils

    from pretrain.config import load_config
    from pretrain.stepstats import StepStats
    from pretrain.train import build, train_step

    fresh_process_state()
    config = ROOT / "configs" / ("tiny.yaml" if tiny else "bart-4-768.yaml")
    t = build(load_config(config, cfg_overrides))
    cuda = t.accelerator.device.type == "cuda"
    batches, stats = iter(t.loader), StepStats.start(t.accelerator.device, 0)

    def step() -> None:
        train_step(t, batches, stats)
        if t.log_hook.due(t.state.step):
            stats.read(t.state)

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    t.model.train()
    warm, last = 0, -1  # warm up until two steps in a row compile nothing new (eager: two steps)
    while warm < 12:
        step()
        warm += 1
        frames = torch._dynamo.utils.counters["frames"]["ok"]
        if warm >= 2 and frames == last:
            break
        last = frames
    sync()
    t.meter.report(t.meter.local(), 1)  # start counting afresh
    steps, start = 0, time.perf_counter()
    while steps < 3 or time.perf_counter() - start < measure_s:
        step()
        steps += 1
    stats.read(t.state)  # the last reads wait for the device
    sync()
    seconds = time.perf_counter() - start
    _, tokens, positions, flops = t.meter.counts
    peak = t.meter.peak_flops
    row = Row(name, ms=seconds / steps * 1e3, tokens_s=tokens / seconds, padded=1 - tokens / positions)
    row.mfu = flops / seconds / peak if peak else None
    if cuda:
        row.peak_gb = torch.cuda.max_memory_allocated() / 2**30
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                step()
                step()
                sync()
            finally:
                torch.cuda.set_sync_debug_mode("default")
        row.syncs = sum("synchroniz" in str(w.message) for w in seen) / 2
    row.kernels = attention_kernels(step)
    if not math.isfinite(t.state.take_mean_loss() if t.state.window_steps else math.nan):
        row.note = "loss not finite"
    return row


def cli_run(args: argparse.Namespace, shards: Path, out: Path, timeout: float, fsdp: bool = False) -> Row:
    """A short run of the real CLI with the fast settings; its last logged tokens/s and MFU. ``fsdp``:
    through ``accelerate launch --config_file configs/accelerate/fsdp.yaml`` on one GPU (FSDP needs a
    GPU: accelerate never enables it on CPU), and the export must load."""
    from pretrain.runlog import read_scalars

    variant = {**FAST, "train.log_every": 10, "train.eval_every": 10**6, "train.save_every": 10**6}
    overrides = settings(args, shards, out, variant)
    overrides["train.max_steps"] = 12 if args.tiny else 40
    config = ROOT / "configs" / ("tiny.yaml" if args.tiny else "bart-4-768.yaml")
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--config_file"]
    launcher += [str(ROOT / "configs" / "accelerate" / "fsdp.yaml"), "--num_processes", "1"]
    argv = [*(launcher if fsdp else [sys.executable]), "-m", "pretrain", "--config", str(config)]
    for key, value in overrides.items():
        argv += [f"--{key}", "null" if value is None else str(value)]
    how = "accelerate launch fsdp.yaml (1 GPU)" if fsdp else "python -m pretrain"
    name = f"CLI: {how}, fast, {overrides['train.max_steps']} steps"
    try:
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=max(timeout, 30))
    except subprocess.TimeoutExpired:
        return Row(name, note="timed out")
    if done.returncode != 0:
        return Row(
            name, note=f"exit {done.returncode}: {(done.stderr.strip().splitlines() or [''])[-1][:80]}"
        )
    scalars = read_scalars(out)
    rate = scalars["train/tokens_per_sec"][-1][2]
    mfu = scalars["train/mfu"][-1][2] if "train/mfu" in scalars else None
    peak = scalars["train/gpu_mem_gb"][-1][2] if "train/gpu_mem_gb" in scalars else None
    if fsdp:
        from transformers import BartForConditionalGeneration

        try:
            BartForConditionalGeneration.from_pretrained(str(out / "hf" / "final"))
        except (OSError, ValueError, RuntimeError) as exc:
            return Row(name, note=f"trained, but the export does not load: {str(exc)[:80]}")
    return Row(name, tokens_s=rate, mfu=mfu, peak_gb=peak, kernels="(see the rows above)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/gpu_probe.py", description=__doc__.splitlines()[0])
    parser.add_argument("--budget-s", type=float, default=360.0, help="stop starting variants after this")
    parser.add_argument("--tiny", action="store_true", help="a tiny model on the CPU (CI)")
    parser.add_argument("--out", type=Path, default=None, help="work directory (default: a temporary one)")
    parser.add_argument("--workers", type=int, default=None, help="noise workers (default: 8, --tiny: 0)")
    args = parser.parse_args(argv)
    missing = missing_packages()
    if missing:
        print(f"gpu_probe: missing packages: {' '.join(missing)} (pip install them, or carry them in)")
        return 2
    import torch

    if not args.tiny and not torch.cuda.is_available():
        print("gpu_probe: no CUDA GPU here; --tiny runs the probe on the CPU")
        return 2
    args.workers = args.workers if args.workers is not None else (0 if args.tiny else 8)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    began = time.perf_counter()
    root = args.out or Path(tempfile.mkdtemp(prefix="gpu_probe-"))
    root.mkdir(parents=True, exist_ok=True)
    seq, chars = (64, 60_000) if args.tiny else (512, 1_500_000)
    shards = make_shards(root, seq, chars, 1 if args.tiny else 8, None if args.tiny else SEED_VOCAB)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    print(
        f"shards ready in {time.perf_counter() - began:.0f} s; {device}, torch {torch.__version__}",
        flush=True,
    )

    rows: list[Row] = []
    measure_s = 0.5 if args.tiny else 8.0
    cli_reserve = 15.0 if args.tiny else 75.0
    for i, (name, variant) in enumerate(VARIANTS):
        left = args.budget_s - (time.perf_counter() - began) - cli_reserve
        if args.tiny and variant["train.compile"] == "true":
            name += " (eager in --tiny)"
        if left < (2 if args.tiny else 40):
            rows.append(Row(name, note="skipped: budget"))
            continue
        try:
            rows.append(
                measure(name, settings(args, shards, root / f"run-{i}", variant), measure_s, args.tiny)
            )
        except torch.cuda.OutOfMemoryError:
            rows.append(Row(name, note="out of memory"))
        except Exception as exc:  # noqa: BLE001 - one failed variant must not cost the others' rows
            rows.append(
                Row(name, note=f"failed: {type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:100]}")
            )
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    left = args.budget_s - (time.perf_counter() - began)
    rows.append(cli_run(args, shards, root / "run-cli", timeout=left))
    left = args.budget_s - (time.perf_counter() - began)
    fsdp_name = "CLI: accelerate launch fsdp.yaml (1 GPU)"
    if args.tiny or left < 60:
        rows.append(Row(fsdp_name, note="skipped: needs a GPU" if args.tiny else "skipped: budget"))
    else:
        rows.append(cli_run(args, shards, root / "run-fsdp", timeout=left, fsdp=True))
    print(f"\n{device}, seq {seq}, {time.perf_counter() - began:.0f} s in all")
    padded = [f"{r.variant}: {r.padded:.0%}" for r in rows if r.padded is not None and not r.note]
    print("padded decoder rows, which the LM head and the loss skip: " + "; ".join(padded) + "\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
