"""`vocab`: a WordPiece vocab trained with `tokenizers` that BertTokenizer.from_pretrained loads in full."""

from __future__ import annotations

import gzip
import json
import random
from collections import Counter

from helpers import cli, clue_corpus, read_split
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import BertWordPieceTokenizer
from transformers import BertTokenizer

from data_prep.vocab import Alphabet, scan_alphabet


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


# Characters whose normalization or pre-tokenization is unusual: accents and combining marks, İ (two
# characters when lowercased), Hangul (decomposed into jamo by NFD), compatibility ideographs, an
# extension-B ideograph, controls that are removed rather than spaced, Unicode spaces, punctuation.
_TRICKY = list(
    "中文語aZéÉİıß가힣\u0301\u0308\uf900\U00020000①ⅷ٣😀#'-_.,，。\x00\x0b\x1c\x85\xa0\u3000\u2003\t "
)
_TEXT = st.text(alphabet=st.sampled_from(_TRICKY) | st.characters(blacklist_categories=("Cs",)), max_size=40)


def _trainer_alphabet(lines: list[str]) -> tuple[set[str], set[str]]:
    """The characters and continuing characters the tokenizers trainer itself finds (no merges)."""
    tok = _new_tokenizer()
    tok.train_from_iterator(lines, vocab_size=0, min_frequency=1, special_tokens=[], show_progress=False)
    vocab = tok.get_vocab()
    return {t for t in vocab if len(t) == 1}, {t[2:] for t in vocab if t.startswith("##") and len(t) == 3}


def _new_tokenizer() -> BertWordPieceTokenizer:
    return BertWordPieceTokenizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True
    )


@settings(max_examples=150, deadline=None)
@given(st.lists(_TEXT, min_size=1, max_size=6))
def test_scan_alphabet_sees_what_the_trainer_sees(lines):
    """Counts equal a line-by-line count of the pre-tokenized words; the sets equal the trainer's own."""
    tok = _new_tokenizer()
    found = scan_alphabet(["".join(f"{line}\n" for line in lines)], tok)
    expected: Counter[str] = Counter()
    for line in lines:
        words = tok.pre_tokenizer.pre_tokenize_str(tok.normalizer.normalize_str(line))
        expected.update("".join(word for word, _ in words))
    assert found.counts == expected
    chars, continuing = _trainer_alphabet(lines)
    assert set(found.counts) == chars
    assert found.continuing == continuing


def test_alphabet_ranks_ties_by_code_point():
    alphabet = Alphabet(counts=Counter({"b": 2, "a": 2, "c": 2, "z": 5, "y": 1}))
    assert alphabet.chosen(3) == ["a", "b", "z"]
    assert alphabet.chosen(10) == ["a", "b", "c", "y", "z"]


def test_vocab_is_identical_run_to_run(tmp_path):
    """Equal counts everywhere (alphabet cut-off, merges, ## pieces): the trainer alone would order
    them by hash-map order, which differs between runs even in one process."""
    rng = random.Random(3)
    letters = "abcdefghijklmnopqrstuvwxyzéüß가나다"
    words = ["".join(rng.choice(letters) for _ in range(rng.randint(2, 7))) for _ in range(300)]
    hanzi = [chr(0x4E00 + i) for i in range(400)]
    text = "\n".join(" ".join(words[i : i + 5]) + "".join(hanzi[i : i + 3]) for i in range(0, 300, 5))
    (tmp_path / "c.txt").write_text((text + "\n\n") * 2, encoding="utf-8")
    outs = []
    for run in range(3):
        out = tmp_path / f"v{run}"
        args = ["--vocab-size", "700", "--limit-alphabet", "150", "--min-frequency", "2", "--quiet"]
        assert cli("vocab", "--input", str(tmp_path / "c.txt"), "--output", str(out), *args) == 0
        outs.append((out / "vocab.txt").read_bytes())
    assert outs[0] == outs[1] == outs[2]
    tokens = outs[0].decode().splitlines()
    chars = [t for t in tokens[5:] if len(t) == 1]
    assert tokens[5 : 5 + len(chars)] == sorted(chars) and len(chars) == 150
    assert any(t.startswith("##") and len(t) > 3 for t in tokens)  # merges were learnt


def test_a_vocab_smaller_than_asked_says_why(tmp_path, capsys):
    """11 characters (中国人民大会堂 h e l o), 3 ##characters (##e ##l ##o) and the 4 merges that make
    ``hello`` one piece: 5 + 11 + 3 + 4 = 23 tokens, whatever the asked size."""
    (tmp_path / "c.txt").write_text("中国人民大会堂 hello hello\n\n" * 5, encoding="utf-8")
    args = ["--input", str(tmp_path / "c.txt"), "--vocab-size", "1000", "--quiet"]
    assert cli("vocab", *args, "--output", str(tmp_path / "v")) == 0
    out = capsys.readouterr().out
    assert len((tmp_path / "v" / "vocab.txt").read_text(encoding="utf-8").splitlines()) == 23
    assert (
        "only 23 of the 1,000 tokens asked for: the corpus has no more pairs of pieces seen at least 2" in out
    )
    assert "distinct characters were left out" not in out
    assert cli("vocab", *args, "--output", str(tmp_path / "w"), "--limit-alphabet", "9") == 0
    out = capsys.readouterr().out
    assert (
        "2 of the corpus's 11 distinct characters were left out" in out and "--limit-alphabet 11 keeps" in out
    )
    assert cli("vocab", *args[:2], "--vocab-size", "23", "--quiet", "--output", str(tmp_path / "x")) == 0
    assert "asked for" not in capsys.readouterr().out  # exactly the asked size: nothing to explain
