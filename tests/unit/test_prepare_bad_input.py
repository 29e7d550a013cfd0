"""`prepare` on bad input: repaired or skipped and counted; user mistakes and a full disk exit with 2."""

from __future__ import annotations

import errno
import functools
import gzip
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import HANZI, cli, prepare, read_split, stream_of

import data_prep.read
import data_prep.shards

prepare = functools.partial(prepare, defaults=("--valid-ratio", "0"))


def test_bad_files_are_repaired_or_skipped_and_counted(tmp_path, vocab, hf, capsys):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a_good.txt").write_text("中国人。\n我们好。\n\n大学生。\n", encoding="utf-8")
    (src / "b_invalid_utf8.txt").write_bytes(
        "中国".encode() + b"\xff\xfe" + "人。\n".encode() + b"\xe4\xb8\n\n"
    )
    (src / "c_controls.txt").write_bytes("中\x00国\x01人\x7f。\r\n\r\n大\x00学\n".encode())
    (src / "d_empty.txt").write_bytes(b"")
    (src / "e_no_final_newline.txt").write_text("中国人。\n\n最后一行没有换行", encoding="utf-8")
    (src / "f_binary.bin").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 64)
    noise = "".join(random.Random(0).choices(HANZI, k=20000)).encode()
    (src / "g_truncated.txt.gz").write_bytes(gzip.compress(noise)[:8000])
    out = tmp_path / "out"
    assert prepare(vocab, [src], out) == 0
    err = capsys.readouterr().err
    assert "skipped binary file" in err and "f_binary.bin" in err and "skipped unreadable file" in err
    m = json.loads((out / "manifest.json").read_text())
    r = m["repairs"]
    assert r["invalid_utf8_chars"] == 3  # \xff, \xfe, and the cut sequence \xe4\xb8
    assert r["control_chars"] == 4
    assert (r["empty_files"], r["binary_files_skipped"], r["unreadable_files_skipped"]) == (1, 1, 1)
    assert r["missing_final_newline"] == 1
    status = {Path(s["path"]).name: s["status"] for s in m["sources"]}
    assert status == {
        "a_good.txt": "ok",
        "b_invalid_utf8.txt": "ok",
        "c_controls.txt": "ok",
        "d_empty.txt": "empty",
        "e_no_final_newline.txt": "ok",
        "f_binary.bin": "binary",
        "g_truncated.txt.gz": "unreadable",
    }
    texts = [
        ["中国人。", "我们好。"],
        ["大学生。"],
        ["中国\ufffd\ufffd人。", "\ufffd"],
        ["中\x00国\x01人\x7f。\r"],
        ["大\x00学"],
        ["中国人。"],
        ["最后一行没有换行"],
    ]
    expected = [i for doc in texts for line in doc for i in hf(line, add_special_tokens=False)["input_ids"]]
    assert stream_of(read_split(out / "train"))[0] == expected
    assert m["counts"]["train"]["documents"] == 7


def test_a_huge_line_without_newline_is_cut_in_bounded_pieces(tmp_path, vocab, hf, monkeypatch):
    monkeypatch.setattr(data_prep.read, "LINE_LIMIT", 5000)
    line = "".join(("中国人 hello world 我们" if i % 7 else "x" * 30) for i in range(3000))
    (tmp_path / "big.txt").write_text(line, encoding="utf-8")
    out = tmp_path / "out"
    assert prepare(vocab, [tmp_path / "big.txt"], out, "--seq-length", "128") == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["repairs"]["long_lines_cut"] >= len(line) // 5000
    assert m["repairs"]["missing_final_newline"] == 1
    # cut after a space or a CJK character, so the ids are still exactly those of the whole line
    assert stream_of(read_split(out / "train"))[0] == hf(line, add_special_tokens=False)["input_ids"]


def test_bad_jsonl_lines_are_counted(tmp_path, vocab):
    (tmp_path / "a.jsonl").write_text(
        '{"text": "中国人。"}\nnot json\n{"other": 1}\n[1, 2]\n{"text": 5}\n{"text": "\\ud800我们"}\n',
        encoding="utf-8",
    )
    out = tmp_path / "out"
    assert prepare(vocab, [tmp_path / "a.jsonl"], out, "--format", "jsonl") == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["repairs"]["bad_jsonl_lines"] == 4 and m["repairs"]["invalid_utf8_chars"] == 1
    assert m["counts"]["train"]["documents"] == 2


