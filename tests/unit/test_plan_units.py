"""``data_prep.plan_units``: the inputs cut into units of work. A small, compressed or table file (or a
``hf:`` dataset) is one whole-file unit; a big text file is cut into back-to-back byte ranges of about
``unit_bytes``, each cut just after a newline (``lines``, ``jsonl``) or just before a blank line
(``clue``), so that the ranges' documents are exactly the whole file's; a separator that straddles two
reads is still found."""

from __future__ import annotations

import gzip
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import data_prep.plan_units as plan_units
from data_prep.plan_units import Unit, plan_file, whole_file


def corpus(path: Path, docs: int, seed: int = 0) -> bytes:
    """Documents of 1-4 lines of varied length, separated by blank lines (the clue layout)."""
    rng = random.Random(seed)
    text = "".join(
        "".join(
            "中国人我们好" * rng.randint(0, 9) + "x" * rng.randint(1, 40) + "\n"
            for _ in range(rng.randint(1, 4))
        )
        + "\n"
        for _ in range(docs)
    )
    path.write_text(text, encoding="utf-8")
    return path.read_bytes()


def reference_cuts(data: bytes, unit_bytes: int, sep: bytes) -> list[int]:
    """What the docstring promises, by brute force: cut i is the first p >= max(cut i-1 + 1, i * unit_bytes)
    with sep at p - 1."""
    cuts = [0]
    while True:
        p = max(cuts[-1] + 1, len(cuts) * unit_bytes)
        while p < len(data) and data[p - 1 : p - 1 + len(sep)] != sep:
            p += 1
        if p >= len(data) or data[p - 1 : p - 1 + len(sep)] != sep:
            return cuts
        cuts.append(p)


def documents(data: bytes) -> list[bytes]:
    return [d.strip(b"\n") for d in data.split(b"\n\n") if d.strip(b"\n")]


@pytest.mark.parametrize("fmt", ["clue", "lines", "jsonl"])
@pytest.mark.parametrize("unit_bytes", [1, 97, 1000, 5000])
@pytest.mark.parametrize("block", [None, 1, 2, 7])
def test_ranges_tile_the_file_and_cut_at_document_ends(tmp_path, monkeypatch, fmt, unit_bytes, block):
    if block:  # tiny reads: a "\n\n" split by two reads must still be found
        monkeypatch.setattr(plan_units, "BLOCK_BYTES", block)
    path = tmp_path / "big.txt"
    data = corpus(path, 60)
    units = plan_file(3, path, fmt, unit_bytes)
    sep = b"\n\n" if fmt == "clue" else b"\n"
    assert [u.start for u in units] == reference_cuts(data, unit_bytes, sep)
    assert len(units) > 1
    for i, u in enumerate(units):
        assert (u.file_index, u.range_index, u.path, u.fmt) == (3, i, str(path), fmt)
        end = len(data) if u.end is None else u.end
        assert u.size == end - u.start > 0
        assert u.is_last == (i == len(units) - 1)
        if i:
            assert u.start == units[i - 1].end
            assert data[u.start - 1 : u.start - 1 + len(sep)] == sep
    assert sum(u.size for u in units) == len(data)
    pieces = [data[u.start : u.end] for u in units]
    assert all(p.endswith(b"\n") for p in pieces)
    if fmt == "clue":  # each range starts at a blank line (or the file's start): documents are never split
        assert all(p.startswith(b"\n") for p in pieces[1:])
        assert [d for p in pieces for d in documents(p)] == documents(data)


def test_a_range_is_about_unit_bytes(tmp_path):
    path = tmp_path / "big.txt"
    data = corpus(path, 400)
    units = plan_file(0, path, "lines", 2000)
    assert len(units) == pytest.approx(len(data) / 2000, abs=1)
    assert all(2000 - 210 < u.size < 2000 + 210 for u in units[:-1])  # a line is at most 204 bytes


def test_no_separator_after_the_target_leaves_one_unit(tmp_path):
    path = tmp_path / "one.txt"
    path.write_bytes(b"first line\n" + b"y" * 500 + b"\n")  # no blank line at all
    assert [(u.start, u.end) for u in plan_file(0, path, "clue", 10)] == [(0, None)]
    assert [(u.start, u.end) for u in plan_file(0, path, "lines", 10)] == [(0, 11), (11, None)]


def test_what_is_never_cut(tmp_path):
    small = tmp_path / "small.txt"
    data = corpus(small, 5)
    assert plan_file(1, small, "clue", len(data)) == [Unit(1, 0, str(small), 0, None, len(data), "clue")]
    packed = tmp_path / "big.txt.gz"
    packed.write_bytes(gzip.compress(corpus(tmp_path / "x.txt", 200)))
    assert plan_file(2, packed, "lines", 10) == [
        Unit(2, 0, str(packed), 0, None, packed.stat().st_size, "lines")
    ]
    table = tmp_path / "rows.PARQUET"
    pq.write_table(pa.table({"text": ["一\n\n二"] * 500}), table)
    assert plan_file(4, table, "jsonl", 10) == [
        Unit(4, 0, str(table), 0, None, table.stat().st_size, "table")
    ]
    stream = Path("hf:someone/corpus:train")
    assert plan_file(5, stream, "lines", 10) == [Unit(5, 0, str(stream), 0, None, 0, "stream")]
    assert whole_file(6, small, "lines") == Unit(6, 0, str(small), 0, None, len(data), "lines")


def test_unit_name_and_last():
    unit = Unit(12, 345, "a.txt", 10, 20, 10, "lines")
    assert unit.name == "u0000012.00345" and not unit.is_last
    assert Unit(0, 0, "a.txt", 0, None, 5, "clue").name == "u0000000.00000"
    assert Unit(0, 0, "a.txt", 0, None, 5, "clue").is_last
    names = [Unit(f, r, "a", 0, None, 1, "lines").name for f in (2, 10) for r in (3, 20)]
    assert names == sorted(names)  # the names sort in plan order
