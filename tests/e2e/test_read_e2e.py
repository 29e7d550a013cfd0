"""``data_prep prepare --input hf:NAME`` on a machine without network: one line, exit 2 (a real process)."""

from __future__ import annotations

import os
import subprocess
import sys


def test_a_hub_dataset_offline_is_one_line(tmp_path, vocab):
    """What a machine without network says (HF_HUB_OFFLINE makes it fail at once instead of retrying)."""
    argv = [
        "prepare",
        "--input",
        "hf:clue/clue_corpus_small",
        "--tokenizer",
        str(vocab),
        "--output",
        str(tmp_path),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "data_prep", *argv], capture_output=True, text=True, env=env)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "cannot open hf:clue/clue_corpus_small with datasets: Couldn't reach" in proc.stderr
