"""``data_prep.read``: a unit read as bounded blocks of repaired text. Blocks are whole lines ending with a
newline, and their byte counts add up to the unit's input bytes (compressed bytes for a compressed file);
invalid UTF-8 becomes U+FFFD and is counted (a U+FFFD in the file is not, even split across reads); a
missing final newline is added and counted in the last unit only; a line without a newline for too long is
cut where ``cut_line`` says; a byte range reads only its bytes; a file that cannot be read to its end
raises ``UnreadableInput``. ``jsonl_to_clue`` / ``record_to_clue`` turn records into clue-layout
documents, counting bad ones; ``clue_blocks`` gives a table's rows exactly as the same records in a jsonl
file, and a long cell is cut as a long line."""

from __future__ import annotations

import bz2
import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import data_prep.read as read
import data_prep.tables
from data_prep.manifest import Repairs
from data_prep.plan_units import Unit, plan_file, whole_file
from data_prep.read import UnreadableInput, clue_blocks, jsonl_to_clue, read_blocks, record_to_clue

TEXT = "".join(
    f"第{i}行：中国人我们好 hello {'x' * (i % 13)}\n" + ("\n" if i % 4 == 3 else "") for i in range(300)
)


def at_limit(text: str, limit: int) -> int:
    return limit


def blocks(unit: Unit, block_bytes: int = 1 << 20, line_limit: int | None = None, cut=at_limit):
    repairs = Repairs()
    got = list(read_blocks(unit, repairs, cut, block_bytes=block_bytes, line_limit=line_limit))
    return [text for text, _ in got], sum(n for _, n in got), repairs


def file_unit(path: Path, fmt: str = "lines") -> Unit:
    return whole_file(0, path, fmt)


@pytest.mark.parametrize("block_bytes", [1, 5, 64, 1 << 20])
@pytest.mark.parametrize(
    ("suffix", "compress"), [("", bytes), (".gz", gzip.compress), (".bz2", bz2.compress)]
)
def test_blocks_are_whole_lines_and_count_every_input_byte(tmp_path, block_bytes, suffix, compress):
    path = tmp_path / f"a.txt{suffix}"
    path.write_bytes(compress(TEXT.encode()))
    texts, nbytes, repairs = blocks(file_unit(path), block_bytes)
    assert "".join(texts) == TEXT
    assert all(t.endswith("\n") for t in texts if t)
    assert nbytes == path.stat().st_size  # the bytes read from the file, compressed or not
    assert repairs == Repairs()
    if block_bytes == 1 << 20 and not suffix:
        assert len(texts) == 1


@pytest.mark.parametrize("block_bytes", [1, 2, 3, 1 << 20])
def test_invalid_utf8_is_replaced_and_counted_but_a_real_replacement_char_is_not(tmp_path, block_bytes):
    path = tmp_path / "a.txt"
    path.write_bytes(
        "中国".encode() + b"\xff\xfe" + "人\n".encode() + b"\xe4\xb8\n" + "\ufffd真的\ufffd\n".encode()
    )
    texts, _, repairs = blocks(file_unit(path), block_bytes)
    assert "".join(texts) == "中国\ufffd\ufffd人\n\ufffd\n\ufffd真的\ufffd\n"
    assert repairs.invalid_utf8_chars == 3  # \xff, \xfe and the cut sequence \xe4\xb8
    assert repairs == Repairs(invalid_utf8_chars=3)


