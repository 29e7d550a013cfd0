"""``python -m pretrain.fill_in``: the name users type for ``pretrain.cli.fill_in``."""

import sys

from pretrain.cli.fill_in import main

if __name__ == "__main__":
    sys.exit(main())
