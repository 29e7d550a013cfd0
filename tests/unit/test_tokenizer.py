"""The fast tokenizer gives exactly the ids of transformers.BertTokenizer.from_pretrained(dir)."""

from __future__ import annotations

import json
import sys
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from helpers import HANZI, PUNCT, RARE_HANZI, REAL_VOCAB, SAMPLE, WORDS, needs_shared, small_vocab_dir
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import BertTokenizer

from data_prep.tokenizer import BREAK, SLOW, FastTokenizer, build_table, load_tokenizer

FRAGMENTS = [
    *WORDS,
    "[SEP]",
    "[PAD][MASK]",
    "[MASK",
    "MASK]",
    "[[MASK]]",
    "x[MASK]y",
    "中[MASK]文",
    "ＡＢＣ",
    "１２３",
    "ｈｅｌｌｏ",
    "！",
    "，",
    "\u3000",
    "\u00a0",
    "\t",
    "\r",
    "\x00",
    "\x01",
    "\x1f",
    "\x7f",
    "\x85",
    "\u200b",
    "\u200d",
    "\ufeff",
    "\ufffd",
    "e\u0301",
    "中\u0301",
    "\u0301",
    "é",
    "É",
    "ß",
    "İ",
    "ﬁ",
    "Ⅻ",
    "😀",
    "👍🏽",
    "👨\u200d👩\u200d👧",
    "🇨🇳",
    "한국어",
    "ひらがな",
    "カタカナ",
    "العربية",
    "Ελληνικά",
    "кириллица",
    "\U00020000",
    "\U0002a6d6",
    "\uf900",
    "\ufa0e",
    "\u2f00",
    "\u3400",
    "www.example.com",
    "user@mail.cn",
    "3.1415",
    "1,000,000",
    "#tag",
    "a" * 120,
    "中" * 3,
    "\u2028",
    "\u00ad",
    "ǅ",
    "ℌ",
    "①",
]
ALPHABET = HANZI[:60] + RARE_HANZI + PUNCT + "abcXYZ09 \n"
TEXTS = st.lists(
    st.one_of(
        st.sampled_from(FRAGMENTS),
        st.text(alphabet=ALPHABET, max_size=12),
        st.characters(codec="utf-8"),
        st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=6),
    ),
    max_size=30,
).map("".join)


def reference_ids(tok, text: str) -> list[int]:
    """BertTokenizer line by line (the fast tokenizer treats '\\n' as a sentence break)."""
    return [i for line in text.split("\n") for i in tok(line, add_special_tokens=False)["input_ids"]]


def fast_for(directory: Path) -> tuple[FastTokenizer, object]:
    loaded = load_tokenizer(str(directory), directory / "scratch")
    return FastTokenizer(loaded.backend_json(), build_table(loaded.hf.backend_tokenizer)), loaded.hf


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return fast_for(small_vocab_dir(tmp_path_factory.mktemp("small")))


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    if not REAL_VOCAB.is_file():
        pytest.skip(f"real BERT-Chinese vocab not found at {REAL_VOCAB}")
    root = tmp_path_factory.mktemp("real")
    (root / "vocab.txt").write_bytes(REAL_VOCAB.read_bytes())
    return fast_for(root)


def check(fast: FastTokenizer, hf, text: str) -> None:
    got = fast.encode(text)
    assert got.ids.tolist() == reference_ids(hf, text), repr(text)
    # before[i] counts the tokens of text[:i]: at each line break it is the tokens of the lines before it
    breaks = [i for i, ch in enumerate(text) if ch == "\n"]
    expected = np.cumsum([len(reference_ids(hf, line)) for line in text.split("\n")])[:-1]
    assert got.before[breaks].tolist() == expected.tolist()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=TEXTS)
def test_small_vocab_matches_bert_tokenizer(small, text):
    check(*small, text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=TEXTS)
def test_real_vocab_matches_bert_tokenizer(real, text):
    check(*real, text)


def test_every_table_character_in_context_matches(real):
    """All ~82k table characters, each between different neighbours, in one text."""
    fast, hf = real
    chars = np.flatnonzero(fast.table >= 0)
    neighbours = ["a", "1", " ", "[MASK]", "é", "😀", "中", "\u0301", "##", "\x00"]
    text = "".join(f"{neighbours[i % 10]}{chr(c)}{neighbours[(i * 7 + 3) % 10]}" for i, c in enumerate(chars))
    assert fast.encode(text).ids.tolist() == hf(text, add_special_tokens=False)["input_ids"]


def test_table_keeps_isolated_characters_only(real):
    fast, hf = real
    table = fast.table
    assert (table >= 0).sum() > 20000
    for ch in "中文，。！？；（）、《》!?.,#\uf900\U00020000":
        assert table[ord(ch)] == hf.convert_tokens_to_ids(hf.tokenize(ch))[0], ch
    for ch in "[]aZ09 \t\r\u3000😀é\x00\u200bｈ":
        assert table[ord(ch)] == SLOW, repr(ch)
    assert table[10] == BREAK


def test_no_punctuation_beyond_plane_1():
    """The table's candidates skip planes 2 and up when looking for punctuation: true of this Unicode."""
    assert not [cp for cp in range(0x20000, sys.maxunicode + 1) if unicodedata.category(chr(cp))[0] == "P"]


@needs_shared
def test_shared_corpus_matches_bert_tokenizer(real):
    fast, hf = real
    text = SAMPLE.read_text(encoding="utf-8")
    assert fast.encode(text).ids.tolist() == reference_ids(hf, text)


def test_without_chinese_char_splitting_everything_goes_to_rust(tmp_path):
    """A tokenizer that does not isolate CJK characters gets no fast path, and stays exact."""
    root = small_vocab_dir(tmp_path / "nocjk")
    (root / "tokenizer_config.json").write_text(json.dumps({"tokenize_chinese_chars": False}))
    fast, hf = fast_for(root)
    assert (
        hf("中文", add_special_tokens=False)["input_ids"]
        != hf("中 文", add_special_tokens=False)["input_ids"]
    )
    assert (fast.table >= 0).sum() == 0
    check(fast, hf, "中文 hello，世界[MASK]😀\n第二行")


def test_vocab_file_path_and_missing_tokenizer(tmp_path):
    from data_prep.errors import UserError

    root = small_vocab_dir(tmp_path / "v")
    loaded = load_tokenizer(str(root / "vocab.txt"), tmp_path / "scratch")
    assert len(loaded.hf) == len((root / "vocab.txt").read_text(encoding="utf-8").splitlines())
    with pytest.raises(UserError, match="does not exist"):
        load_tokenizer(str(tmp_path / "nowhere" / "dir"), tmp_path / "s2")
    (tmp_path / "emptydir").mkdir()
    with pytest.raises(UserError, match="holds no vocab.txt"):
        load_tokenizer(str(tmp_path / "emptydir"), tmp_path / "s3")
    assert BertTokenizer.from_pretrained(str(root)).vocab_size == len(loaded.hf)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=TEXTS)
def test_rust_calls_in_small_pieces_give_the_same_ids(small, text):
    """The slow runs go to Rust in pieces of RUST_CHUNK characters: tiny pieces change nothing."""
    import data_prep.tokenizer as tokenizer_module

    saved = tokenizer_module.RUST_CHUNK
    tokenizer_module.RUST_CHUNK = 3
    try:
        check(*small, text + "\n" + text)
    finally:
        tokenizer_module.RUST_CHUNK = saved