def test_a_missing_final_newline_is_added_and_counted_in_the_last_unit_only(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes(b"one\ntwo\nthree")
    texts, nbytes, repairs = blocks(file_unit(path))
    assert "".join(texts) == "one\ntwo\nthree\n" and nbytes == 13
    assert repairs == Repairs(missing_final_newline=1)
    first = Unit(0, 0, str(path), 0, 4, 4, "lines")
    last = Unit(0, 1, str(path), 4, None, 9, "lines")
    assert blocks(first)[0] == ["one\n"] and blocks(first)[2] == Repairs()
    texts, nbytes, repairs = blocks(last)
    assert "".join(texts) == "two\nthree\n" and nbytes == 9 and repairs.missing_final_newline == 1
    ends = Unit(0, 0, str(path), 0, 6, 6, "lines")  # a range that ends inside a line: still a whole line
    assert "".join(blocks(ends)[0]) == "one\ntw\n" and blocks(ends)[2] == Repairs()
    path.write_bytes(b"one\n")
    assert blocks(file_unit(path))[2] == Repairs()
    path.write_bytes(b"")
    assert blocks(file_unit(path)) == ([], 0, Repairs())


@pytest.mark.parametrize("fmt", ["clue", "lines"])
def test_the_ranges_of_a_file_read_as_the_whole_file(tmp_path, fmt):
    path = tmp_path / "big.txt"
    path.write_text(TEXT, encoding="utf-8")
    units = plan_file(0, path, fmt, 700)
    assert len(units) > 5
    texts = []
    for unit in units:
        got, nbytes, repairs = blocks(unit, block_bytes=64)
        assert nbytes == unit.size and repairs == Repairs()
        texts.append("".join(got))
    assert "".join(texts) == TEXT


def test_a_long_line_is_cut_where_cut_line_says(tmp_path):
    path = tmp_path / "a.txt"
    original = "x" * 35 + "\nshort\n" + "y" * 25
    path.write_text(original, encoding="utf-8")
    calls = []

    def cut(text: str, limit: int) -> int:
        calls.append((len(text), limit))
        return limit - 3

    texts, nbytes, repairs = blocks(file_unit(path), block_bytes=4, line_limit=10, cut=cut)
    out = "".join(texts)
    assert calls and all(n > 10 and limit == 10 for n, limit in calls)
    assert repairs == Repairs(long_lines_cut=len(calls), missing_final_newline=1)
    assert out.replace("\n", "") == original.replace("\n", "")
    assert out.count("\n") == original.count("\n") + len(calls) + 1  # a newline per cut, and the final one
    assert all(len(line) <= 10 + 4 for line in out.splitlines())  # within the limit plus one read
    assert "short" in out.splitlines() and nbytes == len(original)


def test_the_default_line_limit_is_line_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(read, "LINE_LIMIT", 8)
    path = tmp_path / "a.txt"
    path.write_text("z" * 30, encoding="utf-8")
    texts, _, repairs = blocks(file_unit(path), block_bytes=3)
    assert repairs.long_lines_cut == 3 and "".join(texts) == "zzzzzzzz\n" * 3 + "zzzzzz\n"


def test_what_cannot_be_read_to_its_end_raises_unreadable_input(tmp_path):
    truncated = tmp_path / "a.txt.gz"
    truncated.write_bytes(gzip.compress(TEXT.encode() * 10)[:500])
    not_gzip = tmp_path / "b.txt.gz"
    not_gzip.write_text(TEXT, encoding="utf-8")
    for path in (truncated, not_gzip):
        with pytest.raises(UnreadableInput):
            blocks(file_unit(path))
    with pytest.raises(UnreadableInput):  # gone since it was planned
        blocks(Unit(0, 0, str(tmp_path / "missing.txt"), 0, None, 10, "lines"))


def test_jsonl_lines_become_clue_documents_and_bad_lines_are_counted():
    deep = '{"text": "a", "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    block = "\n".join(
        [
            json.dumps({"text": "中国人。\n\n我们好。\n"}, ensure_ascii=False),
            "",
            "   ",
            "not json",
            '{"other": "no text field"}',
            "[1, 2]",
            '"a string"',
            '{"text": 5}',
            '{"text": null}',
            deep,
            '{"text": "   \\n\\n"}',  # blank: no document, not a bad line
            '{"text": "\\ud800孤"}',
            '{"text": "最后"}',
        ]
    )
    repairs = Repairs()
    assert jsonl_to_clue(block, "text", repairs) == "中国人。\n我们好。\n\n\ufffd孤\n\n最后\n\n"
    assert repairs == Repairs(bad_jsonl_lines=7, invalid_utf8_chars=1)
    repairs = Repairs()
    assert jsonl_to_clue('{"content": "一"}\n{"text": "二"}\n', "content", repairs) == "一\n\n"
    assert repairs.bad_jsonl_lines == 1


