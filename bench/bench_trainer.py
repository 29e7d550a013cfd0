"""Trainer overhead on CPU: steps/s of the full trainer vs a bare PyTorch loop, same model and batches.

    python bench/bench_trainer.py [--steps 60] [--rounds 2] [--data DIR]

The full trainer (configs/tiny.yaml: accelerate, noise in a DataLoader worker, logging, NaN checks) runs
``--steps`` steps; its steady-state rate is read from the TensorBoard wall times after ``--warmup`` steps.
The bare loop trains the same model (same seed) on the same batches, collected beforehand, with plain
forward / backward / AdamW / scheduler steps. Overhead = bare rate / trainer rate - 1 (target <= 5%).
Without ``--data`` it prepares shards from ../shared/corpus when present, else synthetic ones.
"""

from __future__ import annotations

import argparse
import itertools
import random
import sys
import tempfile
import time
from pathlib import Path

import torch
from accelerate.utils import set_seed

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(ROOT))

from prepared import prepare  # noqa: E402

from pretrain.config import load_config  # noqa: E402
from pretrain.data import EpochBatchSampler, NoisedDataset, load_shards, make_loader  # noqa: E402
from pretrain.model import build_model  # noqa: E402
from pretrain.optim import build_optimizer, build_scheduler  # noqa: E402
from pretrain.runlog import read_scalars  # noqa: E402
from pretrain.train import train  # noqa: E402


def make_data(root: Path) -> Path:
    """Shards (`data_prep prepare`, seq 128) of the shared CLUECorpusSmall sample with the BERT-Chinese vocab,
    or, without ../shared, of generated text with a character vocab."""
    corpus, vocab = SHARED / "corpus" / "cluecorpussmall_sample.txt", SHARED / "google_zh_vocab.txt"
    (root / "tok").mkdir(parents=True)
    if corpus.is_file() and vocab.is_file():
        (root / "tok" / "vocab.txt").write_bytes(vocab.read_bytes())
    else:
        rng = random.Random(0)
        chars = [chr(c) for c in range(0x4E00, 0x4E00 + 3000)]
        docs = [
            "\n".join("".join(rng.choices(chars, k=rng.randint(8, 40))) + "。" for _ in range(8))
            for _ in range(3000)
        ]
        corpus = root / "corpus.txt"
        corpus.write_text("\n\n".join(docs) + "\n", encoding="utf-8")
        specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        (root / "tok" / "vocab.txt").write_text("\n".join(specials + chars + ["。"]) + "\n", encoding="utf-8")
    return prepare(corpus, root / "tok", root / "data", "--seq-length", "128", "--valid-ratio", "0.02")


def trainer_rate(cfg, warmup: int) -> float:
    train(cfg)
    loss = read_scalars(Path(cfg.train.output_dir))["train/loss"]
    (t0, s0, _), (t1, s1, _) = next(p for p in loss if p[1] >= warmup), loss[-1]
    return (s1 - s0) / (t1 - t0)


def bare_rate(cfg, warmup: int) -> float:
    """The same model, optimizer and schedule, on pre-built batches, in the plainest loop."""
    from data_prep.noise import Denoiser
    from pretrain.collate import DenoisingCollator

    shards = load_shards(cfg.data.path)
    tok = shards.tokenizer
    noise = cfg.noise.build()
    dataset = NoisedDataset(shards.train, Denoiser.from_tokenizer(noise, tok, seed=cfg.train.seed))
    sampler = EpochBatchSampler(len(shards.train), cfg.train.batch_size, 0, 1, cfg.train.seed)
    loader = make_loader(dataset, sampler, DenoisingCollator(pad_id=tok.pad_token_id), 0, pin_memory=False)
    batches = list(itertools.islice(iter(loader), cfg.train.max_steps))
    set_seed(cfg.train.seed)
    model = build_model(cfg.model, tok, shards.dir.vocab_file, shards.train)
    optimizer = build_optimizer(model, cfg.train, fused=False)
    scheduler = build_scheduler(optimizer, cfg.train)
    model.train()
    for step, batch in enumerate(batches, 1):
        model(**batch).loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if step == warmup:  # as the trainer's rate: from the end of step `warmup` to the end of the last
            start = time.perf_counter()
    return (len(batches) - warmup) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--data", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or make_data(Path(tmp))
        overrides = {
            "data.path": str(data),
            "train.max_steps": args.steps,
            "train.log_every": 5,
            "train.eval_every": 10**9,
            "train.save_every": 10**9,
        }
        bare, full = [], []
        for i in range(args.rounds):  # alternate, keep the best of each: other load on the machine only slows
            overrides["train.output_dir"] = str(Path(tmp) / f"run{i}")
            cfg = load_config(ROOT / "configs" / "tiny.yaml", overrides)
            full.append(trainer_rate(cfg, args.warmup))
            bare.append(bare_rate(cfg, args.warmup))
        bare, full = max(bare), max(full)
    print(
        f"configs/tiny.yaml, batch {cfg.train.batch_size}, {torch.get_num_threads()} threads, "
        f"{args.steps} steps"
    )
    print(f"bare PyTorch loop: {bare:.3f} steps/s")
    print(f"full trainer:      {full:.3f} steps/s")
    print(f"trainer overhead:  {bare / full - 1:+.1%} (target <= 5%)")


if __name__ == "__main__":
    main()
