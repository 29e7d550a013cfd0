"""``data_prep.formats``: what an input file is, from its name and first bytes. The suffix says the
compression (any case) and whether it is a table; ``looks_binary`` tells text (even with a few NULs or bad
bytes, or a character cut by the sample) from binary data; ``file_status`` is 'ok', 'empty', 'binary' or
'unreadable', read through the compression, from a table's row count, and 'ok' for a ``hf:`` dataset."""

from __future__ import annotations

import bz2
import gzip
import lzma
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data_prep.formats import (
    HEAD_BYTES,
    decompressor,
    file_status,
    is_compressed,
    is_table,
    looks_binary,
    open_binary,
)

TEXT = "中国人。我们好。\nhello world\n\n大学生。\n" * 200


@pytest.mark.parametrize(
    ("name", "table", "compressed", "opener"),
    [
        ("a.txt", False, False, None),
        ("a.jsonl", False, False, None),
        ("a.txt.gz", False, True, gzip.open),
        ("a.TXT.GZ", False, True, gzip.open),
        ("a.bz2", False, True, bz2.open),
        ("a.jsonl.xz", False, True, lzma.open),
        ("a.parquet", True, False, None),
        ("a.Arrow", True, False, None),
        ("a.parquet.txt", False, False, None),  # only the last suffix counts
        ("gz", False, False, None),
    ],
)
def test_the_suffix_says_table_and_compression(name, table, compressed, opener):
    path = Path(name)
    assert is_table(path) is table
    assert is_compressed(path) is compressed
    assert decompressor(path) is opener


@pytest.mark.parametrize(
    ("suffix", "compress"),
    [("", bytes), (".gz", gzip.compress), (".bz2", bz2.compress), (".XZ", lzma.compress)],
)
def test_open_binary_reads_through_the_compression(tmp_path, suffix, compress):
    path = tmp_path / f"a.txt{suffix}"
    path.write_bytes(compress(TEXT.encode()))
    with open_binary(path) as f:
        assert f.read() == TEXT.encode()


@pytest.mark.parametrize(
    "head",
    [
        b"",
        TEXT.encode()[:HEAD_BYTES],
        b"plain ascii text\n" * 100,
        b"a\x00b" * 7 + b"text\n" * 50,  # 7 NULs: fewer than 8, repaired instead
        b"\x00" * 8 + b"x" * 100,  # 8 NULs, but under 10% of the characters
        ("\ufffd" * 50 + "text").encode(),  # U+FFFD written in the file is text, not a bad byte
        "中国人".encode() * 10 + "中".encode()[:2],  # a character cut by the end of the sample
        b"\xff" * 7 + b"x" * 10,  # 7 bad bytes: too few, whatever the share
    ],
)
def test_text_does_not_look_binary(head):
    assert not looks_binary(head)


@pytest.mark.parametrize(
    "head",
    [
        b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8,
        bytes(range(256)) * 32,
        gzip.compress(TEXT.encode())[:HEAD_BYTES],  # compressed data without its extension
        ("hello world, 中国人。\n" * 50).encode("utf-16"),  # UTF-16 text: a NUL in every ASCII code unit
        b"\x00" * 9 + b"x" * 50,
        b"\xff" * 20 + b"x" * 100,
    ],
)
def test_binary_data_looks_binary(head):
    assert looks_binary(head)


def test_the_thresholds_are_8_bad_and_over_10_percent():
    assert looks_binary(b"\x00" * 8 + b"x" * 71)  # 8 of 79 characters
    assert not looks_binary(b"\x00" * 8 + b"x" * 72)  # 8 of 80: exactly 10% is not more
    assert not looks_binary(b"\x00" * 7)  # 100%, but only 7


def table(path: Path, rows: int) -> Path:
    pq.write_table(pa.table({"text": [f"文档{i}" for i in range(rows)]}), path)
    return path


def test_file_status(tmp_path):
    text = tmp_path / "a.txt"
    text.write_text(TEXT, encoding="utf-8")
    empty = tmp_path / "b.txt"
    empty.write_bytes(b"")
    binary = tmp_path / "c.txt"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 64)
    packed = tmp_path / "d.txt.gz"
    packed.write_bytes(gzip.compress(TEXT.encode()))
    packed_empty = tmp_path / "e.txt.gz"
    packed_empty.write_bytes(gzip.compress(b""))
    truncated = tmp_path / "f.txt.gz"
    truncated.write_bytes(gzip.compress(TEXT.encode())[:30])
    not_gzip = tmp_path / "g.txt.gz"
    not_gzip.write_text(TEXT, encoding="utf-8")
    packed_binary = tmp_path / "h.bin.xz"
    packed_binary.write_bytes(lzma.compress(bytes(range(256)) * 64))
    broken_table = tmp_path / "k.parquet"
    broken_table.write_bytes(b"not parquet at all")
    want = {
        text: "ok",
        empty: "empty",
        binary: "binary",
        packed: "ok",
        packed_empty: "empty",
        truncated: "unreadable",
        not_gzip: "unreadable",
        packed_binary: "binary",
        table(tmp_path / "i.parquet", 3): "ok",
        table(tmp_path / "j.parquet", 0): "empty",
        broken_table: "unreadable",
        tmp_path / "missing.txt": "unreadable",
        Path("hf:someone/corpus:train"): "ok",  # a streamed dataset is not read to find out
    }
    assert {p.name: file_status(p) for p in want} == {p.name: s for p, s in want.items()}
