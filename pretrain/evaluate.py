"""``python -m pretrain.evaluate``: the name users type for ``bart-eval`` (``pretrain.cli.evaluate``)."""

import sys

from pretrain.cli.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
