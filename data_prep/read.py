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
import logging
import lzma
import os
import re
import sys
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from data_prep.errors import UserError
from data_prep.manifest import Repairs

FORMATS = ("clue", "lines", "jsonl")
HF_PREFIX = "hf:"  # --input hf:NAME[:SPLIT]: a Hugging Face dataset (see hf_inputs)
TABLE_SUFFIXES = (".parquet", ".arrow")  # one document per row, its text in the --text-field column
TABLE_BATCH_ROWS = 1024
_TABLE_ERRORS = (OSError, pa.ArrowException)
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
    """Files named by paths, directories (recursively) and globs, in order, without duplicates.

    Inside a directory, what cannot be input is left out and counted in one warning per directory:
    unreadable subdirectories, FIFOs and other non-regular files, dangling links, and the output
    directories of ``prepare`` (finished or not) and ``vocab``, which a run whose output lies inside
    its input directory would otherwise read back as corpus text the next time.
    """
    files: list[Path] = []
    seen: set[Path] = set()
    for pattern in patterns:
        path = Path(pattern)
        if pattern.startswith(HF_PREFIX):
            found = hf_inputs(pattern)
        elif path.is_file():
            found = [path]
        elif path.is_dir():
            found = _walk(path)
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


# Files that make a directory the output of `prepare` (finished or not) or of `vocab`, never corpus.
_OUTPUT_MARKERS = ("manifest.json", ".prep", "tokenizer_config.json")
# What a directory walk skips: (singular, plural), in the order the warning lists them.
_UNREADABLE = ("unreadable directory", "unreadable directories")
_SPECIAL = ("FIFO, socket or device file", "FIFOs, sockets or device files")
_DANGLING = ("dangling link", "dangling links")
_OUTPUT = ("output directory of prepare or vocab", "output directories of prepare or vocab")


def _walk(root: Path) -> list[Path]:
    """The regular files under ``root`` (hidden ones left out), sorted; what is skipped is warned about."""
    skipped: Counter[tuple[str, str]] = Counter()
    unreadable: list[OSError] = []
    found = []
    for top, dirs, names in os.walk(root, onerror=unreadable.append):
        here = Path(top)
        keep = []
        for name in sorted(dirs):
            sub = here / name
            if name.startswith("."):
                continue
            if any(os.path.exists(sub / m) for m in _OUTPUT_MARKERS):
                skipped[_OUTPUT] += 1
            else:
                keep.append(name)
        dirs[:] = keep
        for name in names:
            if name.startswith("."):
                continue
            file = here / name
            if file.is_file():
                found.append(file)
            elif file.is_symlink() and not file.exists():
                skipped[_DANGLING] += 1
            elif not file.is_dir():  # a link to a directory is not followed, as for directories
                skipped[_SPECIAL] += 1
    skipped[_UNREADABLE] += len(unreadable)
    kinds = (_UNREADABLE, _SPECIAL, _DANGLING, _OUTPUT)
    if counts := [f"{n:,} {kind[n != 1]}" for kind in kinds if (n := skipped[kind])]:
        print(f"warning: under {root} skipped {', '.join(counts)}", file=sys.stderr)
    return sorted(found)


def hf_inputs(spec: str) -> list[Path]:
    """``hf:NAME[:SPLIT]`` (split ``train`` by default): a directory written by ``datasets``'
    ``save_to_disk`` gives its Arrow files; anything else ``datasets.load_dataset`` opens (a Hub name when
    online, a local directory of data files) is one input, streamed row by row when it is read."""
    name, _, split = spec[len(HF_PREFIX) :].partition(":")
    root = Path(name)
    if (root / "dataset_dict.json").is_file():  # a saved DatasetDict: one directory per split
        splits = json.loads((root / "dataset_dict.json").read_text(encoding="utf-8"))["splits"]
        if (split or "train") not in splits:
            raise UserError(f"{spec}: no split {split or 'train'!r} (it has {', '.join(splits)})")
        root = root / (split or "train")
    elif (root / "state.json").is_file() and split:
        raise UserError(f"{spec}: {root} is one saved split; name it without :{split}")
    if (root / "state.json").is_file():
        state = json.loads((root / "state.json").read_text(encoding="utf-8"))
        return [root / f["filename"] for f in state["_data_files"]]
    _open_hf(spec)  # fails here, once, with one line (offline, unknown name or split)
    return [Path(spec)]


def _open_hf(spec: str) -> Any:
    """The ``datasets`` streaming dataset of ``hf:NAME[:SPLIT]`` (nothing downloaded yet)."""
    import datasets

    name, _, split = spec[len(HF_PREFIX) :].partition(":")
    hub_log = logging.getLogger("huggingface_hub")  # offline, it logs every retry: the error says it once
    level = hub_log.level
    hub_log.setLevel(logging.ERROR)
    try:
        return datasets.load_dataset(name, split=split or "train", streaming=True)
    except (ConnectionError, FileNotFoundError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"cannot open {spec} with datasets: {first}") from None
    finally:
        hub_log.setLevel(level)


def is_hf(path: Path) -> bool:
    """A dataset that ``datasets`` streams (see ``hf_inputs``), not a file."""
    return str(path).startswith(HF_PREFIX)


