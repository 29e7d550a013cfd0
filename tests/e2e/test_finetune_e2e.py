"""``bart-finetune`` end to end: a tiny pre-trained run against ``random`` on a synthetic task it can learn
(table, gain, JSON, TensorBoard), the module as users run it (exit codes), and ChnSentiCorp when
../shared has it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import REAL_VOCAB, ROOT, SHARED, VERBS, make_sentences, run_training
from huggingface_hub import ModelCard
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from transformers import BartConfig, BartForConditionalGeneration

from pretrain.cli.finetune import main
from pretrain.downstream import slug

pytestmark = pytest.mark.slow

CHNSENTICORP = SHARED / "downstream" / "chnsenticorp"
LIKES = set(VERBS[:4])  # the task: is the sentence's verb one of these?


def write_task(root: Path) -> dict[str, Path]:
    root.mkdir(parents=True)
    files = {}
    for seed, (split, n) in enumerate({"train": 320, "dev": 60, "test": 60}.items()):
        lines = ["label\ttext_a"]
        for s in make_sentences(n, seed=100 + seed):
            lines.append(f"{'like' if any(v in s for v in LIKES) else 'other'}\t{s}")
        files[split] = root / f"{split}.tsv"
        files[split].write_text("\n".join(lines) + "\n", encoding="utf-8")
    return files


@pytest.fixture(scope="module")
def run(shards, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pretrained") / "run"
    run_training(shards, out, **{"train.max_steps": 30, "train.eval_every": 30, "train.save_every": 30})
    return out


def test_pretrained_against_random(run, tmp_path, capsys):
    files = write_task(tmp_path / "verbs")
    out, extra = tmp_path / "out", tmp_path / "extra" / "r.json"
    argv = [str(run), "random", "--train", str(files["train"]), "--dev", str(files["dev"])]
    argv += [
        "--test",
        str(files["test"]),
        "--seeds",
        "2",
        "--epochs",
        "5",
        "--lr",
        "3e-3",
        "--batch-size",
        "16",
    ]
    argv += ["--max-length", "40", "--output", str(out), "--json", str(extra), "--quiet", "--card"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "task verbs: 2 labels (like, other), 320 train / 60 dev / 60 test; 2 seed(s)" in printed
    assert "gain of pre-training" in printed and "done: 4 fine-tune(s)" in printed
    result = json.loads(extra.read_text())
    assert json.loads((out / "results.json").read_text()) == result
    run_result, base = result["models"]
    assert (run_result["kind"], base["kind"]) == ("run", "random") and run_result["seeds"] == [0, 1]
    assert run_result["path"] == str(run / "hf" / "final")
    assert run_result["summary"]["dev_accuracy"]["mean"] >= 0.9  # the task is learnable: the loop learns
    gain = run_result["summary"]["test_accuracy"]["mean"] - base["summary"]["test_accuracy"]["mean"]
    assert result["gain"][str(run)]["test_accuracy"] == pytest.approx(gain)
    for model in (f"0-{slug(str(run))}", "1-random"):
        for seed in (0, 1):
            events = EventAccumulator(str(out / "tensorboard" / model / f"seed-{seed}")).Reload()
            assert {"train/loss", "dev/accuracy"} <= set(events.Tags()["scalars"])
            assert [e.step for e in events.Scalars("dev/accuracy")] == [1, 2, 3, 4, 5]
    card = ModelCard.load(run / "hf" / "final" / "README.md")  # --card: the table and model-index entries
    assert "(bart-finetune)" in card.text and "gain of pre-training" in card.text
    accuracy = {r.dataset_name: r.metric_value for r in card.data.eval_results if r.metric_type == "accuracy"}
    assert accuracy["verbs"] == round(run_result["summary"]["test_accuracy"]["mean"], 4)


def test_module_exit_codes(tmp_path):
    files = write_task(tmp_path / "t")
    bad = tmp_path / "bad.tsv"
    bad.write_text("label\ttext_a\nlike\ta\tb\n", encoding="utf-8")
    argv = [sys.executable, "-m", "pretrain.finetune", "random", "--train", str(files["train"])]
    done = subprocess.run([*argv, "--dev", str(bad)], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"bart-finetune: error: {bad} line 2: 3 tab-separated columns, the header has 2"
    ]
    help_ = subprocess.run(
        [sys.executable, "-m", "pretrain.finetune", "--help"], capture_output=True, text=True
    )
    assert help_.returncode == 0 and "--text-pair-field" in help_.stdout


@pytest.mark.skipif(
    not (CHNSENTICORP / "train.tsv").is_file() or not REAL_VOCAB.is_file(),
    reason=f"ChnSentiCorp and the BERT-Chinese vocab are not in {SHARED}",
)
def test_chnsenticorp_tiny(tmp_path, capsys):
    """The real files (long reviews, the real vocab): 200 examples a split, one epoch."""
    export = tmp_path / "export"
    config = BartConfig(
        vocab_size=21128, d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=128,
        pad_token_id=0, bos_token_id=101, eos_token_id=102, decoder_start_token_id=101,
    )  # fmt: skip
    torch.manual_seed(0)
    BartForConditionalGeneration(config).save_pretrained(str(export))
    shutil.copyfile(REAL_VOCAB, export / "vocab.txt")
    files = [f"--{s}={CHNSENTICORP / f'{s}.tsv'}" for s in ("train", "dev", "test")]
    out = tmp_path / "r.json"
    argv = [
        str(export),
        *files,
        "--limit",
        "200",
        "--epochs",
        "1",
        "--seeds",
        "1",
        "--json",
        str(out),
        "--quiet",
    ]
    assert main(argv) == 0
    result = json.loads(out.read_text())
    assert result["task"] == {
        "name": "chnsenticorp",
        "labels": ["0", "1"],
        "pair": False,
        "train": 200,
        "dev": 200,
        "test": 200,
    }
    assert 0 <= result["models"][0]["summary"]["test_accuracy"]["mean"] <= 1
    assert "chnsenticorp" in capsys.readouterr().out
