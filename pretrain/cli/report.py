"""``python -m pretrain.report RUN_DIR [RUN_DIR ...] [--plot FILE.png]``: runs' summaries from their
TensorBoard event files (``pretrain.runlog``), for users without a browser; ``--plot`` draws the curves
into one image (needs matplotlib: ``pip install -e '.[plot]'``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from data_prep.errors import UserError, run_cli
from pretrain.runlog import compare, plot, summarize


def main(argv: list[str] | None = None) -> int:
    def _main() -> int:
        parser = argparse.ArgumentParser(
            prog="python -m pretrain.report", description=__doc__.splitlines()[0]
        )
        parser.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR", help="train.output_dir(s)")
        parser.add_argument(
            "--plot",
            type=Path,
            metavar="FILE",
            help="also draw loss, accuracy, LR and tokens/s into FILE (.png)",
        )
        args = parser.parse_args(argv)
        for run_dir in args.run_dirs:
            if not run_dir.is_dir():
                raise UserError(f"{run_dir} is not a directory")
        figure = plot(args.run_dirs) if args.plot else None  # fails first if matplotlib is missing
        if len(args.run_dirs) > 1:
            print(compare(args.run_dirs) + "\n")
        print("\n\n".join(summarize(d) for d in args.run_dirs))
        if figure is not None:
            try:
                figure.savefig(args.plot)
            except (OSError, ValueError) as exc:
                raise UserError(f"cannot write the plot {args.plot}: {exc}") from None
            print(f"\nplot: {args.plot}")
        return 0

    return run_cli(_main, "pretrain.report")


if __name__ == "__main__":
    sys.exit(main())
