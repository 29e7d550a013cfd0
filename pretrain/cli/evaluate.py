"""``bart-eval`` (``python -m pretrain.evaluate``): score any checkpoints the same way, side by side.

usage: bart-eval MODEL [MODEL ...] --data SHARDS [--split valid] [--examples N] [--preset uer|bart]
                 [--set KEY=VALUE ...] [--seed S] [--batch-size B] [--cloze N] [--json FILE] [--card]

MODEL: a run directory (its hf/final, else its newest hf/step-N), an export or any local Hugging Face
BART directory, a UER-py model.bin (read with the data's vocab), or ``random`` (the shape of the other
models, freshly initialised). With no noise option given and a run directory among the models, the
noise and evaluation settings are that run's, so its own logged numbers come out.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from data_prep.atomic import write_text
from data_prep.cli import Parser, int_at_least
from data_prep.cli.noise import parse_overrides
from data_prep.errors import run_cli
from data_prep.noise import PRESETS, NoiseConfig
from data_prep.shards import SPLITS

if TYPE_CHECKING:
    from pretrain.scoring import Settings


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="bart-eval", description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", metavar="MODEL", help="run dir, export, UER model.bin or random")
    parser.add_argument("--data", required=True, type=Path, metavar="SHARDS", help="prepared shards")
    parser.add_argument("--split", default="valid", choices=SPLITS, help="split to score on (valid)")
    parser.add_argument("--examples", type=int_at_least(1), help="held-out examples (eval.num_examples: 512)")
    parser.add_argument("--preset", choices=sorted(PRESETS), help="noise preset (uer)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a noise parameter")
    parser.add_argument("--seed", type=int_at_least(0), help="noise seed of the examples (1234)")
    parser.add_argument("--batch-size", type=int_at_least(1), help="examples per forward pass (16)")
    parser.add_argument("--cloze", type=int_at_least(0), default=200, help="cloze items (200; 0: none)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--card", action="store_true", help="add the results to each export's model card")
    parser.add_argument("--heads", type=int_at_least(1), default=12, help="UER files: attention heads (12)")
    parser.add_argument("--encoder-layers", type=int_at_least(1), help="UER files: default from the keys")
    parser.add_argument("--decoder-layers", type=int_at_least(1), help="UER files: default from the keys")
    return parser


def settings_for(args: argparse.Namespace) -> Settings:
    """The run's settings when a run directory is named and no noise option overrides them (``scoring`` is
    imported here, not at the top, so that ``--help`` stays fast)."""
    from pretrain.scoring import Settings

    chosen = args.preset is not None or args.set or args.seed is not None
    runs = [Path(m) for m in args.models if Path(m).is_dir() and (Path(m) / "run.json").is_file()]
    settings = Settings.of_run(runs[0]) if runs and not chosen else None
    if settings is None:
        noise = NoiseConfig.from_preset(args.preset or "uer", **parse_overrides(args.set))
        settings = Settings(noise=noise)
        if args.seed is not None:
            settings.noise_seed = args.seed
    if args.examples is not None:
        settings.examples = args.examples
    if args.batch_size is not None:
        settings.batch_size = args.batch_size
    settings.cloze, settings.split = args.cloze, args.split
    return settings


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from accelerate import Accelerator
    from tqdm.auto import tqdm
    from transformers.utils import logging as hf_logging

    from pretrain.config import TrainConfig
    from pretrain.data import load_shards
    from pretrain.plan import mixed_precision
    from pretrain.resolve import UerOptions, check_vocab, resolve
    from pretrain.scoring import HeldOut, score, table

    hf_logging.disable_progress_bar()
    settings = settings_for(args)
    shards = load_shards(str(args.data))
    uer = UerOptions(args.heads, args.encoder_layers, args.decoder_layers)
    models = resolve(args.models, shards.tokenizer, uer, seed=settings.noise_seed)
    for m in models:
        check_vocab(m, len(shards.tokenizer), shards.vocab_sha256, f"the data {args.data}")
    accelerator = Accelerator(mixed_precision=mixed_precision(TrainConfig()))
    held = HeldOut.build(shards, settings)
    accelerator.print(
        f"settings: {settings.source}; {len(held.examples)} examples, {len(held.cloze)} cloze items"
    )
    scores = []
    for m in tqdm(models, desc="models", unit="model", disable=not accelerator.is_main_process):
        scores.append(score(m, held, settings, accelerator))
    if not accelerator.is_main_process:
        return 0
    print(table(scores, held))
    for s in scores:
        for prompt, output in s.prompts.items():
            print(f"{s.name}: {prompt}\n  -> {output}")
    result = {
        "data": str(args.data),
        "split": settings.split,
        "settings": settings.describe(),
        "baseline": {"unigram_accuracy": held.baseline},
        "models": [vars(s) for s in scores],
    }
    if args.json:
        write_text(args.json, json.dumps(result, indent=2, ensure_ascii=False) + "\n")
        print(f"wrote {args.json}")
    if args.card:
        from pretrain.card import add_eval_results

        for m, s in zip(models, scores, strict=True):
            if m.kind in ("run", "export") and m.path is not None:
                add_eval_results(m.path, s, table(scores, held), str(args.data))
                print(f"added the results to {m.path / 'README.md'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    def _main() -> int:
        return run(build_parser().parse_args(argv))

    return run_cli(_main, "bart-eval")


if __name__ == "__main__":
    sys.exit(main())
