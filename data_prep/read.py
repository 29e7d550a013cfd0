"""Input side: expand paths, plan units of work, and read a unit as bounded blocks of repaired text.

A unit is a whole file, or for a big uncompressed file a byte range of it cut just before a blank line
(``clue``) or just after a newline (``lines``, ``jsonl``), so that every unit parses exactly as it would
inside the whole file. Blocks hold complete lines, each ending with ``\\n``; a line longer than
``line_limit`` characters is cut (and counted) so memory stays bounded whatever the input.
"""

from __future__ import annotations

import bz2
import codecs
import glob
import gzip
import json
import lzma
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from data_prep.errors import UserError
from data_prep.manifest import Repairs

FORMATS = ("clue", "lines", "jsonl")
_OPENERS: dict[str, Callable[..., BinaryIO]] = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
_READ_ERRORS = (OSError, EOFError, lzma.LZMAError, zlib.error)
BLOCK_BYTES = 1 << 20
LINE_LIMIT = 1 << 20  # characters
HEAD_BYTES = 8192
_REPLACEMENT = "\ufffd"
_REPLACEMENT_UTF8 = _REPLACEMENT.encode("utf-8")
_SURROGATE = re.compile("[\ud800-\udfff]")


class UnreadableInput(Exception):
    """The input cannot be read to its end (e.g. a truncated or corrupt .gz)."""


def expand_inputs(patterns: list[str]) -> list[Path]:
    """Files named by paths, directories (recursively) and globs, in order, without duplicates."""
    files: list[Path] = []
    seen: set[Path] = set()
    for pattern in patterns:
        path = Path(pattern)
        if path.is_file():
            found = [path]
        elif path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and not _hidden(p.relative_to(path)))
        elif glob.has_magic(pattern):
            found = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
            if not found:
                raise UserError(f"no input file matches {pattern}")
        else:
            raise UserError(f"input path does not exist: {pattern}")
        for p in found:
            key = p.resolve()
            if key not in seen:
                seen.add(key)
                files.append(p)
    if not files:
        raise UserError(f"no input files in {' '.join(patterns)}")
    return files


def _hidden(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)


def is_compressed(path: Path) -> bool:
    return path.suffix.lower() in _OPENERS


def open_binary(path: Path) -> BinaryIO:
    return _OPENERS.get(path.suffix.lower(), open)(path, "rb")


def looks_binary(head: bytes) -> bool:
    """Not text: at least 8 NUL bytes or undecodable characters, and more than 10% of the characters.

    A text file with a few NULs or bad bytes is repaired instead; images, archives, executables,
    compressed data without its extension and UTF-16 text are skipped.
    """
    if not head:
        return False
    text = head.decode("utf-8", errors="replace")
    if head[-3:].decode("utf-8", errors="ignore") != head[-3:].decode("utf-8", errors="replace"):
        text = head[:-3].decode("utf-8", errors="replace")  # a multi-byte character cut by the sample
    bad = head.count(0) + text.count(_REPLACEMENT) - head.count(_REPLACEMENT_UTF8)
    return bad >= 8 and bad * 10 > len(text)


def file_status(path: Path) -> str:
    """'ok', 'empty', 'binary' or 'unreadable', from the first bytes of the (decompressed) file."""
    try:
        with open_binary(path) as f:
            head = f.read(HEAD_BYTES)
    except _READ_ERRORS:
        return "unreadable"
    if not head:
        return "empty"
    return "binary" if looks_binary(head) else "ok"


@dataclass(frozen=True)
class Unit:
    """A file, or the byte range [start, end) of an uncompressed file."""

    file_index: int
    range_index: int
    path: str
    start: int
    end: int | None  # None: to the end of the file
    size: int  # bytes of input this unit covers (for progress)

    @property
    def name(self) -> str:
        return f"u{self.file_index:07d}.{self.range_index:05d}"

    @property
    def is_last(self) -> bool:
        return self.end is None


def plan_file(file_index: int, path: Path, fmt: str, unit_bytes: int) -> list[Unit]:
    """Split a big uncompressed file into ranges of about ``unit_bytes`` at document boundaries."""
    size = path.stat().st_size
    if is_compressed(path) or size <= unit_bytes:
        return [Unit(file_index, 0, str(path), 0, None, size)]
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


def read_blocks(
    unit: Unit,
    repairs: Repairs,
    cut_line: Callable[[str, int], int],
    block_bytes: int = BLOCK_BYTES,
    line_limit: int | None = None,
) -> Iterator[tuple[str, int]]:
    """(text, input bytes consumed since the last block): the unit in blocks of complete lines.

    Invalid UTF-8 becomes U+FFFD; a missing final newline is added; a line with no newline within
    ``line_limit`` characters is cut where ``cut_line(text, limit)`` says. What is repaired is counted
    into ``repairs``. Read errors raise ``UnreadableInput``.
    """
    line_limit = line_limit or LINE_LIMIT
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""
    tail = b""
    last_byte = b"\n"
    remaining = None if unit.end is None else unit.end - unit.start
    try:
        source = open(unit.path, "rb")  # noqa: SIM115 - closed below, with the decompressor
    except OSError as exc:
        raise UnreadableInput(str(exc)) from exc
    position, owed = unit.start, 0
    opener = _OPENERS.get(Path(unit.path).suffix.lower())
    with source, opener(source) if opener else source as f:
        try:
            if unit.start:
                f.seek(unit.start)
            while True:
                want = block_bytes if remaining is None else min(block_bytes, remaining)
                raw = f.read(want) if want else b""
                if remaining is not None:
                    remaining -= len(raw)
                owed, position = owed + source.tell() - position, source.tell()
                final = not raw
                text = decoder.decode(raw, final=final)
                if raw:
                    last_byte = raw[-1:]
                    legit = (tail + raw).count(_REPLACEMENT_UTF8) - tail.count(_REPLACEMENT_UTF8)
                    tail = (tail + raw)[-2:]
                else:
                    legit = 0
                repairs.invalid_utf8_chars += max(text.count(_REPLACEMENT) - legit, 0)
                pending += text
                cut = pending.rfind("\n")
                if cut >= 0:
                    yield pending[: cut + 1], owed
                    pending, owed = pending[cut + 1 :], 0
                while len(pending) > line_limit:
                    k = cut_line(pending, line_limit)
                    repairs.long_lines_cut += 1
                    yield pending[:k] + "\n", owed
                    pending, owed = pending[k:], 0
                if final:
                    break
        except _READ_ERRORS as exc:
            raise UnreadableInput(str(exc)) from exc
    if pending or owed:
        yield pending + "\n" if pending else "", owed
    if unit.is_last and last_byte != b"\n":
        repairs.missing_final_newline += 1


def jsonl_to_clue(block: str, text_field: str, repairs: Repairs) -> str:
    """One JSON object per line -> the clue layout (its lines, then a blank line), bad lines counted."""
    out: list[str] = []
    for line in block.split("\n"):
        if not line.strip():
            continue
        try:
            text = json.loads(line)[text_field]
        except (ValueError, KeyError, TypeError, RecursionError):  # RecursionError: nested too deep
            repairs.bad_jsonl_lines += 1
            continue
        if not isinstance(text, str):
            repairs.bad_jsonl_lines += 1
            continue
        text, lone = _SURROGATE.subn(_REPLACEMENT, text)  # from \ud800-style escapes: not encodable
        repairs.invalid_utf8_chars += lone
        lines = [s for s in text.split("\n") if s.strip()]
        if lines:
            out.append("\n".join(lines) + "\n\n")
    return "".join(out)
