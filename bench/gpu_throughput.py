"""GPU training throughput and MFU of bart-4-768 at sequence length 512 in bf16, with and without compile.

    python bench/gpu_throughput.py [--config configs/bart-4-768.yaml] [--batch-sizes 8 16 32 64] [--steps 20]

Full-length synthetic batches (source and target 512 tokens), AdamW (fused), bf16 autocast, TF32 on.
FLOPs per token from pretrain.metrics.flops_per_token (~0.55 GFLOP for bart-4-768 at 512); the peak is
the device's dense bf16 figure (pretrain.metrics.PEAK_FLOPS). Needs a CUDA GPU.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pretrain.config import load_config  # noqa: E402
from pretrain.metrics import flops_per_token, peak_flops  # noqa: E402
from pretrain.model import bart_config  # noqa: E402
from pretrain.train import use_tf32  # noqa: E402

# BERT-Chinese ids; only the shapes matter for throughput.
SPECIAL = {"pad_token_id": 0, "bos_token_id": 101, "eos_token_id": 102, "decoder_start_token_id": 101}


def measure(config, batch_size: int, seq: int, steps: int, compile_model: bool) -> float:
    """Steady-state seconds per optimizer step."""
    from transformers import BartForConditionalGeneration

    model = BartForConditionalGeneration._from_config(config, attn_implementation="sdpa").cuda().train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5, eps=1e-6, weight_decay=0.01, fused=True)
    if compile_model:
        model.compile()
    gen = torch.Generator(device="cuda").manual_seed(0)
    ids = torch.randint(1000, config.vocab_size, (batch_size, seq), device="cuda", generator=gen)
    batch = {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "decoder_input_ids": ids,
        "decoder_attention_mask": torch.ones_like(ids),
        "labels": ids,
    }

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(8 if compile_model else 3):
        step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "bart-4-768.yaml")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile runs")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit(
            "bench/gpu_throughput.py needs a CUDA GPU; none is visible (torch.cuda.is_available() is False)"
        )
    use_tf32(True)
    cfg = load_config(args.config)
    config = bart_config(cfg.model, cfg.model.vocab_size or 21128, SPECIAL)
    fpt = flops_per_token(config, args.seq)
    device = torch.device("cuda")
    peak = peak_flops(device)
    print(
        f"{torch.cuda.get_device_name(device)}; {args.config.name}; seq {args.seq}; bf16; "
        f"{fpt / 1e9:.3f} GFLOP/token; peak {peak / 1e12 if peak else float('nan'):.0f} TFLOP/s"
    )
    print(f"{'compile':>8} {'batch':>6} {'step ms':>9} {'tokens/s':>12} {'MFU':>7} {'mem GiB':>8}")
    for compile_model in [False] + ([] if args.no_compile else [True]):
        for bs in args.batch_sizes:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            try:
                seconds = measure(config, bs, args.seq, args.steps, compile_model)
            except torch.cuda.OutOfMemoryError:
                print(f"{compile_model!s:>8} {bs:>6} {'OOM':>9}")
                continue
            tokens = bs * args.seq / seconds
            mfu = f"{tokens * fpt / peak:.1%}" if peak else "n/a"
            mem = torch.cuda.max_memory_allocated() / 2**30
            print(f"{compile_model!s:>8} {bs:>6} {seconds * 1e3:>9.1f} {tokens:>12,.0f} {mfu:>7} {mem:>8.1f}")


if __name__ == "__main__":
    main()
