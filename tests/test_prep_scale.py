"""Scale: same bytes whatever --workers, resume after SIGKILL, --part I/N + merge, big files cut in units."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prep_fixtures import cli, clue_corpus, read_split, small_vocab_dir, stream_of, tree_bytes

FIXTURES = Path(__file__).with_name("prep_fixtures.py")


@pytest.fixture(scope="module")
def vocab(tmp_path_factory):
    return small_vocab_dir(tmp_path_factory.mktemp("vocab"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Six files of different sizes, one of them gzipped."""
    root = tmp_path_factory.mktemp("corpus")
    for i, docs in enumerate([150, 40, 300, 10, 200, 80]):
        clue_corpus(root / f"f{i}.txt", docs, seed=10 + i)
    import gzip

    (root / "f3.txt.gz").write_bytes(gzip.compress((root / "f3.txt").read_bytes()))
    (root / "f3.txt").unlink()
    return root


def prepare(vocab, inputs, out, *extra: str) -> int:
    return cli(
        "prepare",
        "--input",
        *map(str, inputs),
        "--tokenizer",
        str(vocab),
        "--output",
        str(out),
        "--quiet",
        "--seq-length",
        "96",
        "--valid-ratio",
        "0.1",
        *extra,
    )


def test_workers_give_identical_bytes_and_units_do_not_change_documents(tmp_path, vocab, corpus):
    assert prepare(vocab, [corpus], tmp_path / "w1", "--unit-mb", "0.02") == 0
    assert prepare(vocab, [corpus], tmp_path / "w2", "--unit-mb", "0.02", "--workers", "2") == 0
    one = tree_bytes(tmp_path / "w1")
    assert len([k for k in one if k.startswith("train/u")]) > 6  # big files were cut into several units
    assert one == tree_bytes(tmp_path / "w2")
    # one unit per file: other example boundaries, but the same documents, tokens and order
    assert prepare(vocab, [corpus], tmp_path / "whole") == 0
    small = json.loads((tmp_path / "w1" / "manifest.json").read_text())
    whole = json.loads((tmp_path / "whole" / "manifest.json").read_text())
    for split in ("train", "valid"):
        for key in ("documents", "sentences", "tokens"):
            assert small["counts"][split][key] == whole["counts"][split][key]
        assert (
            stream_of(read_split(tmp_path / "w1" / split))[0]
            == stream_of(read_split(tmp_path / "whole" / split))[0]
        )


def test_resume_after_sigkill_gives_identical_bytes(tmp_path, vocab):
    src = tmp_path / "src"
    for i in range(3):
        clue_corpus(src / f"f{i}.txt", 1500, seed=100 + i)
    args = [
        "--input",
        str(src),
        "--tokenizer",
        str(vocab),
        "--seq-length",
        "96",
        "--valid-ratio",
        "0.1",
        "--unit-mb",
        "0.01",
        "--quiet",
    ]
    assert cli("prepare", *args, "--output", str(tmp_path / "ref")) == 0
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, str(FIXTURES), "prepare", *args, "--output", str(killed), "--workers", "2"],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    units = killed / ".prep" / "units"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if units.is_dir() and len(list(units.iterdir())) >= 10:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "prepare finished before it could be killed: make the corpus bigger"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "manifest.json").exists()
    done = len(list(units.iterdir()))
    assert cli("prepare", *args, "--output", str(killed), "--resume") == 0
    assert tree_bytes(killed) == tree_bytes(tmp_path / "ref")
    total = len(list((tmp_path / "ref" / "train").glob("u*.arrow")))
    assert 10 <= done < total  # it really was interrupted half-way
    assert cli("prepare", *args, "--output", str(killed), "--resume") == 0  # already complete: a no-op


def test_parts_merge_into_the_one_machine_result(tmp_path, vocab, corpus, capsys):
    assert prepare(vocab, [corpus], tmp_path / "full", "--unit-mb", "0.02") == 0
    parts = [tmp_path / f"part{i}" for i in (1, 2, 3)]
    for i, part in enumerate(parts, 1):
        assert prepare(vocab, [corpus], part, "--unit-mb", "0.02", "--part", f"{i}/3") == 0
    sources = [[s["path"] for s in json.loads((p / "manifest.json").read_text())["sources"]] for p in parts]
    assert all(sources) and sum(sources, []) == sorted(sum(sources, []))  # contiguous, disjoint shares
    assert cli("merge", "--output", str(tmp_path / "merged"), *map(str, reversed(parts))) == 0
    assert tree_bytes(tmp_path / "merged") == tree_bytes(tmp_path / "full")
    capsys.readouterr()
    assert cli("merge", "--output", str(tmp_path / "m2"), str(parts[0]), str(parts[2])) == 2
    assert "parts missing: [2]" in capsys.readouterr().err
    assert prepare(vocab, [corpus], tmp_path / "other", "--part", "2/3", "--seq-length", "64") == 0
    assert (
        cli("merge", "--output", str(tmp_path / "m3"), str(parts[0]), str(tmp_path / "other"), str(parts[2]))
        == 2
    )
    assert "another job" in capsys.readouterr().err
    assert cli("merge", "--output", str(tmp_path / "m4"), str(tmp_path / "full")) == 2
