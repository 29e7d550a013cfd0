"""Shards for the benchmarks: `python -m data_prep prepare` on a corpus, as a user runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def prepare(corpus: Path, tokenizer: Path, out: Path, *options: str) -> Path:
    """Run `data_prep prepare` (quiet) into ``out``; return ``out``."""
    paths = ["--input", str(corpus), "--tokenizer", str(tokenizer), "--output", str(out)]
    subprocess.run(
        [sys.executable, "-m", "data_prep", "prepare", *paths, "--quiet", *options],
        check=True,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    return out
