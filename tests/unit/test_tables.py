"""``data_prep.tables`` (through ``prepare``): parquet, Arrow and ``hf:`` datasets read exactly as the same
records in a jsonl file; bad records counted, bad ``hf:`` inputs one line."""

from __future__ import annotations

import json
import random
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import cli, document, read_split

from data_prep.inputs import expand_inputs


def records(n: int = 60) -> list[str]:
    rng = random.Random(4)
    return ["\n".join(document(rng)) for _ in range(n)]


def shards_of(vocab: Path, source: str, out: Path, *extra: str) -> tuple[dict, list, list]:
    argv = ["--input", source, "--tokenizer", str(vocab), "--output", str(out), "--quiet", *extra]
    assert cli("prepare", *argv) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    return manifest["counts"], read_split(out / "train"), read_split(out / "valid")


@pytest.fixture(scope="module")
def tables(tmp_path_factory) -> dict[str, str]:
    """The same records as jsonl, parquet, Arrow (file and stream), saved datasets and a local dataset."""
    root = tmp_path_factory.mktemp("tables")
    texts = records()
    (root / "r.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    table = pa.table({"id": list(range(len(texts))), "text": texts})
    pq.write_table(table, root / "r.parquet", row_group_size=7)
    with pa.OSFile(str(root / "file.arrow"), "wb") as sink, pa.ipc.new_file(sink, table.schema) as w:
        w.write_table(table, max_chunksize=9)
    with pa.OSFile(str(root / "stream.arrow"), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    dataset = datasets.Dataset.from_dict({"text": texts})
    dataset.save_to_disk(str(root / "saved"))
    dataset.save_to_disk(str(root / "many"), max_shard_size="2KB")  # several Arrow files, in order
    datasets.DatasetDict({"train": dataset, "test": dataset.select(range(3))}).save_to_disk(
        str(root / "dict")
    )
    (root / "local" / "data").mkdir(parents=True)  # a script-less dataset directory, streamed by datasets
    pq.write_table(table, root / "local" / "data" / "train-00000-of-00001.parquet")
    return {
        "jsonl": str(root / "r.jsonl"),
        "parquet": str(root / "r.parquet"),
        "arrow file": str(root / "file.arrow"),
        "arrow stream": str(root / "stream.arrow"),
        "save_to_disk": f"hf:{root / 'saved'}",
        "save_to_disk in shards": f"hf:{root / 'many'}",
        "DatasetDict": f"hf:{root / 'dict'}:train",
        "local dataset (streamed)": f"hf:{root / 'local'}",
    }


@pytest.mark.parametrize(
    "kind",
    ["parquet", "arrow file", "arrow stream", "save_to_disk", "DatasetDict", "local dataset (streamed)"],
)
def test_tables_and_datasets_give_the_shards_of_the_same_jsonl(tables, vocab, tmp_path, kind):
    expected = shards_of(vocab, tables["jsonl"], tmp_path / "jsonl", "--format", "jsonl")
    got = shards_of(vocab, tables[kind], tmp_path / "got")  # the default --format clue: rows are documents
    assert got == expected and expected[0]["train"]["documents"] > 40


def test_a_dataset_saved_in_shards_is_its_arrow_files_in_order(tables, vocab, tmp_path):
    spec = tables["save_to_disk in shards"]
    files = expand_inputs([spec])
    assert len(files) > 1 and {f.parent for f in files} == {Path(spec[3:])}
    assert [f.name for f in files] == sorted(f.name for f in files) and {f.suffix for f in files} == {
        ".arrow"
    }
    # each file ends its last example, as for a corpus in several files: the same documents and tokens
    expected = shards_of(vocab, tables["jsonl"], tmp_path / "jsonl", "--format", "jsonl")[0]
    got = shards_of(vocab, spec, tmp_path / "got")[0]
    keys = ("documents", "sentences", "tokens")
    assert [[c[s][k] for s in ("train", "valid") for k in keys] for c in (got, expected)] == [
        [expected[s][k] for s in ("train", "valid") for k in keys]
    ] * 2


def test_bad_table_records_are_counted(tmp_path, vocab):
    pq.write_table(pa.table({"text": ["中国人。", None, "", "我们好。\n\n大学生。"]}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"body": ["中国人。", "我们好。"]}), tmp_path / "b.parquet")  # no text column
    pq.write_table(pa.table({"text": pa.array([], pa.string())}), tmp_path / "c.parquet")
    (tmp_path / "d.parquet").write_bytes(b"PAR1 but not really")
    out = tmp_path / "out"
    assert (
        cli("prepare", "--input", str(tmp_path), "--tokenizer", str(vocab), "--output", str(out), "--quiet")
        == 0
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["repairs"]["bad_jsonl_lines"] == 3  # the null and the two rows without a text column
    status = {Path(s["path"]).name: s["status"] for s in manifest["sources"]}
    assert status == {"a.parquet": "ok", "b.parquet": "ok", "c.parquet": "empty", "d.parquet": "unreadable"}
    docs = manifest["counts"]["train"]["documents"] + manifest["counts"]["valid"]["documents"]
    assert docs == 2  # 中国人。 and 我们好。/大学生。 (one row, one document)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("dict:validation", "no split 'validation' (it has train, test)"),
        ("saved:train", "is one saved split; name it without :train"),
        ("local:nosuch", "cannot open hf:"),
    ],
)
def test_bad_hf_inputs_are_one_line_errors(tables, vocab, tmp_path, capsys, spec, message):
    root = Path(tables["jsonl"]).parent
    out = str(tmp_path / "out")
    assert cli("prepare", "--input", f"hf:{root / spec}", "--tokenizer", str(vocab), "--output", out) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and not (tmp_path / "out").exists()
