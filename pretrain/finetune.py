"""``python -m pretrain.finetune``: the downstream probe (``pretrain.cli.finetune``; library in
``pretrain.downstream``)."""

import sys

from pretrain.cli.finetune import main

if __name__ == "__main__":
    sys.exit(main())
