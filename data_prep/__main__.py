"""``python -m data_prep`` / ``bart-data``: the data-prep command line.

Each subcommand lives in its own module of ``data_prep.cli`` (see ``COMMANDS`` there).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from data_prep.cli import COMMANDS, Parser
from data_prep.errors import run_cli


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="bart-data", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for name, (module, help_text) in COMMANDS.items():
        cmd = sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
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
