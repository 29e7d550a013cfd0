"""Atomic writes: a file or directory appears under its final name complete, or not at all.

Everything is written under a temporary name beside its target (``.NAME.PID.tmp`` for a file,
``.tmp-NAME`` for a directory), flushed to disk, then renamed: a kill or a full disk at any moment
leaves either the old content or the new one, plus at most a temporary that the next run removes.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def temp_file(path: Path) -> Path:
    """The temporary name ``path`` is written under (unique per process)."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def temp_dir(path: Path) -> Path:
    """The temporary name a directory ``path`` is built under."""
    return path.with_name(f".tmp-{path.name}")


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_files(directory: Path) -> None:
    """Flush every file directly inside ``directory`` to disk."""
    for file in directory.iterdir():
        if file.is_file():
            fsync_file(file)


@contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is synced and renamed to ``path``, else removed."""
    tmp = temp_file(path)
    try:
        yield tmp
        fsync_file(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: Path, data: bytes) -> None:
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, ensure_ascii=False, indent=2) + "\n")


@contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield an empty temporary directory to fill; on success its files are synced and it replaces
    ``path`` (an older ``path`` is removed only after the move), else it is removed."""
    tmp = temp_dir(path)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        fsync_files(tmp)
        replace_dir(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def replace_dir(tmp: Path, final: Path) -> None:
    """Move a finished directory ``tmp`` onto ``final``; an older ``final`` is removed after the move."""
    old = final.with_name(f".old-{final.name}")
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
