"""``data_prep.errors``: ``first_line`` is an exception's first message line (its type's name when it has
none); ``run_cli`` returns main's status (0 for None), turns a ``UserError`` into one line on stderr and
status 2 and Ctrl-C into 130, lets any other exception through, and ends quietly with the SIGPIPE status
when the reader of its output goes away (a real closed pipe, in a child process)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest
from helpers import ROOT

from data_prep.errors import UserError, first_line, run_cli


@pytest.mark.parametrize(
    ("exc", "line"),
    [
        (ValueError("bad value"), "bad value"),
        (ValueError("first\nsecond\nthird"), "first"),
        (OSError("\n  padded\n next  "), "padded"),
        (KeyError(), "KeyError"),
        (RuntimeError("   "), "RuntimeError"),
        (UserError("no such file: x"), "no such file: x"),
    ],
)
def test_first_line(exc, line):
    assert first_line(exc) == line


def run(main, capsys) -> tuple[int, str, str]:
    code = run_cli(main, "prog")
    out, err = capsys.readouterr()
    return code, out, err


def test_run_cli_returns_mains_status(capsys):
    assert run(lambda: None, capsys) == (0, "", "")
    assert run(lambda: 0, capsys) == (0, "", "")
    assert run(lambda: 3, capsys) == (3, "", "")

    def talks() -> int:
        print("hello", end="")  # flushed before run_cli returns
        return 1

    assert run(talks, capsys) == (1, "hello", "")


def test_a_user_error_is_one_line_and_status_2(capsys):
    def main() -> int:
        print("partial output")
        raise UserError("--steps must be a positive integer, not '0'")

    code, out, err = run(main, capsys)
    assert code == 2 and out == "partial output\n"
    assert err == "prog: error: --steps must be a positive integer, not '0'\n"


def test_ctrl_c_is_status_130_without_a_traceback(capsys):
    def main() -> int:
        raise KeyboardInterrupt

    assert run(main, capsys) == (130, "", "prog: interrupted\n")


@pytest.mark.parametrize("exc", [ValueError("a bug"), SystemExit(4), RuntimeError("x")])
def test_other_exceptions_go_through(capsys, exc):
    def main() -> int:
        raise exc

    with pytest.raises(type(exc)):
        run_cli(main, "prog")
    assert capsys.readouterr().err == ""


CHILD = textwrap.dedent(
    """
    import sys
    from data_prep.errors import run_cli

    def main():
        if sys.argv[1] == "flood":  # the pipe breaks while writing
            for i in range(200_000):
                print("line", i)
        else:  # a few buffered bytes: the pipe breaks at the flush on the way out
            print("x")
        return 0

    sys.exit(run_cli(main, "prog"))
    """
)


@pytest.mark.parametrize("buffered", [True, False])
@pytest.mark.parametrize("mode", ["flood", "little"])
def test_a_reader_that_went_away_ends_the_command_quietly(mode, buffered):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # a pipe is block-buffered...
    if not buffered:
        env["PYTHONUNBUFFERED"] = "1"  # ... unless the user says otherwise
    read_end, write_end = os.pipe()
    os.close(read_end)  # `... | head` after head exited
    try:
        child = subprocess.run(
            [sys.executable, "-c", CHILD, mode],
            stdout=write_end,
            stderr=subprocess.PIPE,
            cwd=ROOT,
            env=env,
            timeout=60,
            text=True,
        )
    finally:
        os.close(write_end)
    assert child.stderr == ""  # no traceback, and no second error at exit
    assert child.returncode == 128 + signal.SIGPIPE  # what a shell shows for a process killed by SIGPIPE
