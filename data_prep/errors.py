"""The one exception type for user mistakes, and the CLI wrapper that turns it into exit status 2."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable


class UserError(Exception):
    """A mistake the user can fix (bad path, bad option, ...): printed as one line, exit status 2."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none), for one-line errors."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def run_cli(main: Callable[[], int | None], prog: str) -> int:
    """Run ``main``; a ``UserError`` (or Ctrl-C) becomes a one-line message on stderr, never a traceback.

    Output piped into a reader that stops early (``... | head``) ends the command quietly, with the
    status a shell gives a process killed by SIGPIPE.
    """
    try:
        try:
            return main() or 0
        finally:
            sys.stdout.flush()  # a reader that went away shows here, in the handler below
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 128 + signal.SIGPIPE
    except UserError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
