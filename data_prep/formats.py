"""What an input file is, from its name and first bytes: its layout, compression, table or text, and
whether it is text at all.

Apart from decoding, because the unit planner and the workers' file check ask these questions too, and
each answer (which suffix is which compression, what counts as binary) is written once, here.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from data_prep.inputs import is_hf
from data_prep.tables import TABLE_ERRORS, table_rows

FORMATS = ("clue", "lines", "jsonl")  # the layouts of text (see data_prep.read)
TABLE_SUFFIXES = (".parquet", ".arrow")  # one document per row, its text in the --text-field column
_OPENERS: dict[str, Callable[..., BinaryIO]] = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
READ_ERRORS = (OSError, EOFError, lzma.LZMAError, zlib.error)  # what reading a (compressed) file raises
BLOCK_BYTES = 1 << 20  # bytes read at a time
HEAD_BYTES = 8192  # the first bytes that tell text from binary
REPLACEMENT = "\ufffd"
REPLACEMENT_UTF8 = REPLACEMENT.encode("utf-8")


def is_table(path: Path) -> bool:
    return path.suffix.lower() in TABLE_SUFFIXES


def is_compressed(path: Path) -> bool:
    return path.suffix.lower() in _OPENERS


def decompressor(path: Path) -> Callable[..., BinaryIO] | None:
    """What opens ``path``'s compression (over a file name or an open binary file); None: not compressed."""
    return _OPENERS.get(path.suffix.lower())


def open_binary(path: Path) -> BinaryIO:
    return (decompressor(path) or open)(path, "rb")


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
    bad = head.count(0) + text.count(REPLACEMENT) - head.count(REPLACEMENT_UTF8)
    return bad >= 8 and bad * 10 > len(text)


def file_status(path: Path) -> str:
    """'ok', 'empty', 'binary' or 'unreadable', from the first bytes of the (decompressed) file (from
    the row count of a parquet or Arrow file; a ``hf:`` dataset is read to find out)."""
    if is_hf(path):
        return "ok"
    if is_table(path):
        try:
            return "ok" if table_rows(path) else "empty"
        except TABLE_ERRORS:
            return "unreadable"
    try:
        with open_binary(path) as f:
            head = f.read(HEAD_BYTES)
    except READ_ERRORS:
        return "unreadable"
    if not head:
        return "empty"
    return "binary" if looks_binary(head) else "ok"
