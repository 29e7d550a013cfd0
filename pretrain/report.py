"""``python -m pretrain.report``: the name users type for ``pretrain.cli.report``."""

import sys

from pretrain.cli.report import main

if __name__ == "__main__":
    sys.exit(main())
