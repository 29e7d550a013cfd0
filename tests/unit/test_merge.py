"""``merge``: the parts of ``prepare --part I/N`` join into one dataset; a failed merge leaves nothing and
a damaged part is refused, and the rerun just works."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers import clue_corpus, prepare

from data_prep.__main__ import main as data_main
from data_prep.shards import ShardDir

pytestmark = pytest.mark.faults  # counted by bench/faults.py


def first_arrow(root: Path) -> Path:
    return sorted((root / "train").glob("*.arrow"))[0]


def test_a_failed_merge_leaves_nothing_and_a_damaged_part_is_refused(tmp_path, vocab, capsys):
    corpus = tmp_path / "in"
    clue_corpus(corpus / "a.txt", 60, seed=3)
    clue_corpus(corpus / "b.txt", 60, seed=4)
    parts = [tmp_path / f"p{i}" for i in (1, 2)]
    for i, part in enumerate(parts, 1):
        assert prepare(vocab, [corpus], part, "--seq-length", "48", "--part", f"{i}/2") == 0
    out = tmp_path / "merged"
    state = parts[1] / "train" / "state.json"
    good = state.read_text()
    state.write_text(good.replace('"filename": "', '"filename": "../../'))  # a path out of the directory
    capsys.readouterr()
    assert data_main(["merge", "--output", str(out), *map(str, parts)]) == 2
    assert "state.json" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".tmp-*")) and not (tmp_path.parent / "x").exists()
    state.write_text(good)
    arrow = first_arrow(parts[0])
    arrow.write_bytes(arrow.read_bytes()[:-10])
    assert data_main(["merge", "--output", str(out), *map(str, parts)]) == 2
    assert arrow.name in capsys.readouterr().err and not out.exists()
    shutil.rmtree(parts[0])
    assert prepare(vocab, [corpus], parts[0], "--seq-length", "48", "--part", "1/2") == 0
    assert data_main(["merge", "--output", str(out), *map(str, parts)]) == 0  # the rerun just works
    assert ShardDir(out).verify(ShardDir(out).read_manifest(), hashes=True) > 0
