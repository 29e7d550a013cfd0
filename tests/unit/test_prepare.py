"""`prepare` end to end on a synthetic corpus: layout, exact ids, documents, formats, inputs, `inspect`;
hostile corpora (random bytes, bad encodings, a million empty lines, link loops) never crash it and lose no
document uncounted."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import json
import lzma
import os

import datasets
import pytest
from helpers import cli, clue_corpus, prepare, read_split, stream_of
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import BertTokenizer

from data_prep.__main__ import main


def doc_ids(hf, lines: list[str]) -> list[int]:
    return [i for line in lines for i in hf(line, add_special_tokens=False)["input_ids"]]


def test_layout_manifest_and_exact_ids(tmp_path, vocab, hf):
    docs = clue_corpus(tmp_path / "in" / "a.txt", 120, seed=1)
    out = tmp_path / "out"
    assert prepare(vocab, [tmp_path / "in"], out, "--seq-length", "64", "--valid-ratio", "0") == 0
    manifest = json.loads((out / "manifest.json").read_text())
    vocab_bytes = (vocab / "vocab.txt").read_bytes()
    assert manifest["vocab_sha256"] == hashlib.sha256(vocab_bytes).hexdigest()
    assert (out / "tokenizer" / "vocab.txt").read_bytes() == vocab_bytes
    assert len(BertTokenizer.from_pretrained(str(out / "tokenizer"))) == len(vocab_bytes.splitlines())
    assert manifest["special_ids"] == {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4}
    assert manifest["seq_length"] == 64 and manifest["dtype"] == "uint16"
    train = datasets.load_from_disk(str(out / "train"))
    assert train.features["input_ids"].feature.dtype == "uint16"
    rows = read_split(out / "train")
    assert len(datasets.load_from_disk(str(out / "valid"))) == 0
    c = manifest["counts"]["train"]
    assert c["examples"] == len(rows) and c["ids"] == sum(len(r["input_ids"]) for r in rows)
    assert c["documents"] == len(docs)
    assert all(len(r["input_ids"]) <= 64 for r in rows)
    # every token of every document exactly once, in order, and every document ends at a [SEP]
    expected = [doc_ids(hf, d) for d in docs]
    stream, piece_ends = stream_of(rows)
    assert stream == [i for d in expected for i in d]
    bounds, pos = set(), 0
    for d in expected:
        pos += len(d)
        bounds.add(pos)
    assert bounds <= set(piece_ends)
    assert manifest["repairs"]["long_sentences_split"] > 0 and manifest["repairs"]["long_lines_split"] > 0
    assert manifest["sources"] == [
        {
            "path": str(tmp_path / "in" / "a.txt"),
            "bytes": (tmp_path / "in" / "a.txt").stat().st_size,
            "status": "ok",
        }
    ]


def test_validation_split_is_by_whole_documents(tmp_path, vocab, hf):
    docs = clue_corpus(tmp_path / "a.txt", 200, seed=2)
    out = tmp_path / "out"
    assert prepare(vocab, [tmp_path / "a.txt"], out, "--seq-length", "64", "--valid-ratio", "0.25") == 0
    m = json.loads((out / "manifest.json").read_text())
    train, _ = stream_of(read_split(out / "train"))
    valid, _ = stream_of(read_split(out / "valid"))
    assert m["counts"]["train"]["documents"] + m["counts"]["valid"]["documents"] == len(docs)
    assert 20 < m["counts"]["valid"]["documents"] < 80
    # each document's ids are found whole in the stream of its split; the streams are those docs in order
    t = v = 0
    for d in docs:
        ids = doc_ids(hf, d)
        if train[t : t + len(ids)] == ids:
            t += len(ids)
        else:
            assert valid[v : v + len(ids)] == ids
            v += len(ids)
    assert (t, v) == (len(train), len(valid))


def test_tiny_corpus_still_gets_a_validation_document(tmp_path, vocab):
    (tmp_path / "a.txt").write_text("第一篇。\n\n第二篇。\n\n第三篇。\n", encoding="utf-8")
    out = tmp_path / "out"
    assert prepare(vocab, [tmp_path / "a.txt"], out, "--valid-ratio", "0.01") == 0
    counts = json.loads((out / "manifest.json").read_text())["counts"]
    assert counts["valid"]["documents"] == 1 and counts["train"]["documents"] == 2


def test_formats_compression_globs_and_directories(tmp_path, vocab, hf):
    texts = ["第一篇文章。很好！", "second 文章 hello world.", "第三篇，有[MASK]。"]
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.jsonl").write_text(
        "\n".join(json.dumps({"body": t, "id": i}) for i, t in enumerate(texts)) + "\n"
    )
    (src / "sub" / "b.txt.gz").write_bytes(gzip.compress("\n".join(texts).encode()))
    (src / "sub" / "c.txt.bz2").write_bytes(bz2.compress("\n".join(texts).encode()))
    (src / "sub" / "d.txt.xz").write_bytes(lzma.compress("\n".join(texts).encode()))
    expected = [hf(t, add_special_tokens=False)["input_ids"] for t in texts]

    out = tmp_path / "jsonl"
    assert (
        prepare(
            vocab, [src / "*.jsonl"], out, "--format", "jsonl", "--text-field", "body", "--valid-ratio", "0"
        )
        == 0
    )
    rows = read_split(out / "train")
    assert len(rows) == 1 and rows[0]["doc_ends"] == [
        len(expected[0]) + 1,
        len(expected[0]) + len(expected[1]) + 2,
        len(rows[0]["input_ids"]) - 1,
    ]
    assert stream_of(rows)[0] == sum(expected, [])

    out = tmp_path / "lines"
    assert prepare(vocab, [src / "sub"], out, "--format", "lines", "--valid-ratio", "0") == 0
    m = json.loads((out / "manifest.json").read_text())
    assert [s["path"].rsplit("/", 1)[1] for s in m["sources"]] == ["b.txt.gz", "c.txt.bz2", "d.txt.xz"]
    assert m["counts"]["train"]["documents"] == 9
    assert stream_of(read_split(out / "train"))[0] == sum(expected, []) * 3


def test_inspect_prints_fill_histogram_and_examples(tmp_path, vocab, capsys):
    clue_corpus(tmp_path / "a.txt", 60, seed=3)
    out = tmp_path / "out"
    assert prepare(vocab, [tmp_path / "a.txt"], out, "--seq-length", "128") == 0
    capsys.readouterr()
    assert cli("inspect", str(out), "--examples", "2") == 0
    text = capsys.readouterr().out
    m = json.loads((out / "manifest.json").read_text())
    assert (
        f"train: {m['counts']['train']['examples']:,} examples, fill {m['fill']['train']['fill_ratio']:.1%}"
        in text
    )
    assert "[CLS]" in text and "tokenizer:" in text and "repairs/skips:" in text
    assert cli("inspect", str(out), "--json") == 0
    report = json.loads(capsys.readouterr().out)
    hist = report["splits"]["train"]["histogram"]
    assert sum(b["examples"] for b in hist) == m["counts"]["train"]["examples"]
    assert report["splits"]["train"]["fill_ratio"] == pytest.approx(
        m["fill"]["train"]["fill_ratio"], abs=1e-6
    )


def test_subcommand_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["prepare", "--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "ids per example, [CLS]/[SEP] included (default: 512)" in out
    assert "--unit-mb) (default: auto)" in out and "(default: clue)" in out


@pytest.mark.parametrize(
    ("argv", "why"),
    [
        (["noise", "{shards}", "--seed", "-1"], "--seed: must be at least 0"),
        (["noise", "{shards}", "--epoch", "-2"], "--epoch: must be at least 0"),
        (["inspect", "{shards}", "--bins", "-3"], "--bins: must be at least 1"),
        (["inspect", "{shards}", "--examples", "two"], "expected an integer"),
        (
            ["prepare", "--input", "{shards}", "--tokenizer", "x", "--output", "o", "--unit-mb", "nan"],
            "--unit-mb",
        ),
        (
            ["prepare", "--input", "{shards}", "--tokenizer", "x", "--output", "o", "--unit-mb", "inf"],
            "--unit-mb",
        ),
    ],
)
def test_out_of_range_numbers_are_one_line_errors(shards, capsys, argv, why):
    assert main([a.format(shards=shards) for a in argv]) == 2
    err = capsys.readouterr().err
    assert why in err and err.count("\n") == 1 and "Traceback" not in err


def test_workers_default_to_the_usable_cores_but_never_more_than_the_units(capsys):
    from data_prep.cli.prepare import worker_count

    cores = len(os.sched_getaffinity(0))
    assert worker_count("3", [10], 16.0) == 3
    assert worker_count("auto", [1000, 2000], 16.0) == min(cores, 2)  # two small files: two units
    assert worker_count("auto", [10 * 2**20], 1.0) == min(cores, 10)
    assert worker_count("auto", [], 16.0) == 1
    for bad in ("0", "-2", "many"):
        assert main(["prepare", "--input", "x", "--tokenizer", "x", "--output", "o", "--workers", bad]) == 2
        assert "--workers must be auto or a number" in capsys.readouterr().err


# -- hostile corpora --------------------------------------------------------------------------------------


FUZZ_EXAMPLES = int(os.environ.get("BART_FUZZ_EXAMPLES", "100"))


_LINE = st.one_of(
    st.text(st.characters(codec=None, categories=None), max_size=60).map(
        lambda s: s.encode("utf-8", "surrogatepass")  # lone surrogates: invalid UTF-8 on disk
    ),
    st.binary(max_size=60),  # random bytes, NULs and all
    st.text(alphabet="中国的首都是北京人民，。", max_size=30).map(
        lambda s: s.encode("gbk")
    ),  # GBK, not UTF-8
    st.integers(1, 3000).map(lambda d: ("[" * d + "]" * d).encode()),  # deeply nested "JSON"
    st.sampled_from([b"", b" ", b"\t", "\u3000".encode(), b"\r", b"\x1c"]),  # blank lines
)


def documents_in(raw: bytes, fmt: str) -> int:
    """The documents a corpus holds, by the format's definition: a document per non-blank line
    (``lines``), or per run of non-blank lines (``clue``); blank means whitespace only."""
    filled = [bool(line.strip()) for line in raw.decode("utf-8", "replace").split("\n")]
    if fmt == "lines":
        return sum(filled)
    return sum(1 for i, f in enumerate(filled) if f and (i == 0 or not filled[i - 1]))


@pytest.mark.faults  # counted by bench/faults.py
@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    lines=st.lists(_LINE, max_size=40), fmt=st.sampled_from(["lines", "clue"]), final_newline=st.booleans()
)
def test_a_hostile_corpus_never_crashes_and_loses_no_document_uncounted(
    tmp_path_factory, vocab, capsys, lines, fmt, final_newline
):
    root = tmp_path_factory.mktemp("fuzz")
    raw = b"\n".join(line.replace(b"\n", b" ") for line in lines) + (b"\n" if final_newline else b"")
    (root / "in.txt").write_bytes(raw)
    status = prepare(vocab, [root / "in.txt"], root / "out", "--format", fmt, "--seq-length", "32")
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if status == 2:  # nothing to train on: said in one line
        assert err.count("\n") == 1, err
        assert documents_in(raw, fmt) == 0 or "binary" in err, err
        return
    assert status == 0, err
    m = json.loads((root / "out" / "manifest.json").read_text())
    if m["repairs"]["binary_files_skipped"]:
        return  # the whole file was skipped, and counted
    found = sum(m["counts"][s]["documents"] for s in ("train", "valid")) + m["repairs"]["empty_documents"]
    assert found == documents_in(raw, fmt)


@pytest.mark.faults
def test_a_million_empty_lines_and_one_document(tmp_path, vocab):
    (tmp_path / "in.txt").write_bytes(b"\n" * 1_000_000 + "中国的首都是北京。\n".encode() + b"\r\n" * 500_000)
    assert prepare(vocab, [tmp_path / "in.txt"], tmp_path / "out", "--seq-length", "32") == 0
    counts = json.loads((tmp_path / "out" / "manifest.json").read_text())["counts"]
    assert counts["train"]["documents"] + counts["valid"]["documents"] == 1


@pytest.mark.faults
def test_symlink_loops_in_the_input_are_skipped_and_counted(tmp_path, vocab, capsys):
    corpus = tmp_path / "in"
    (corpus / "d").mkdir(parents=True)
    (corpus / "d" / "a.txt").write_text("中国的首都是北京。\n", encoding="utf-8")
    (corpus / "d" / "up").symlink_to(corpus, target_is_directory=True)  # a directory loop
    (corpus / "x1").symlink_to(corpus / "x2")  # a loop of two links
    (corpus / "x2").symlink_to(corpus / "x1")
    assert prepare(vocab, [corpus], tmp_path / "out", "--seq-length", "32") == 0
    assert "2 dangling links" in capsys.readouterr().err
    m = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert m["input"]["files"] == 1 and sum(m["counts"][s]["documents"] for s in ("train", "valid")) == 1
