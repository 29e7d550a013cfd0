"""``python -m data_prep noise DIR``: decoded preview, ``--json`` lines equal to the trainer's corruption,
``--set`` overrides, and user errors (exit status 2, one line on stderr, no traceback)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import cli, clue_corpus, read_split, small_vocab_dir
from transformers import BertTokenizer

from data_prep.noise import Denoiser, NoiseConfig
from data_prep.tokenizer import readable
from pretrain.data import NoisedDataset, load_shards

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("noise_cli")
    vocab = small_vocab_dir(root / "vocab")
    clue_corpus(root / "in" / "a.txt", 80, seed=4)
    out = root / "out"
    argv = ["--input", str(root / "in"), "--tokenizer", str(vocab), "--output", str(out), "--quiet"]
    assert cli("prepare", *argv, "--seq-length", "96", "--valid-ratio", "0") == 0
    return out


@pytest.fixture(scope="module")
def rows(prepared) -> list[dict[str, list[int]]]:
    out = read_split(prepared / "train")
    assert len(out) >= 20
    return out


@pytest.fixture(scope="module")
def tok(prepared):
    return BertTokenizer.from_pretrained(str(prepared / "tokenizer"))


def run_json(capsys, prepared: Path, *argv: str) -> list[dict]:
    capsys.readouterr()
    assert cli("noise", str(prepared), "--json", *argv) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    return [json.loads(line) for line in captured.out.splitlines()]


def test_default_output_is_decoded_source_and_target(capsys, prepared, rows, tok):
    assert cli("noise", str(prepared), "--limit", "3") == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    headers = [line for line in lines if line.startswith("── example")]
    assert len(headers) == 3 and headers[0].startswith("── example 0 (epoch 0, ")
    targets = [line.removeprefix("target : ") for line in lines if line.startswith("target : ")]
    sources = [line.removeprefix("source : ") for line in lines if line.startswith("source : ")]
    assert targets == [readable(tok, r["input_ids"]) for r in rows[:3]]
    assert not any(re.search("[\u4e00-\u9fff] | [\u4e00-\u9fff]", t) for t in targets)  # no decode() spaces
    assert len(sources) == 3 and all("[MASK]" in s for s in sources) and sources != targets
    assert all(s.startswith("[CLS]") and s.endswith("[SEP]") for s in sources)
    assert captured.err.splitlines()[0] == f"3 examples from {prepared / 'train'}, preset uer"


def test_the_preview_marks_what_changed(capsys, prepared, rows, tok):
    args = [
        "--limit",
        "6",
        "--set",
        "permute_sentences=0",
        "--set",
        "random_ratio=0.3",
        "--set",
        "keep_ratio=0.3",
    ]
    assert cli("noise", str(prepared), *args) == 0
    lines = capsys.readouterr().out.splitlines()
    changes = [line.removeprefix("changes: ") for line in lines if line.startswith("changes: ")]
    sources = [line.removeprefix("source : ") for line in lines if line.startswith("source : ")]
    assert "0% of the tokens moved" in lines[0]
    for change, source, row in zip(changes, sources, rows, strict=False):
        assert re.sub("[⟦⟧⟪⟫⟨⟩]", "", change) == readable(tok, row["input_ids"])  # the target, marked
        masked = re.findall("⟦[^⟧]*⟧", change)
        assert masked and len(masked) >= source.count("[MASK]")  # adjacent masked pieces share one [MASK]
    assert any("⟪" in c for c in changes) and any("⟨" in c for c in changes)


@pytest.mark.parametrize("preset", ["uer", "bart"])
def test_json_lines_are_the_trainers_corruption(capsys, prepared, rows, tok, preset):
    records = run_json(capsys, prepared, "--preset", preset, "--seed", "5", "--limit", "8")
    assert [r["index"] for r in records] == list(range(8)) and {r["epoch"] for r in records} == {0}
    denoiser = Denoiser.from_tokenizer(NoiseConfig.from_preset(preset), tok, seed=5)
    shards = load_shards(str(prepared))
    trainer = NoisedDataset(shards.train, Denoiser.from_tokenizer(NoiseConfig.from_preset(preset), tok, 5))
    for i, (record, row) in enumerate(zip(records, rows, strict=False)):
        assert all(type(v) is int for v in record["input_ids"] + record["labels"])
        assert record["labels"] == row["input_ids"]  # the target is the stored row
        src, tgt = denoiser(
            np.array(row["input_ids"]), row["sentence_ends"], row["doc_ends"], epoch=0, index=i
        )
        assert record["input_ids"] == src.tolist() and record["labels"] == tgt.tolist()
        assert record["input_ids"] == trainer[(0, i)]["input_ids"].tolist()
        assert record["input_ids"] != record["labels"] and len(record["input_ids"]) <= len(row["input_ids"])
    # another epoch and a start offset: the same pure function of (seed, epoch, index)
    later = run_json(capsys, prepared, "--preset", preset, "--seed", "5", "--epoch", "2", "--start", "3")
    assert [r["index"] for r in later] == [3, 4, 5, 6, 7]  # --limit defaults to 5
    for record in later:
        assert record["input_ids"] == trainer[(2, record["index"])]["input_ids"].tolist()
        assert record["input_ids"] != records[record["index"]]["input_ids"]


def test_set_overrides_the_noise(capsys, prepared, rows, tok):
    def masks(*argv: str) -> int:
        records = run_json(capsys, prepared, "--limit", "20", "--set", "collapse_masks=false", *argv)
        return sum(r["input_ids"].count(tok.mask_token_id) for r in records)

    base, more = masks(), masks("--set", "mask_ratio=0.3")
    assert 1.6 < more / base < 2.4  # 30% instead of 15% of the tokens, 80% of them [MASK]
    records = run_json(capsys, prepared, "--limit", "4", "--set", "mask_ratio=0.3", "--set", "rotate=1")
    cfg = NoiseConfig.from_preset("uer", mask_ratio=0.3, rotate=1.0)
    denoiser = Denoiser.from_tokenizer(cfg, tok, seed=7)  # 7: the default seed
    for i, record in enumerate(records):
        row = rows[i]
        src, _ = denoiser(np.array(row["input_ids"]), row["sentence_ends"], row["doc_ends"], epoch=0, index=i)
        assert record["input_ids"] == src.tolist()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["{missing}"], "no_such_dir"),
        (["{dir}", "--set", "nonsense=1"], "unknown noise parameter 'nonsense'"),
        (["{dir}", "--set", "mask_ratoi=0.3"], "(did you mean mask_ratio"),
        (["{dir}", "--set", "mask_ratio=abc"], "noise parameter 'mask_ratio' expects float, got 'abc'"),
        (["{dir}", "--set", "mask_ratio=2"], "noise parameter 'mask_ratio' must be between 0 and 1"),
        (["{dir}", "--set", "mask_ratio"], "--set expects KEY=VALUE, got 'mask_ratio'"),
        (["{dir}", "--preset", "foo"], "invalid choice: 'foo'"),
        (["{dir}", "--limit", "-1"], "--limit: must be at least 0"),
        (["{dir}", "--start", "1000"], "--start 1000 is past the end of"),
    ],
)
def test_user_errors_exit_2_with_one_line(capsys, prepared, tmp_path, argv, message):
    argv = [a.format(dir=prepared, missing=tmp_path / "no_such_dir") for a in argv]
    capsys.readouterr()
    assert cli("noise", *argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and captured.err.startswith("bart-data: error: ")
    assert message in captured.err and "Traceback" not in captured.err


def test_user_error_in_a_real_process(prepared):
    proc = subprocess.run(
        [sys.executable, "-m", "data_prep", "noise", str(prepared), "--set", "nonsense=1"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("bart-data: error: unknown noise parameter 'nonsense'")


def test_output_into_a_pipe_closed_early_exits_quietly(prepared):
    """``data_prep noise DIR | head -0``: the reader is gone (closed before the command's imports are
    done); the output is dropped without a BrokenPipeError traceback."""
    argv = [sys.executable, "-m", "data_prep", "noise", str(prepared), "--json"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    proc.stdout.close()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 141 and err == b""
