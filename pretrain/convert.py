"""``python -m pretrain.convert``: the name users type for ``pretrain.cli.convert``."""

import sys

from pretrain.cli.convert import main

if __name__ == "__main__":
    sys.exit(main())
