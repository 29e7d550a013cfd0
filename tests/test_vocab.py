"""`vocab`: a WordPiece vocab trained with `tokenizers` that BertTokenizer.from_pretrained loads in full."""

from __future__ import annotations

import gzip
import json

from prep_fixtures import cli, clue_corpus, read_split
from transformers import BertTokenizer


def test_vocab_round_trip_and_use_in_prepare(tmp_path, capsys):
    docs = clue_corpus(tmp_path / "in" / "a.txt", 300, seed=5)
    (tmp_path / "in" / "b.txt.gz").write_bytes(
        gzip.compress("英文单词 tokenization tokenizer tokens\n".encode() * 50)
    )
    out = tmp_path / "vocab"
    assert (
        cli("vocab", "--input", str(tmp_path / "in"), "--output", str(out), "--vocab-size", "1000", "--quiet")
        == 0
    )
    lines = (out / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert lines[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert 300 < len(lines) <= 1000 and len(set(lines)) == len(lines)
    tok = BertTokenizer.from_pretrained(str(out))
    assert len(tok) == len(lines)  # the full vocab, not transformers 5's 5-token fallback
    assert (tok.pad_token_id, tok.unk_token_id, tok.cls_token_id, tok.sep_token_id, tok.mask_token_id) == (
        0,
        1,
        2,
        3,
        4,
    )
    assert json.loads((out / "special_tokens_map.json").read_text())["mask_token"] == "[MASK]"
    assert json.loads((out / "tokenizer_config.json").read_text())["do_lower_case"] is True
    # Chinese characters are single tokens, English is split into word pieces, nothing common is [UNK]
    text = docs[0][0]
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.unk_token_id not in ids[:10]
    pieces = tok.tokenize("tokenizationtokens")
    assert len(pieces) >= 2 and all(p.startswith("##") for p in pieces[1:]) and "[UNK]" not in pieces
    capsys.readouterr()
    assert (
        cli(
            "prepare",
            "--input",
            str(tmp_path / "in" / "a.txt"),
            "--tokenizer",
            str(out),
            "--output",
            str(tmp_path / "shards"),
            "--quiet",
            "--seq-length",
            "64",
        )
        == 0
    )
    assert read_split(tmp_path / "shards" / "train")
    assert cli("vocab", "--input", str(tmp_path / "in"), "--output", str(out)) == 2  # not empty: refused
    assert cli("vocab", "--input", str(tmp_path / "missing"), "--output", str(tmp_path / "v2")) == 2