def input_size(path: Path) -> int:
    """Bytes of an input file; 0 for a streamed dataset (its size is unknown until it is read)."""
    return 0 if is_hf(path) else path.stat().st_size


def is_table(path: Path) -> bool:
    return path.suffix.lower() in TABLE_SUFFIXES


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
    """'ok', 'empty', 'binary' or 'unreadable', from the first bytes of the (decompressed) file (from
    the row count of a parquet or Arrow file; a ``hf:`` dataset is read to find out)."""
    if is_hf(path):
        return "ok"
    if is_table(path):
        try:
            return "ok" if _table_rows(path) else "empty"
        except _TABLE_ERRORS:
            return "unreadable"
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
        out.append(record_to_clue(text, repairs))
    return "".join(out)


def record_to_clue(text: object, repairs: Repairs) -> str:
    """One record's text (a JSON line's field, a table row's cell) as a clue-layout document: its
    non-blank lines, then a blank line. Not a string (null, a number, a list): a counted bad record."""
    if not isinstance(text, str):
        repairs.bad_jsonl_lines += 1
        return ""
    text, lone = _SURROGATE.subn(_REPLACEMENT, text)  # from \ud800-style escapes: not encodable
    repairs.invalid_utf8_chars += lone
    lines = [s for s in text.split("\n") if s.strip()]
    return "\n".join(lines) + "\n\n" if lines else ""


def clue_blocks(
    unit: Unit, text_field: str, repairs: Repairs, cut_line: Callable[[str, int], int]
) -> Iterator[tuple[str, int]]:
    """(text, input bytes since the last block): the unit in blocks of whole lines in the clue layout (the
    lines layout for a ``lines`` unit), whatever it is stored as. Read errors raise ``UnreadableInput``."""
    if unit.fmt in ("table", "stream"):
        yield from _table_blocks(unit, text_field, repairs, cut_line)
        return
    for block, nbytes in read_blocks(unit, repairs, cut_line):
        yield (jsonl_to_clue(block, text_field, repairs) if unit.fmt == "jsonl" else block), nbytes


def _table_rows(path: Path) -> int:
    if path.suffix.lower() == ".parquet":
        return pq.ParquetFile(path).metadata.num_rows
    with pa.memory_map(str(path)) as source:
        return _read_arrow(source).num_rows


def _read_arrow(source: pa.MemoryMappedFile) -> pa.Table:
    """An Arrow IPC file (Feather v2) or stream (what ``datasets`` writes), memory-mapped: no copy."""
    try:
        return pa.ipc.open_file(source).read_all()
    except pa.ArrowInvalid:
        source.seek(0)
        return pa.ipc.open_stream(source).read_all()


def _table_batches(path: Path, text_field: str) -> Iterator[tuple[list[object] | None, int]]:
    """(the ``text_field`` cells, or None when the table has no such column; rows) per batch of rows."""
    if is_hf(path):
        for batch in _open_hf(str(path)).iter(batch_size=TABLE_BATCH_ROWS):
            rows = len(next(iter(batch.values()), []))
            yield batch.get(text_field), rows
        return
    if path.suffix.lower() == ".parquet":
        table = pq.ParquetFile(path)
        if text_field not in table.schema_arrow.names:
            yield None, table.metadata.num_rows
            return
        for batch in table.iter_batches(batch_size=TABLE_BATCH_ROWS, columns=[text_field]):
            yield batch.column(0).to_pylist(), batch.num_rows
        return
    with pa.memory_map(str(path)) as source:
        table = _read_arrow(source)
        if text_field not in table.column_names:
            yield None, table.num_rows
            return
        for batch in table.select([text_field]).to_batches(max_chunksize=TABLE_BATCH_ROWS):
            yield batch.column(0).to_pylist(), batch.num_rows


def _table_blocks(
    unit: Unit, text_field: str, repairs: Repairs, cut_line: Callable[[str, int], int]
) -> Iterator[tuple[str, int]]:
    """A table's rows as clue-layout documents, exactly as the same records in a jsonl file would be;
    a line longer than ``LINE_LIMIT`` is cut (and counted) as in a text file."""
    path = Path(unit.path)
    try:
        total, done, reported = 0 if is_hf(path) else _table_rows(path), 0, 0
        for cells, rows in _table_batches(path, text_field):
            if cells is None:
                repairs.bad_jsonl_lines += rows
                cells = []
            docs = []
            for cell in cells:
                doc = record_to_clue(cell, repairs)
                if len(doc) > LINE_LIMIT:
                    doc = "".join(
                        _cut_long(line, repairs, cut_line) for line in doc.splitlines(keepends=True)
                    )
                docs.append(doc)
            done += rows
            owed = unit.size * done // max(total, 1) - reported
            reported += owed
            yield "".join(docs), owed
    except (*_TABLE_ERRORS, UserError) as exc:  # a stream that breaks off: the network went away
        raise UnreadableInput(str(exc)) from exc


def _cut_long(line: str, repairs: Repairs, cut_line: Callable[[str, int], int]) -> str:
    """``line`` (ending with a newline) in pieces of at most ``LINE_LIMIT`` characters, each a line."""
    pieces = []
    while len(line) > LINE_LIMIT + 1:
        k = cut_line(line, LINE_LIMIT)
        repairs.long_lines_cut += 1
        pieces.append(line[:k] + "\n")
        line = line[k:]
    return "".join(pieces) + line
