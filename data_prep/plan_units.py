"""How the inputs are cut into units of work: a whole file, or byte ranges of a big uncompressed text file.

A range is cut just before a blank line (``clue``) or just after a newline (``lines``, ``jsonl``), so
that every unit parses exactly as it would inside the whole file. Apart from reading, because the plan is
made once, by the job, before any unit is read (``data_prep.units`` then runs each unit).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from data_prep.formats import BLOCK_BYTES, is_compressed, is_table
from data_prep.inputs import input_size, is_hf


@dataclass(frozen=True)
class Unit:
    """A file, or the byte range [start, end) of an uncompressed file."""

    file_index: int
    range_index: int
    path: str
    start: int
    end: int | None  # None: to the end of the file
    size: int  # bytes of input this unit covers (for progress)
    fmt: str  # clue | lines | jsonl: the layout of its text; table: the rows of a parquet or Arrow file

    @property
    def name(self) -> str:
        return f"u{self.file_index:07d}.{self.range_index:05d}"

    @property
    def is_last(self) -> bool:
        return self.end is None


def whole_file(file_index: int, path: Path, fmt: str) -> Unit:
    """The whole file as one unit; a parquet or Arrow file reads as a table and a ``hf:`` dataset as a
    stream of rows, whatever ``fmt`` says."""
    kind = "stream" if is_hf(path) else "table" if is_table(path) else fmt
    return Unit(file_index, 0, str(path), 0, None, input_size(path), kind)


def plan_file(file_index: int, path: Path, fmt: str, unit_bytes: int) -> list[Unit]:
    """Split a big uncompressed text file into ranges of about ``unit_bytes`` at document boundaries."""
    if is_hf(path) or is_compressed(path) or is_table(path) or path.stat().st_size <= unit_bytes:
        return [whole_file(file_index, path, fmt)]
    size = path.stat().st_size
    sep = b"\n\n" if fmt == "clue" else b"\n"
    cuts = [0]
    with path.open("rb") as f:
        while True:
            cut = _find_cut(f, max(cuts[-1] + 1, len(cuts) * unit_bytes), sep)
            if cut is None or cut >= size:
                break
            cuts.append(cut)
    bounds = [*cuts, size]
    return [
        Unit(
            file_index,
            i,
            str(path),
            bounds[i],
            None if i == len(cuts) - 1 else bounds[i + 1],
            bounds[i + 1] - bounds[i],
            fmt,
        )
        for i in range(len(cuts))
    ]


def _find_cut(f: BinaryIO, target: int, sep: bytes) -> int | None:
    """The first offset p >= target with data[p-1:p-1+len(sep)] == sep (cut after its first byte)."""
    pos = target - 1
    f.seek(pos)
    carry = b""
    while True:
        chunk = f.read(BLOCK_BYTES)
        if not chunk:
            return None
        data = carry + chunk
        i = data.find(sep)
        if i >= 0:
            return pos - len(carry) + i + 1
        carry = data[-(len(sep) - 1) :] if len(sep) > 1 else b""
        pos += len(chunk)
