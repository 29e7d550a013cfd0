"""``launch.sh``: its usage, and an unknown command is one line and exit status 2; ``test --fast`` is the
unit tree."""

from __future__ import annotations

import subprocess

from helpers import ROOT


def test_launcher_help_and_unknown_command():
    usage = subprocess.run(["bash", str(ROOT / "launch.sh"), "--help"], capture_output=True, text=True)
    assert usage.returncode == 0 and "demo" in usage.stdout and "tensorboard" in usage.stdout
    proc = subprocess.run(["bash", str(ROOT / "launch.sh"), "fly"], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and "unknown command" in proc.stderr


def test_the_fast_test_loop_is_the_unit_tree():
    usage = subprocess.run(["bash", str(ROOT / "launch.sh"), "--help"], capture_output=True, text=True).stdout
    assert "--fast: the unit tree only (pytest tests/unit" in usage
    fast_branch = (ROOT / "launch.sh").read_text().split("if (( fast )); then", 1)[1].split("fi", 1)[0]
    assert '-m pytest tests/unit "${args[@]}"' in fast_branch
