"""The ``bart-data`` subcommands: one module each, exposing ``configure(parser)`` and ``run(args) -> int``."""

import argparse
from collections.abc import Callable

from data_prep.errors import UserError

COMMANDS = {
    "vocab": ("data_prep.cli.vocab", "build a BERT-style WordPiece vocab from a corpus"),
    "prepare": ("data_prep.cli.prepare", "tokenize and pack a corpus into training shards"),
    "noise": ("data_prep.cli.noise", "print noised examples from prepared shards"),
    "inspect": ("data_prep.cli.inspect_shards", "summarize prepared shards (manifest, lengths, fill ratio)"),
    "merge": ("data_prep.cli.merge", "join the parts made by `prepare --part I/N`"),
}


class Parser(argparse.ArgumentParser):
    """argparse that raises UserError (exit 2, one line) instead of printing usage and exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(message)


def add_input_argument(parser: argparse.ArgumentParser) -> None:
    """``--input PATH [PATH ...]``, as ``vocab`` and ``prepare`` take it."""
    parser.add_argument(
        "--input",
        nargs="+",
        required=True,
        metavar="PATH",
        help="files, directories (recursive) and globs; .gz/.bz2/.xz are read transparently",
    )


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse ``type`` for an integer option that must be at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, not {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, not {value}")
        return value

    return parse