@pytest.mark.parametrize(
    ("record", "clue", "bad", "lone"),
    [
        ("一\n二", "一\n二\n\n", 0, 0),
        ("\n\n一\n \n\t\n二\n\n", "一\n二\n\n", 0, 0),
        ("", "", 0, 0),
        (" \n ", "", 0, 0),
        ("a\ud800b\udfff", "a\ufffdb\ufffd\n\n", 0, 2),
        (None, "", 1, 0),
        (3.5, "", 1, 0),
        (["一"], "", 1, 0),
    ],
)
def test_record_to_clue(record, clue, bad, lone):
    repairs = Repairs()
    assert record_to_clue(record, repairs) == clue
    assert repairs == Repairs(bad_jsonl_lines=bad, invalid_utf8_chars=lone)


RECORDS = ["第一篇。\n第二行。", None, "", "第三篇", 7, "\ud800", "最后一篇。\n\n还有一行。"]


def collect(unit: Unit, text_field: str = "text") -> tuple[str, int, Repairs]:
    repairs = Repairs()
    got = list(clue_blocks(unit, text_field, repairs, at_limit))
    return "".join(t for t, _ in got), sum(n for _, n in got), repairs


def test_clue_blocks_of_each_layout(tmp_path):
    clue = tmp_path / "a.txt"
    clue.write_text(TEXT, encoding="utf-8")
    assert collect(whole_file(0, clue, "clue")) == (TEXT, clue.stat().st_size, Repairs())
    assert collect(whole_file(0, clue, "lines")) == (TEXT, clue.stat().st_size, Repairs())
    jsonl = tmp_path / "a.jsonl.gz"
    lines = [json.dumps({"text": r, "id": i}) for i, r in enumerate(RECORDS)]
    jsonl.write_bytes(gzip.compress("\n".join(lines).encode()))  # no final newline either
    text, nbytes, repairs = collect(whole_file(0, jsonl, "jsonl"))
    assert text == "第一篇。\n第二行。\n\n第三篇\n\n\ufffd\n\n最后一篇。\n还有一行。\n\n"
    assert nbytes == jsonl.stat().st_size
    assert repairs == Repairs(bad_jsonl_lines=2, invalid_utf8_chars=1, missing_final_newline=1)


@pytest.mark.parametrize("suffix", [".parquet", ".arrow"])
def test_a_tables_rows_read_as_the_same_records_in_jsonl(tmp_path, monkeypatch, suffix):
    monkeypatch.setattr(data_prep.tables, "TABLE_BATCH_ROWS", 3)  # several batches
    records = [r for r in RECORDS if not isinstance(r, int) and r != "\ud800"] * 3  # Arrow holds UTF-8
    table = pa.table({"id": list(range(len(records))), "text": records})
    path = tmp_path / f"rows{suffix}"
    if suffix == ".parquet":
        pq.write_table(table, path)
    else:
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text("".join(json.dumps({"text": r}) + "\n" for r in records), encoding="utf-8")
    unit = whole_file(0, path, "jsonl")
    assert unit.fmt == "table"
    text, nbytes, repairs = collect(unit)
    want, _, want_repairs = collect(whole_file(0, jsonl, "jsonl"))
    assert text == want and repairs == want_repairs and repairs.bad_jsonl_lines == 3
    assert nbytes == unit.size == path.stat().st_size  # the progress adds up to the file's size

    text, _, repairs = collect(unit, text_field="body")  # no such column: every row is a bad record
    assert text == "" and repairs == Repairs(bad_jsonl_lines=len(records))


def test_a_long_cell_is_cut_as_a_long_line(tmp_path, monkeypatch):
    monkeypatch.setattr(read, "LINE_LIMIT", 10)
    path = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"text": ["x" * 35 + "\n短", "短行"]}), path)
    text, _, repairs = collect(whole_file(0, path, "lines"))
    assert text == "xxxxxxxxxx\n" * 3 + "xxxxx\n短\n\n短行\n\n"
    assert repairs == Repairs(long_lines_cut=3)


def test_a_broken_table_is_unreadable(tmp_path):
    path = tmp_path / "rows.parquet"
    path.write_bytes(b"PAR1 but not really parquet")
    with pytest.raises(UnreadableInput):
        collect(whole_file(0, path, "lines"))
