"""``python -m pretrain`` / ``bart-pretrain``: pre-train BART on prepared shards.

usage: python -m pretrain [--config configs/NAME.yaml] [--SECTION.KEY VALUE ...]
       accelerate launch [ACCELERATE OPTIONS] -m pretrain --config configs/NAME.yaml [--SECTION.KEY VALUE ...]
"""

from __future__ import annotations

import os
import sys

from data_prep.errors import UserError, run_cli
from pretrain.config import load_config, parse_overrides


def split_config_arg(argv: list[str]) -> tuple[str | None, list[str]]:
    """Take ``--config PATH`` (or ``--config=PATH``) out of ``argv``."""
    rest, path = [], None
    i = 0
    while i < len(argv):
        if argv[i] == "--config":
            if i + 1 >= len(argv):
                raise UserError("--config needs a path")
            path, i = argv[i + 1], i + 2
            continue
        if argv[i].startswith("--config="):
            path = argv[i].partition("=")[2]
        else:
            rest.append(argv[i])
        i += 1
    return path, rest


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv

    def _main() -> int:
        if any(a in ("-h", "--help") for a in argv):
            from pretrain.config_reference import help_lines

            keys = "keys (--KEY VALUE: type = default, then what it does; noise: the default of each preset):"
            print(__doc__.strip() + f"\n\n{keys}\n" + "\n".join(help_lines()))
            return 0
        path, rest = split_config_arg(argv)
        cfg = load_config(path, parse_overrides(rest))
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        from pretrain.train import train

        train(cfg)
        return 0

    return run_cli(_main, "bart-pretrain")


if __name__ == "__main__":
    sys.exit(main())
