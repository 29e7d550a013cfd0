"""``data_prep.inputs``: what a directory walk leaves out (counted), and an output inside its input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers import prepare

from data_prep.inputs import expand_inputs


@pytest.fixture
def src(tmp_path, monkeypatch) -> Path:
    """Two corpus files and a link to one, beside everything a walk must leave out."""
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("中国人。\n\n我们好。\n", encoding="utf-8")
    (src / "sub" / "b.txt").write_text("大学生。\n", encoding="utf-8")
    (src / "link.txt").symlink_to(src / "a.txt")  # a good link: the same file, once
    (src / "dangling.txt").symlink_to(src / "gone.txt")
    os.mkfifo(src / "sub" / "pipe")
    (src / "locked").mkdir()
    (src / "locked" / "c.txt").write_text("看不到。\n", encoding="utf-8")
    (src / ".git").mkdir()
    (src / ".git" / "HEAD").write_text("ref\n")
    for output, marker in (("shards", "manifest.json"), ("half", ".prep"), ("tok", "tokenizer_config.json")):
        (src / output / "train").mkdir(parents=True)
        (src / output / marker).write_text("{}")
        (src / output / "vocab.txt").write_text("[PAD]\n")
    scandir = os.scandir

    def locked(path):  # as for a directory without read permission (the tests may run as root)
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", locked)
    return src


def test_a_walk_counts_what_it_leaves_out(src, capsys):
    assert expand_inputs([str(src)]) == [src / "a.txt", src / "sub" / "b.txt"]
    assert capsys.readouterr().err == (
        f"warning: under {src} skipped 1 unreadable directory, 1 FIFO, socket or device file, "
        "1 dangling link, 3 output directories of prepare or vocab\n"
    )


def test_a_clean_walk_says_nothing(tmp_path, capsys):
    (tmp_path / "x.txt").write_text("中\n")
    assert expand_inputs([str(tmp_path)]) == [tmp_path / "x.txt"] and not capsys.readouterr().err


def test_an_output_inside_the_input_is_not_read_back(tmp_path, vocab):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("中国人。\n我们好。\n\n大学生。\n" * 20, encoding="utf-8")
    counts = []
    for out in ("out1", "out2"):  # the second run walks src with out1 (a finished prepare) inside it
        assert prepare(vocab, [src], src / out) == 0
        manifest = json.loads((src / out / "manifest.json").read_text())
        counts.append((manifest["counts"], [Path(s["path"]).name for s in manifest["sources"]]))
    assert counts[0] == counts[1] and counts[1][1] == ["a.txt"]


# -- tables and Hugging Face datasets: the same records give the same shards as a jsonl file ----------
