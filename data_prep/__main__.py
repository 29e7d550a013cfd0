"""``python -m data_prep`` / ``bart-data``: the data-prep command line.

Each subcommand lives in its own module exposing ``configure(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from data_prep.errors import UserError, run_cli

COMMANDS = {
    "vocab": ("data_prep.vocab", "build a BERT-style WordPiece vocab from a corpus"),
    "prepare": ("data_prep.prepare", "tokenize and pack a corpus into training shards"),
    "noise": ("data_prep.preview", "print noised examples from prepared shards"),
    "inspect": ("data_prep.inspect", "summarize prepared shards (manifest, lengths, fill ratio)"),
    "merge": ("data_prep.merge", "join the parts made by `prepare --part I/N`"),
}


class _Parser(argparse.ArgumentParser):
    """argparse that raises UserError (exit 2, one line) instead of printing usage and exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="bart-data", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, (module, help_text) in COMMANDS.items():
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        importlib.import_module(module).configure(cmd)
        cmd.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    def _main() -> int:
        args = build_parser().parse_args(argv)
        return importlib.import_module(args._module).run(args)

    return run_cli(_main, "bart-data")


if __name__ == "__main__":
    sys.exit(main())
