"""``pretrain.convert`` end to end: training goes on from a UER-py checkpoint, and the module run as users
run it exits 2 without a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from helpers import ROOT, run_training
from transformers import BartForConditionalGeneration, BertTokenizer
from uer_states import HEADS, expected_hf, uer_state


@pytest.mark.slow
def test_training_continues_from_a_uer_checkpoint(shards, tmp_path):
    """The seed's own pre-training goes on in our pipeline: one step at a negligible lr exports the UER
    weights (moved by at most ~lr; the exact load is checked by the test above)."""
    tok = BertTokenizer.from_pretrained(str(shards / "tokenizer"))
    state = uer_state(len(tok))
    torch.save(state, tmp_path / "uer.bin")
    overrides = {"model.init_from": str(tmp_path / "uer.bin"), "train.lr": 1e-9, "train.max_steps": 1}
    overrides |= {"model.encoder_attention_heads": HEADS, "model.decoder_attention_heads": HEADS}
    final = run_training(shards, tmp_path / "run", **overrides)
    exported = BartForConditionalGeneration.from_pretrained(str(final)).state_dict()
    want = expected_hf(state)
    assert want.keys() == exported.keys()
    assert all(torch.allclose(want[k], exported[k], rtol=0, atol=1e-7) for k in want)


@pytest.mark.slow
def test_the_module_cli_exits_2_without_a_traceback(tmp_path):
    (tmp_path / "x.bin").write_text("nope")
    argv = [sys.executable, "-m", "pretrain.convert", "uer-to-hf", "--input", str(tmp_path / "x.bin")]
    proc = subprocess.run([*argv, "--output", str(tmp_path / "o")], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("bart-convert: error:")
