"""``python -m pretrain`` / ``bart-pretrain``: the name users type for ``pretrain.cli.train``."""

import sys

from pretrain.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
