"""``python -m pretrain.config_doc``: the name users type for ``pretrain.cli.config_doc``."""

import sys

from pretrain.cli.config_doc import main

if __name__ == "__main__":
    sys.exit(main())
