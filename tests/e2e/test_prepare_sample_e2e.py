"""On the real CLUECorpusSmall sample and BERT-Chinese vocab: >= 95% fill, and exactly BertTokenizer's ids."""

from __future__ import annotations

import json

import pytest
from helpers import REAL_VOCAB, SAMPLE, cli, needs_shared, read_split, stream_of
from transformers import BertTokenizer

pytestmark = needs_shared


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    out = tmp_path_factory.mktemp("sample") / "out"
    assert (
        cli(
            "prepare",
            "--input",
            str(SAMPLE),
            "--tokenizer",
            str(REAL_VOCAB),
            "--output",
            str(out),
            "--quiet",
            "--valid-ratio",
            "0",
        )
        == 0
    )
    return out


def test_fill_is_at_least_95_percent_at_512(prepared):
    m = json.loads((prepared / "manifest.json").read_text())
    c = m["counts"]["train"]
    assert c["documents"] == 2500
    fill = c["ids"] / (c["examples"] * 512)
    assert fill >= 0.95 and m["fill"]["train"]["fill_ratio"] == pytest.approx(fill, abs=1e-6)
    rows = read_split(prepared / "train")
    assert all(len(r["input_ids"]) <= 512 for r in rows)
    assert sum(len(r["input_ids"]) for r in rows[:-1]) / ((len(rows) - 1) * 512) >= 0.95


def test_every_document_is_exactly_bert_tokenizer_ids_in_order(prepared):
    hf = BertTokenizer.from_pretrained(str(prepared / "tokenizer"))
    assert len(hf) == 21128 and hf.convert_tokens_to_ids(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]) == [
        0,
        100,
        101,
        102,
        103,
    ]
    docs = [d for d in SAMPLE.read_text(encoding="utf-8").split("\n\n") if d.strip()]
    stream, piece_ends = stream_of(read_split(prepared / "train"))
    pos = 0
    for doc in docs:
        ids = [i for line in doc.split("\n") for i in hf(line, add_special_tokens=False)["input_ids"]]
        assert stream[pos : pos + len(ids)] == ids
        pos += len(ids)
        assert pos in piece_ends  # the document ends with a [SEP]
    assert pos == len(stream)
