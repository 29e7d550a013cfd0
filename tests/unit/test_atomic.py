"""``data_prep.atomic``: a file or directory appears under its final name complete or not at all; a failed
write (an error while writing, a full disk at the sync or the rename) leaves the old content intact and no
temporary behind; what is renamed into place was synced first."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

import data_prep.atomic
from data_prep.atomic import (
    atomic_dir,
    atomic_file,
    fsync_files,
    replace_dir,
    temp_dir,
    temp_file,
    write_bytes,
    write_json,
    write_text,
)


def disk_full(*args: object, **kwargs: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.fixture
def synced(monkeypatch) -> list[Path]:
    """The paths ``os.fsync`` was called on, in order (the real fsync still runs)."""
    calls: list[Path] = []
    fsync = os.fsync

    def record(fd: int) -> None:
        calls.append(Path(os.readlink(f"/proc/self/fd/{fd}")))
        fsync(fd)

    monkeypatch.setattr(data_prep.atomic.os, "fsync", record)
    return calls


def test_temporary_names_lie_beside_the_target_and_are_hidden():
    target = Path("/some/dir/manifest.json")
    assert temp_file(target) == Path(f"/some/dir/.manifest.json.{os.getpid()}.tmp")
    assert temp_dir(target) == Path("/some/dir/.tmp-manifest.json")


def test_the_writers_write_the_content_and_leave_no_temporary(tmp_path):
    write_bytes(tmp_path / "a.bin", b"\x00\x01")
    write_text(tmp_path / "b.txt", "中文\n")
    write_json(tmp_path / "c.json", {"名": [1, 2]})
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "b.txt").read_bytes() == "中文\n".encode()
    text = (tmp_path / "c.json").read_text(encoding="utf-8")
    assert json.loads(text) == {"名": [1, 2]} and "名" in text and text.endswith("}\n")  # not \u escaped
    assert names(tmp_path) == ["a.bin", "b.txt", "c.json"]


def test_a_file_is_synced_before_it_is_renamed_into_place(tmp_path, synced, monkeypatch):
    seen = []
    replace = os.replace

    def spy(src, dst):
        seen.append(list(synced))  # what was synced by the time of the rename
        replace(src, dst)

    monkeypatch.setattr(data_prep.atomic.os, "replace", spy)
    write_text(tmp_path / "f.txt", "new")
    assert seen == [[temp_file(tmp_path / "f.txt")]]


def test_an_error_while_writing_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")
    with pytest.raises(ValueError, match="half-way"), atomic_file(target) as tmp:
        tmp.write_text("new, but only half")
        raise ValueError("half-way")
    assert target.read_text() == "old"
    assert names(tmp_path) == ["f.txt"]


@pytest.mark.parametrize("where", ["fsync", "replace"])
def test_a_full_disk_at_the_sync_or_the_rename_leaves_the_old_file_and_no_temporary(
    tmp_path, monkeypatch, where
):
    target = tmp_path / "f.json"
    write_json(target, {"old": True})
    monkeypatch.setattr(data_prep.atomic.os, where, disk_full)
    with pytest.raises(OSError, match="No space left"):
        write_json(target, {"new": True})
    assert json.loads(target.read_text()) == {"old": True}
    assert names(tmp_path) == ["f.json"]


def test_a_failed_first_write_leaves_nothing_under_the_name(tmp_path, monkeypatch):
    monkeypatch.setattr(data_prep.atomic.os, "fsync", disk_full)
    with pytest.raises(OSError):
        write_bytes(tmp_path / "new.bin", b"x" * 100)
    assert names(tmp_path) == []


def test_a_directory_appears_complete_and_its_files_were_synced(tmp_path, synced):
    target = tmp_path / "out"
    with atomic_dir(target) as tmp:
        assert tmp == temp_dir(target) and names(tmp) == []
        assert not target.exists()  # nothing under the final name while it is being filled
        (tmp / "a").write_text("1")
        (tmp / "b").write_text("2")
    assert names(target) == ["a", "b"] and (target / "b").read_text() == "2"
    assert sorted(p.name for p in synced) == ["a", "b"]
    assert names(tmp_path) == ["out"]


def test_a_directory_replaces_an_older_one_whole(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "stale").write_text("from the last run")
    with atomic_dir(target) as tmp:
        (tmp / "fresh").write_text("new")
    assert names(target) == ["fresh"]
    assert names(tmp_path) == ["out"]  # no .old-out left


def test_a_failed_directory_leaves_the_old_one_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "part").write_text("half")
        raise RuntimeError("killed half-way")
    assert names(target) == ["keep"] and names(tmp_path) == ["out"]
    monkeypatch.setattr(data_prep.atomic.os, "fsync", disk_full)
    with pytest.raises(OSError), atomic_dir(target) as tmp:
        (tmp / "part").write_text("all of it")
    assert names(target) == ["keep"] and (target / "keep").read_text() == "old"
    assert names(tmp_path) == ["out"]


def test_a_temporary_left_by_an_earlier_run_is_removed_before_filling(tmp_path):
    target = tmp_path / "out"
    leftover = temp_dir(target)
    leftover.mkdir()
    (leftover / "junk").write_text("from a killed run")
    with atomic_dir(target) as tmp:
        assert names(tmp) == []  # starts empty
        (tmp / "a").write_text("1")
    assert names(target) == ["a"]


def test_replace_dir_moves_onto_a_missing_or_existing_target(tmp_path):
    new = tmp_path / ".tmp-x"
    new.mkdir()
    (new / "v").write_text("1")
    replace_dir(new, tmp_path / "x")
    assert (tmp_path / "x" / "v").read_text() == "1" and not new.exists()
    new.mkdir()
    (new / "v").write_text("2")
    (tmp_path / ".old-x").mkdir()  # left by a replacement cut between its renames
    replace_dir(new, tmp_path / "x")
    assert (tmp_path / "x" / "v").read_text() == "2"
    assert names(tmp_path) == ["x"]


def test_fsync_files_syncs_the_files_directly_inside_only(tmp_path, synced):
    (tmp_path / "a").write_text("1")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "deep").write_text("2")
    fsync_files(tmp_path)
    assert synced == [tmp_path / "a"]
