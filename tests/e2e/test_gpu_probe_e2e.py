"""``bench/gpu_probe.py --tiny`` end to end on the CPU: every variant of a tiny model, then the CLI, in its
table."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import ROOT, bench_script

VARIANTS = bench_script("gpu_probe").VARIANTS


@pytest.mark.slow  # ~30 s: 11 variants of a tiny model, then the CLI
def test_gpu_probe_tiny_prints_the_table(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu_probe.py"), "--tiny", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    table = done.stdout[done.stdout.index("| variant |") :].strip().splitlines()
    assert table[0].split("|")[1:-1] == [
        " variant ", " ms/step ", " target tokens/s ", " MFU (honest) ", " peak GB ", " syncs/step ",
        " attention kernel ",
    ]  # fmt: skip
    rows = {line.split("|")[1].strip(): line.split("|")[2:-1] for line in table[2:]}
    assert len(rows) == len(VARIANTS) + 2 and all(any(k.startswith(n) for k in rows) for n, _ in VARIANTS)

    def row(prefix: str) -> list[str]:
        return next(cells for name, cells in rows.items() if name.startswith(prefix))

    assert float(row("shipped 8x8 eager")[1].replace(",", "")) > 0  # target tokens/s
    assert rows["fast eager, attention_dropout 0"][5].strip() == "flash"  # CPU flash: no dropout
    assert row("fast eager, attention_dropout 0.125")[5].strip() == "math"
    assert float(row("CLI: python -m pretrain")[1].replace(",", "")) > 0
