"""``python -m pretrain.fill_in``: an export directory, or a run directory meaning its ``hf/final``."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from transformers import BartConfig, BartForConditionalGeneration, BertTokenizer

from pretrain.fill_in import main
from pretrain.rundir import RunDir


def save_export(vocab: Path, path: Path) -> None:
    """A tiny untrained export: enough for BertTokenizer + BartForConditionalGeneration.from_pretrained."""
    tok = BertTokenizer.from_pretrained(str(vocab))
    config = BartConfig(
        vocab_size=len(tok), d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=16, decoder_ffn_dim=16, max_position_embeddings=64,
        pad_token_id=tok.pad_token_id, bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id,
        decoder_start_token_id=tok.cls_token_id,
    )  # fmt: skip
    BartForConditionalGeneration(config).save_pretrained(str(path))
    shutil.copy(vocab / "vocab.txt", path / "vocab.txt")


@pytest.fixture
def run(vocab, tmp_path) -> RunDir:
    """A run directory with a broken ``hf/step-2`` and a good ``hf/final``."""
    run = RunDir(tmp_path / "run")
    run.export(2).mkdir(parents=True)
    (run.export(2) / "config.json").write_text("not json")
    (run.export(2) / "vocab.txt").write_text("[PAD]\n")
    save_export(vocab, run.final_export)
    return run


def test_a_run_directory_means_its_final_export(run, capsys):
    assert main([str(run.root), "中国的首都是[MASK]京", "--max-new-tokens", "4"]) == 0
    captured = capsys.readouterr()
    assert "中国的首都是[MASK]京\n  -> " in captured.out and "no hf/final" not in captured.err


def test_without_final_the_newest_export_is_used_and_said(run, capsys):
    shutil.move(run.final_export, run.export(3))
    assert main([str(run.root), "中国[MASK]", "--max-new-tokens", "4"]) == 0
    err = capsys.readouterr().err
    assert "has no hf/final yet; using its newest export" in err and str(run.export(3)) in err


def test_neither_an_export_nor_a_run(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "neither an export" in err


def test_bad_generation_limits_and_prompts_are_one_line_errors(run, capsys):
    assert main([str(run.root), "中国[MASK]", "--max-new-tokens", "0"]) == 2
    assert "--max-new-tokens: must be at least 1" in capsys.readouterr().err
    assert main([str(run.root), "中" * 100]) == 2  # the model takes 64 positions
    err = capsys.readouterr().err
    assert "has 102 tokens; the model takes 64" in err and err.count("\n") == 1