def test_a_deeply_nested_jsonl_line_is_a_counted_bad_line(tmp_path, vocab):
    deep = '{"text": "a", "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    (tmp_path / "a.jsonl").write_text(f'{deep}\n{{"text": "中国人。"}}\n', encoding="utf-8")
    out = tmp_path / "out"
    assert prepare(vocab, [tmp_path / "a.jsonl"], out, "--format", "jsonl") == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["repairs"]["bad_jsonl_lines"] == 1 and m["counts"]["train"]["documents"] == 1


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "glob",
        "nonempty",
        "is_file",
        "part",
        "format",
        "seq",
        "resume_other",
        "no_vocab",
        "resume_nothing",
    ],
)
def test_user_errors_exit_2_with_one_line(tmp_path, vocab, capsys, case):
    good = tmp_path / "a.txt"
    good.write_text("中国人。\n", encoding="utf-8")
    out = tmp_path / "out"
    args = {
        "missing": ([tmp_path / "nope.txt"], []),
        "glob": ([tmp_path / "*.none"], []),
        "part": ([good], ["--part", "3/2"]),
        "format": ([good], ["--format", "xml"]),
        "seq": ([good], ["--seq-length", "100000"]),
    }
    if case == "nonempty":
        out.mkdir()
        (out / "x").write_text("keep me")
    elif case == "is_file":
        out.write_text("a file")
    elif case == "resume_other":
        assert prepare(vocab, [good], out) == 0
        (out / "manifest.json").unlink()
        (out / ".prep").mkdir()
        (out / ".prep" / "plan.json").write_text('{"plan_sha256": "other", "part": null}')
        args[case] = ([good], ["--resume"])
    elif case == "resume_nothing":
        out.mkdir()
        (out / "x").write_text("keep me")
        args[case] = ([good], ["--resume"])
    capsys.readouterr()
    if case == "no_vocab":
        (tmp_path / "empty").mkdir()
        rc = cli(
            "prepare", "--input", str(good), "--tokenizer", str(tmp_path / "empty"), "--output", str(out)
        )
    else:
        inputs, extra = args.get(case, ([good], []))
        rc = prepare(vocab, inputs, out, *extra)
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("bart-data: error: ") and err.count("\n") == 1 and "Traceback" not in err
    if case == "nonempty":
        assert (out / "x").read_text() == "keep me" and sorted(p.name for p in out.iterdir()) == ["x"]


@pytest.mark.faults  # counted by bench/faults.py
def test_disk_full_is_a_one_line_error_and_leaves_no_valid_looking_output(
    tmp_path, vocab, capsys, monkeypatch
):
    good = tmp_path / "a.txt"
    good.write_text("中国人。\n\n我们好。\n\n" * 200, encoding="utf-8")

    def full(self, *a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(data_prep.shards.UnitWriter, "close", full)
    out = tmp_path / "out"
    capsys.readouterr()
    assert prepare(vocab, [good], out) == 2
    err = capsys.readouterr().err
    assert "disk full" in err and "--resume" in err and err.count("\n") == 1
    assert not (out / "manifest.json").exists() and not list(out.rglob("*.arrow"))
    monkeypatch.undo()
    assert prepare(vocab, [good], out, "--resume") == 0  # then it can be finished
    assert json.loads((out / "manifest.json").read_text())["counts"]["train"]["documents"] == 400


def test_console_entry_point_exit_status(tmp_path):
    """The real `python -m data_prep` entry point: exit status 2 and one line on stderr."""
    pytest.importorskip("data_prep.cli.noise", reason="the noise subcommand is not there yet")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "data_prep",
            "prepare",
            "--input",
            str(tmp_path / "missing.txt"),
            "--tokenizer",
            str(tmp_path),
            "--output",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"bart-data: error: input path does not exist: {tmp_path}/missing.txt"
    ]


def test_fewer_files_than_parts_says_so_and_the_empty_part_still_merges(tmp_path, vocab, capsys):
    corpus = tmp_path / "a.txt"
    corpus.write_text("中国人。\n我们好。\n\n大学生。\n", encoding="utf-8")
    errs = []
    for i in (1, 2):
        assert prepare(vocab, [corpus], tmp_path / f"p{i}", "--part", f"{i}/2") == 0
        errs.append(capsys.readouterr().err)
    assert "warning: --part 1/2 gets none of the 1 input file (parts are whole files" in errs[0]
    assert "warning: 1 input file for 2 parts: parts are whole files, so some parts are empty" in errs[1]
    assert cli("merge", "--output", str(tmp_path / "m"), str(tmp_path / "p1"), str(tmp_path / "p2")) == 0
    assert prepare(vocab, [corpus], tmp_path / "whole") == 0
    merged, whole = (json.loads((tmp_path / d / "manifest.json").read_text()) for d in ("m", "whole"))
    assert merged["counts"] == whole["counts"] and merged["counts"]["train"]["documents"] == 2
