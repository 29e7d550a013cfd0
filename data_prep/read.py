"""Decoding: a unit of work read as bounded blocks of repaired text, in the clue layout.

Whatever the input is stored as (text in the ``clue``, ``lines`` or ``jsonl`` layout, compressed or not,
a table, a streamed dataset), the rest of the pipeline sees blocks of complete lines, each ending with
``\\n``; a line longer than ``line_limit`` characters is cut (and counted) so memory stays bounded
whatever the input. What is repaired is counted into the unit's ``Repairs``.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

from data_prep.errors import UserError
from data_prep.formats import BLOCK_BYTES, READ_ERRORS, REPLACEMENT, REPLACEMENT_UTF8, decompressor
from data_prep.inputs import is_hf
from data_prep.manifest import Repairs
from data_prep.plan_units import Unit
from data_prep.tables import TABLE_ERRORS, table_batches, table_rows

LINE_LIMIT = 1 << 20  # characters
_SURROGATE = re.compile("[\ud800-\udfff]")


class UnreadableInput(Exception):
    """The input cannot be read to its end (e.g. a truncated or corrupt .gz)."""


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
    opener = decompressor(Path(unit.path))
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
                    legit = (tail + raw).count(REPLACEMENT_UTF8) - tail.count(REPLACEMENT_UTF8)
                    tail = (tail + raw)[-2:]
                else:
                    legit = 0
                repairs.invalid_utf8_chars += max(text.count(REPLACEMENT) - legit, 0)
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
        except READ_ERRORS as exc:
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
    text, lone = _SURROGATE.subn(REPLACEMENT, text)  # from \ud800-style escapes: not encodable
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


def _table_blocks(
    unit: Unit, text_field: str, repairs: Repairs, cut_line: Callable[[str, int], int]
) -> Iterator[tuple[str, int]]:
    """A table's rows as clue-layout documents, exactly as the same records in a jsonl file would be;
    a line longer than ``LINE_LIMIT`` is cut (and counted) as in a text file."""
    path = Path(unit.path)
    try:
        total, done, reported = 0 if is_hf(path) else table_rows(path), 0, 0
        for cells, rows in table_batches(path, text_field):
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
    except (*TABLE_ERRORS, UserError) as exc:  # a stream that breaks off: the network went away
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
