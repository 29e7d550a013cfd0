"""``data_prep.manifest``: the counts kept while preparing and how they are printed. ``add`` and ``total``
sum every field; a unit's stats survive a round trip through a dict (the JSON of its marker); the fill is
real ids over examples x seq_length; the manifest starts with its header keys in a fixed order; the
repairs line lists the non-zero counts only; the summary table shows both splits, the rate of this run
and the repairs only when there are any."""

from __future__ import annotations

import dataclasses
import json

from data_prep.manifest import (
    FORMAT_VERSION,
    HEADER_KEYS,
    Repairs,
    SplitCounts,
    UnitStats,
    build_manifest,
    fill_stats,
    print_summary,
    repairs_line,
    total,
)


def numbered(cls, start: int):
    """A counts dataclass whose fields are start, start + 1, ... (so that a mixed-up field shows)."""
    return cls(*range(start, start + len(dataclasses.fields(cls))))


def test_add_sums_every_field():
    for cls in (SplitCounts, Repairs):
        a, b = numbered(cls, 1), numbered(cls, 100)
        a.add(b)
        assert dataclasses.astuple(a) == tuple(101 + 2 * i for i in range(len(dataclasses.fields(cls))))
        assert b == numbered(cls, 100)  # the other one is left as it was


def test_total_sums_the_units_and_is_ok():
    units = [
        UnitStats(10, "binary", numbered(SplitCounts, 1), numbered(SplitCounts, 10), numbered(Repairs, 5)),
        UnitStats(7, "ok", numbered(SplitCounts, 2), SplitCounts(), Repairs(empty_files=1)),
        UnitStats(),
    ]
    got = total(units)
    assert got.chars == 17 and got.status == "ok"
    assert got.train == SplitCounts(*(3 + 2 * i for i in range(6)))
    assert got.valid == numbered(SplitCounts, 10)
    want = numbered(Repairs, 5)
    want.empty_files += 1
    assert got.repairs == want
    assert units[2] == UnitStats() and total([]) == UnitStats()


def test_unit_stats_round_trip_through_json():
    stats = UnitStats(42, "empty", numbered(SplitCounts, 1), numbered(SplitCounts, 7), numbered(Repairs, 3))
    back = UnitStats.from_dict(json.loads(json.dumps(stats.to_dict())))
    assert back == stats and isinstance(back.repairs, Repairs) and isinstance(back.valid, SplitCounts)
    assert set(stats.to_dict()) == {"chars", "status", "train", "valid", "repairs"}


def test_fill_stats():
    assert fill_stats(SplitCounts(), 128) == {"fill_ratio": 0.0, "mean_length": 0.0}
    assert fill_stats(SplitCounts(ids=300, examples=4), 100) == {"fill_ratio": 0.75, "mean_length": 75.0}
    got = fill_stats(SplitCounts(ids=1000, examples=3), 512)
    assert got == {"fill_ratio": 0.651042, "mean_length": 333.333}  # rounded to 6 and 3 places


HEADER = {
    "part": None,
    "tokenizer": "bert",
    "vocab_sha256": "ab" * 32,
    "vocab_size": 21128,
    "seq_length": 512,
    "special_ids": {"pad": 0, "cls": 101},
    "dtype": "uint16",
    "options": {"valid_ratio": 0.01},
    "plan_sha256": "cd" * 32,
    "not_in_the_manifest": 1,
}


def test_build_manifest():
    totals = UnitStats(
        1234, "ok", SplitCounts(5, 9, 800, 1000, 4), SplitCounts(1, 2, 100, 120, 1), Repairs(empty_files=2)
    )
    sources = [{"path": "a.txt", "bytes": 1000}, {"path": "b.txt.gz", "bytes": 234}]
    m = build_manifest(HEADER, sources, totals, 512)
    assert list(m)[: len(HEADER_KEYS) + 1] == ["format_version", *HEADER_KEYS]
    assert list(m)[len(HEADER_KEYS) + 1 :] == ["counts", "fill", "repairs", "input", "sources"]
    assert m["format_version"] == FORMAT_VERSION and m["vocab_size"] == 21128 and m["part"] is None
    assert m["counts"]["train"] == dataclasses.asdict(totals.train) and m["counts"]["valid"]["examples"] == 1
    assert m["fill"]["train"] == fill_stats(totals.train, 512) and m["fill"]["valid"]["mean_length"] == 120.0
    assert m["repairs"] == dataclasses.asdict(Repairs(empty_files=2))
    assert m["input"] == {"files": 2, "bytes": 1234, "chars": 1234}
    assert m["sources"] == sources
    assert json.loads(json.dumps(m)) == m  # plain JSON


def test_repairs_line():
    assert repairs_line(dataclasses.asdict(Repairs())) == "repairs/skips: none"
    line = repairs_line(dataclasses.asdict(Repairs(invalid_utf8_chars=1234567, empty_files=1)))
    assert line == "repairs/skips: invalid_utf8_chars=1,234,567, empty_files=1"


def test_print_summary(tmp_path, capsys):
    totals = UnitStats(
        2_500_000,
        "ok",
        SplitCounts(1200, 5000, 900_000, 1_000_000, 2000),
        SplitCounts(10, 40, 7000, 8000, 16),
    )
    m = build_manifest(HEADER, [{"path": "a.txt", "bytes": 3_000_000}], totals, 512)
    print_summary(m, tmp_path / "out")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "split",
        "documents",
        "sentences",
        "tokens",
        "examples",
        "fill",
        "mean",
        "len",
    ]
    assert lines[1].split() == ["train", "1,200", "5,000", "900,000", "2,000", "97.7%", "500.0"]
    assert lines[2].split() == ["valid", "10", "40", "7,000", "16", "97.7%", "500.0"]
    assert len({len(line) for line in lines[:3]}) == 1  # the columns line up
    assert lines[1].index("1,200") + len("1,200") == lines[0].index("documents") + len("documents")  # right
    assert lines[3] == "input: 1 files, 3,000,000 bytes, 2,500,000 chars"
    assert lines[4] == f"output: {tmp_path / 'out'}" and len(lines) == 5  # no rate, no repairs

    m["repairs"]["binary_files_skipped"] = 3
    fresh = UnitStats(2_000_000, train=SplitCounts(tokens=600_000), valid=SplitCounts(tokens=200_000))
    print_summary(m, tmp_path / "out", fresh=fresh, seconds=4.0, workers=3)
    lines = capsys.readouterr().out.splitlines()
    assert lines[4] == "this run: 2,000,000 chars in 4.0s = 0.50M chars/s, 0.20M tokens/s with 3 worker(s)"
    assert lines[5] == "repairs/skips: binary_files_skipped=3"
    assert lines[6] == f"output: {tmp_path / 'out'}"
    print_summary(m, tmp_path / "out", fresh=UnitStats(), seconds=4.0)  # nothing read this run: no rate
    assert "this run" not in capsys.readouterr().out
