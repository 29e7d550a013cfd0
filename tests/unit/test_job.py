"""``data_prep.job``: a ``prepare`` job is resumed only as the same job (``plan_sha256``, whatever the
spelling of its input paths); ``--resume`` redoes the units whose marker is garbled or whose file is gone;
a job killed before its plan or after its manifest needs no clean-up by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import clue_corpus, prepare, tree_bytes

pytestmark = pytest.mark.faults  # counted by bench/faults.py


@pytest.fixture
def interrupted_prep(tmp_path, vocab, monkeypatch) -> tuple[Path, Path, Path]:
    """(corpus, a finished reference, the same job stopped just before it finished: every unit marked)."""
    import data_prep.job

    corpus = tmp_path / "in"
    for i in range(3):
        clue_corpus(corpus / f"f{i}.txt", 80, seed=20 + i)
    ref, out = tmp_path / "ref", tmp_path / "out"
    args = ("--seq-length", "48", "--unit-mb", "0.002")
    assert prepare(vocab, [corpus], ref, *args) == 0
    with monkeypatch.context() as patch:
        patch.setattr(data_prep.job, "finish", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
        assert prepare(vocab, [corpus], out, *args) == 130
    assert len(list((out / ".prep" / "units").iterdir())) >= 4
    return corpus, ref, out


def test_resume_redoes_units_whose_marker_is_garbled_or_whose_file_is_gone(interrupted_prep, vocab, capsys):
    corpus, ref, out = interrupted_prep
    markers = sorted((out / ".prep" / "units").iterdir())
    markers[0].write_text("{garbage")
    named = json.loads(markers[1].read_text())["files"]["train"]
    (out / "train" / named).unlink()
    capsys.readouterr()
    assert prepare(vocab, [corpus], out, "--seq-length", "48", "--unit-mb", "0.002", "--resume") == 0
    err = capsys.readouterr().err
    assert f"unit {markers[0].stem} is unusable" in err and f"{named} is missing" in err
    assert tree_bytes(out) == tree_bytes(ref)


def test_resume_does_not_depend_on_how_the_input_path_is_spelled(interrupted_prep, vocab, monkeypatch):
    corpus, ref, out = interrupted_prep
    monkeypatch.chdir(corpus.parent)
    assert (
        prepare(vocab, [Path(corpus.name)], out, "--seq-length", "48", "--unit-mb", "0.002", "--resume") == 0
    )
    ref_manifest, manifest = (json.loads((d / "manifest.json").read_text()) for d in (ref, out))
    assert (
        manifest["plan_sha256"] == ref_manifest["plan_sha256"] and manifest["files"] == ref_manifest["files"]
    )


def test_a_prepare_killed_before_its_plan_or_after_its_manifest_needs_no_rm(tmp_path, vocab):
    corpus = tmp_path / "in"
    clue_corpus(corpus / "a.txt", 40, seed=5)
    out = tmp_path / "out"
    for sub in (".prep/units", "train", "valid"):  # what exists when a kill comes before plan.json
        (out / sub).mkdir(parents=True)
    assert prepare(vocab, [corpus], out, "--seq-length", "48") == 0  # no --resume needed: nothing to keep
    (out / ".prep" / "units").mkdir(parents=True)  # a kill between the manifest and the clean-up
    assert prepare(vocab, [corpus], out, "--seq-length", "48", "--resume") == 0
    assert not (out / ".prep").exists()
