"""``python -m pretrain.config_doc``: print the Markdown reference of every training config key.

``--write FILE`` puts the reference (``pretrain.config_reference``) between the ``<!-- CONFIG:BEGIN -->``
and ``<!-- CONFIG:END -->`` lines of FILE; ``--check FILE`` exits 1 when that block differs from what
``--write`` would put there.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from data_prep.errors import UserError, run_cli
from pretrain.config_reference import BEGIN, render, replace_block


def main(argv: list[str] | None = None) -> int:
    def _main() -> int:
        parser = argparse.ArgumentParser(
            prog="python -m pretrain.config_doc", description=__doc__.splitlines()[0]
        )
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument("--write", type=Path, metavar="FILE", help=f"replace FILE's {BEGIN} block")
        mode.add_argument("--check", type=Path, metavar="FILE", help="exit 1 if FILE's block is out of date")
        args = parser.parse_args(argv)
        path = args.write or args.check
        if path is None:
            print(render(), end="")
            return 0
        if not path.is_file():
            raise UserError(f"{path} not found")
        text = path.read_text(encoding="utf-8")
        updated = replace_block(text, render(), path)
        if args.write:
            path.write_text(updated, encoding="utf-8")
        elif updated != text:
            print(
                f"{path}: the config reference is out of date; "
                f"run `python -m pretrain.config_doc --write {path}`",
                file=sys.stderr,
            )
            return 1
        return 0

    return run_cli(_main, "pretrain.config_doc")
