"""The ``bart-data`` subcommands: one module each, exposing ``configure(parser)`` and ``run(args) -> int``."""

import argparse

COMMANDS = {
    "vocab": ("data_prep.cli.vocab", "build a BERT-style WordPiece vocab from a corpus"),
    "prepare": ("data_prep.cli.prepare", "tokenize and pack a corpus into training shards"),
    "noise": ("data_prep.cli.noise", "print noised examples from prepared shards"),
    "inspect": ("data_prep.cli.inspect_shards", "summarize prepared shards (manifest, lengths, fill ratio)"),
    "merge": ("data_prep.cli.merge", "join the parts made by `prepare --part I/N`"),
}


def add_input_argument(parser: argparse.ArgumentParser) -> None:
    """``--input PATH [PATH ...]``, as ``vocab`` and ``prepare`` take it."""
    parser.add_argument(
        "--input",
        nargs="+",
        required=True,
        metavar="PATH",
        help="files, directories (recursive) and globs; .gz/.bz2/.xz are read transparently",
    )
