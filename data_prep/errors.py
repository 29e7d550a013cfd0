"""The one exception type for user mistakes, and the CLI wrapper that turns it into exit status 2."""

from __future__ import annotations

import sys
from collections.abc import Callable


class UserError(Exception):
    """A mistake the user can fix (bad path, bad option, ...): printed as one line, exit status 2."""


def run_cli(main: Callable[[], int | None], prog: str) -> int:
    """Run ``main``; a ``UserError`` (or Ctrl-C) becomes a one-line message on stderr, never a traceback."""
    try:
        return main() or 0
    except UserError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
