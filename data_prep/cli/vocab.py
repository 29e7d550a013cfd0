"""``vocab``: train a BERT-Chinese-style WordPiece vocab into a directory ``BertTokenizer`` loads.

The output (vocab.txt, tokenizer_config.json, special_tokens_map.json, tokenizer.json) is built in a
temporary directory, loaded back through transformers as a check, and only then moved into place.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from data_prep.atomic import atomic_dir
from data_prep.cli import add_input_argument
from data_prep.errors import UserError
from data_prep.formats import FORMATS
from data_prep.inputs import expand_inputs
from data_prep.lock import DirLock, contents
from data_prep.manifest import repairs_line
from data_prep.tokenizer import SPECIAL_TOKENS, load_tokenizer
from data_prep.vocab import TrainedVocab, train_vocab, write_config


def configure(parser: argparse.ArgumentParser) -> None:
    add_input_argument(parser)
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


def run(args: argparse.Namespace) -> int:
    if args.vocab_size <= len(SPECIAL_TOKENS):
        raise UserError(f"--vocab-size must be more than {len(SPECIAL_TOKENS)}")
    files = expand_inputs(args.input)
    out: Path = args.output
    with DirLock(out, "output"):  # the vocab is built aside and moved onto the locked directory
        if contents(out):
            raise UserError(f"output {out} exists and is not an empty directory")
        return _vocab(args, files, out)


def _vocab(args: argparse.Namespace, files: list[Path], out: Path) -> int:
    vocab = train_vocab(
        files,
        args.format,
        args.text_field,
        args.vocab_size,
        args.min_frequency,
        args.limit_alphabet,
        args.quiet,
    )
    if vocab.stray:
        print(
            f"warning: {len(vocab.stray)} unforeseen pieces such as {vocab.stray[0]}: "
            "ids may vary run to run",
            file=sys.stderr,
        )
    tokens = vocab.tokens
    try:
        with atomic_dir(out) as tmp:
            (tmp / "vocab.txt").write_text("".join(f"{token}\n" for token in tokens), encoding="utf-8")
            write_config(tmp)
            # Round trip: what transformers loads is what we trained (not a 5-token fallback vocab).
            loaded = load_tokenizer(str(tmp), tmp / "unused")
            if len(loaded.hf) != len(tokens):
                raise UserError(f"the written vocab loads with {len(loaded.hf)} tokens, not {len(tokens)}")
            loaded.save(tmp)
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror or exc}") from None
    longer = len(tokens) - len(SPECIAL_TOKENS) - len(vocab.chars) - len(vocab.continuing)
    print(
        f"vocab: {len(tokens):,} tokens ({len(vocab.chars):,} characters, {len(vocab.continuing):,} "
        f"##characters, {longer:,} longer pieces) from {len(files):,} files -> {out}"
    )
    if len(tokens) < args.vocab_size:
        print(shortfall(vocab, args.vocab_size, args.min_frequency))
    if any(vars(vocab.repairs).values()):
        print(repairs_line(vars(vocab.repairs)))
    return 0


def shortfall(vocab: TrainedVocab, asked: int, min_frequency: int) -> str:
    """Why the vocab is smaller than asked: the WordPiece trainer stops when no pair of pieces is seen
    ``min_frequency`` times any more, and CJK characters never merge (BERT makes each one a word)."""
    text = (
        f"only {len(vocab.tokens):,} of the {asked:,} tokens asked for: the corpus has no more pairs of "
        f"pieces seen at least {min_frequency} times (--min-frequency) to merge, and Chinese characters "
        "never merge (each is a word of its own), so longer pieces come only from other text"
    )
    left_out = vocab.corpus_chars - len(vocab.chars)
    if left_out:
        text += (
            f"; {left_out:,} of the corpus's {vocab.corpus_chars:,} distinct characters were left out "
            f"(--limit-alphabet, default half of --vocab-size): --limit-alphabet {vocab.corpus_chars} "
            "keeps them"
        )
    return text + "; more text or a lower --min-frequency gives more"
