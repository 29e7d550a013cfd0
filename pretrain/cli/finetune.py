"""``python -m pretrain.finetune`` (``bart-finetune``): the downstream probe -- fine-tune each MODEL on a
classification task and print dev/test accuracy and macro-F1 (mean ± std over seeds), with the gain of
pre-training over a freshly initialised model of the same shape when ``random`` is among the models.

usage: bart-finetune MODEL [MODEL ...] --train FILE --dev FILE [--test FILE] [--seeds N] [--epochs E]
                     [--lr LR] [--batch-size B] [--max-length L] [--output DIR] [--json FILE] [--card]
                     [--text-field F --text-pair-field F2 --label-field L] [--vocab PATH]
                     [--heads H --encoder-layers N --decoder-layers M]

MODEL: a training run (its hf/final, else its newest hf/step-N), a Hugging Face BART directory, a UER-py
model.bin (with --vocab), or ``random``. Files: the UER-py/CLUE TSV layout (header label<TAB>text_a
[<TAB>text_b]), .csv or .jsonl with text/label fields.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from data_prep.cli import Parser, int_at_least
from data_prep.errors import UserError, run_cli
from data_prep.tokenizer import load_tokenizer
from pretrain.downstream import Fields, Recipe, format_table, load_task, probe, report
from pretrain.resolve import RANDOM, UerOptions, resolve


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, not {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


def ratio(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, not {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), not {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    defaults = Recipe()
    parser = Parser(
        prog="bart-finetune",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "models", nargs="+", metavar="MODEL", help="run dir, HF BART dir, UER model.bin, random"
    )
    parser.add_argument("--train", type=Path, required=True, help="training examples (.tsv, .csv, .jsonl)")
    parser.add_argument("--dev", type=Path, required=True, help="dev examples: picks the best epoch")
    parser.add_argument("--test", type=Path, help="test examples: scored with the best dev epoch's weights")
    parser.add_argument("--seeds", type=int_at_least(1), default=3, help="fine-tunes per model: mean ± std")
    parser.add_argument("--seed", type=int_at_least(0), default=0, help="the first seed (then seed+1, ...)")
    parser.add_argument("--epochs", type=int_at_least(1), default=defaults.epochs)
    parser.add_argument("--lr", type=positive_float, default=defaults.lr, help="peak AdamW learning rate")
    parser.add_argument("--batch-size", type=int_at_least(1), default=defaults.batch_size)
    parser.add_argument(
        "--max-length",
        type=int_at_least(4),
        default=defaults.max_length,
        help="ids per example, [CLS]/[SEP] included (at most the model's max_position_embeddings)",
    )
    parser.add_argument(
        "--warmup-ratio", type=ratio, default=defaults.warmup_ratio, help="linear warmup share"
    )
    parser.add_argument("--limit", type=int_at_least(1), help="use only the first N examples of each file")
    parser.add_argument(
        "--task-name", help="the task's name in tables and JSON (default: the train file's folder)"
    )
    parser.add_argument("--output", type=Path, help="new or empty directory: results.json and tensorboard/")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    parser.add_argument("--card", action="store_true", help="add the results to each export's model card")
    parser.add_argument("--text-field", help="column of the text (default: text_a in TSV, text in CSV/JSONL)")
    parser.add_argument("--text-pair-field", help="column of the second text (default: text_b in TSV)")
    parser.add_argument("--label-field", default="label", help="column of the label")
    parser.add_argument(
        "--vocab", help="vocab.txt (or tokenizer dir) for models that have none: UER-py files"
    )
    parser.add_argument("--heads", type=int_at_least(1), default=12, help="UER-py files: attention heads")
    parser.add_argument(
        "--encoder-layers", type=int_at_least(1), help="UER-py files (default: from the keys)"
    )
    parser.add_argument(
        "--decoder-layers", type=int_at_least(1), help="UER-py files (default: from the keys)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def check_outputs(output: Path | None, json_file: Path | None) -> None:
    """Refuse bad output paths before the fine-tunes, not after them."""
    if output and output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise UserError(f"--output {output} exists and is not an empty directory: name a new one")
    if json_file and json_file.is_dir():
        raise UserError(f"--json {json_file} is a directory: name a file")


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    check_outputs(args.output, args.json)
    fields = Fields(args.text_field, args.text_pair_field, args.label_field)
    task = load_task(args.train, args.dev, args.test, fields, args.limit, args.task_name)
    with tempfile.TemporaryDirectory() as scratch:
        vocab = load_tokenizer(args.vocab, Path(scratch) / "vocab").hf if args.vocab else None
        uer = UerOptions(args.heads, args.encoder_layers, args.decoder_layers)
        models = resolve(args.models, vocab, uer, args.seed)
    recipe = Recipe(args.epochs, args.lr, args.batch_size, args.max_length, args.warmup_ratio)
    seeds = list(range(args.seed, args.seed + args.seeds))
    if args.output:
        args.output.mkdir(parents=True, exist_ok=True)
    results = probe(models, task, recipe, seeds, args.output, vocab, progress=not args.quiet)
    print(format_table(task, results, recipe))
    text = json.dumps(report(task, recipe, results), ensure_ascii=False, indent=2) + "\n"
    written = [p for p in (args.json, args.output / "results.json" if args.output else None) if p]
    for path in written:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
    if args.card:
        from pretrain.card import add_finetune_results

        for m, r in zip(models, results, strict=True):
            if m.kind in ("run", "export") and m.path is not None:
                beside = [r, *(x for x in results if x.kind == RANDOM)]  # this model and the baseline
                add_finetune_results(m.path, r.model_index(), format_table(task, beside, recipe), task.name)
                print(f"added the results to {m.path / 'README.md'}")
    runs = len(models) * len(seeds)
    where = f"; results in {', '.join(map(str, written))}" if written else ""
    logs = f"; TensorBoard logs in {args.output / 'tensorboard'}" if args.output else ""
    print(f"done: {runs} fine-tune(s) in {time.perf_counter() - started:.0f}s{where}{logs}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    return run_cli(lambda: run(parser.parse_args(argv)), "bart-finetune")


if __name__ == "__main__":
    sys.exit(main())
