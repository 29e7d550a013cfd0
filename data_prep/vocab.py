"""``vocab``: train a BERT-style WordPiece vocab on a corpus with the ``tokenizers`` library.

Same normalization as BERT-Chinese (clean text, a space around every CJK character, lowercase, accents
stripped) and the special tokens ``[PAD] [UNK] [CLS] [SEP] [MASK]`` at ids 0-4. The output directory
loads with ``BertTokenizer.from_pretrained`` under transformers 4.x (vocab.txt) and 5.x.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

from tokenizers import BertWordPieceTokenizer
from tqdm import tqdm

from data_prep.errors import UserError
from data_prep.manifest import Repairs
from data_prep.read import (
    FORMATS,
    Unit,
    UnreadableInput,
    expand_inputs,
    file_status,
    jsonl_to_clue,
    read_blocks,
)
from data_prep.tokenize import SPECIAL_TOKENS, load_tokenizer


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--input",
        nargs="+",
        required=True,
        metavar="PATH",
        help="files, directories (recursive) and globs; .gz/.bz2/.xz are read transparently",
    )
    parser.add_argument("--output", required=True, type=Path, metavar="DIR", help="directory to write")
    parser.add_argument(
        "--vocab-size", type=int, default=21128, help="target vocab size (BERT-Chinese: 21128)"
    )
    parser.add_argument("--min-frequency", type=int, default=2, help="ignore pieces seen fewer times")
    parser.add_argument(
        "--limit-alphabet",
        type=int,
        default=None,
        help="keep at most this many distinct characters (default: half the vocab size)",
    )
    parser.add_argument("--format", choices=FORMATS, default="clue", help="input layout (as for prepare)")
    parser.add_argument("--text-field", default="text", help="the JSON field holding the text (jsonl)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def corpus_lines(
    files: list[Path], fmt: str, text_field: str, repairs: Repairs, quiet: bool
) -> Iterator[str]:
    """The non-blank lines of every readable text file (binary/unreadable files skipped with a warning)."""
    with tqdm(
        total=sum(f.stat().st_size for f in files),
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc="vocab",
        disable=quiet,
        file=sys.stderr,
    ) as bar:
        for index, path in enumerate(files):
            status = file_status(path)
            if status in ("binary", "unreadable"):
                bar.write(f"warning: skipped {status} file {path}", file=sys.stderr)
            if status == "ok":
                unit = Unit(index, 0, str(path), 0, None, path.stat().st_size)
                try:
                    for block, _ in read_blocks(unit, repairs, lambda text, limit: limit):
                        if fmt == "jsonl":
                            block = jsonl_to_clue(block, text_field, repairs)
                        yield from (line for line in block.split("\n") if line.strip())
                except UnreadableInput:
                    bar.write(
                        f"warning: {path} is unreadable after some point; its start was used", file=sys.stderr
                    )
            bar.update(path.stat().st_size)


def run(args: argparse.Namespace) -> int:
    if args.vocab_size <= len(SPECIAL_TOKENS):
        raise UserError(f"--vocab-size must be more than {len(SPECIAL_TOKENS)}")
    files = expand_inputs(args.input)
    out: Path = args.output
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"output {out} exists and is not an empty directory")
    limit_alphabet = args.limit_alphabet or args.vocab_size // 2
    tokenizer = BertWordPieceTokenizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True
    )
    repairs = Repairs()
    tokenizer.train_from_iterator(
        corpus_lines(files, args.format, args.text_field, repairs, args.quiet),
        vocab_size=args.vocab_size,
        min_frequency=args.min_frequency,
        limit_alphabet=limit_alphabet,
        special_tokens=list(SPECIAL_TOKENS),
        show_progress=False,
    )
    if tokenizer.get_vocab_size() <= len(SPECIAL_TOKENS):
        raise UserError(f"no text found in {' '.join(args.input)}")
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        tokenizer.save_model(str(tmp))  # vocab.txt, in id order
        _write_config(tmp)
        # Round trip: what transformers loads is what we trained (not a 5-token fallback vocab).
        loaded = load_tokenizer(str(tmp), tmp / "unused")
        if len(loaded.hf) != tokenizer.get_vocab_size():
            raise UserError(
                f"the written vocab loads with {len(loaded.hf)} tokens, not {tokenizer.get_vocab_size()}"
            )
        loaded.save(tmp)
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror or exc}") from None
    print(f"vocab: {tokenizer.get_vocab_size():,} tokens from {len(files):,} files -> {out}")
    changed = {k: v for k, v in vars(repairs).items() if v}
    if changed:
        print("repairs: " + ", ".join(f"{k}={v:,}" for k, v in changed.items()))
    return 0


def _write_config(directory: Path) -> None:
    """tokenizer_config.json and special_tokens_map.json for BertTokenizer (4.x and 5.x)."""
    names = dict(
        zip(("pad_token", "unk_token", "cls_token", "sep_token", "mask_token"), SPECIAL_TOKENS, strict=True)
    )
    config = {
        "tokenizer_class": "BertTokenizer",
        "do_lower_case": True,
        "tokenize_chinese_chars": True,
        "strip_accents": None,
        **names,
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    (directory / "special_tokens_map.json").write_text(json.dumps(names, indent=2) + "\n", encoding="utf-8")
