"""``python -m pretrain.demo``: the name users type for ``pretrain.cli.demo``."""

import sys

from pretrain.cli.demo import main

if __name__ == "__main__":
    sys.exit(main())
