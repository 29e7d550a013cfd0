"""``pretrain.cloze``: the cloze items are deterministic widget-sized gaps, and the fill is scored right."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import read_split

from pretrain.cloze import MAX_SPAN, ClozeItem, build_cloze_set, char_f1, extract_fill, hanzi_ids, prompt_ids
from pretrain.data import load_shards


@pytest.fixture(scope="module")
def held(shards):
    opened = load_shards(str(shards))
    return opened.valid, opened.tokenizer


def test_items_hide_one_to_four_characters_of_one_sentence_behind_one_mask(held):
    rows, tok = held
    items = build_cloze_set(rows, tok, 50, seed=3)
    assert len(items) >= 10
    hanzi = hanzi_ids(tok)
    lengths = set()
    for item in items:
        assert 1 <= len(item.span) <= MAX_SPAN and all(hanzi[t] for t in item.span)
        lengths.add(len(item.span))
        prompt = prompt_ids(item, tok)
        assert prompt.count(tok.mask_token_id) == 1
        assert prompt[0] == tok.cls_token_id and prompt[-1] == tok.sep_token_id
        sentence = [*item.left, *item.span, *item.right]
        row = rows[item.row]["input_ids"].tolist()
        assert any(row[i : i + len(sentence)] == sentence for i in range(len(row)))  # a real sentence
    assert len(lengths) > 1  # spans of several lengths


def test_items_are_a_pure_function_of_the_seed(held):
    rows, tok = held
    assert build_cloze_set(rows, tok, 20, seed=3) == build_cloze_set(rows, tok, 20, seed=3)
    assert build_cloze_set(rows, tok, 20, seed=3) != build_cloze_set(rows, tok, 20, seed=4)
    assert build_cloze_set(rows, tok, 5, seed=3) == build_cloze_set(rows, tok, 20, seed=3)[:5]


def test_the_fill_is_what_lies_between_the_copied_contexts():
    item = ClozeItem(0, left=(1, 2, 3), span=(7, 8), right=(4, 5))
    assert extract_fill([1, 2, 3, 7, 8, 4, 5], item) == [7, 8]
    assert extract_fill([1, 2, 3, 9, 4, 5], item) == [9]
    assert extract_fill([1, 2, 3, 4, 5], item) == []  # the gap closed up
    assert extract_fill([1, 2, 6, 7, 8, 4, 5], item) == [6, 7, 8]  # a broken copy of the left context
    assert extract_fill([], item) == []


def test_character_f1():
    assert char_f1("北京", "北京") == 1.0
    assert char_f1("北", "北京") == pytest.approx(2 / 3)
    assert char_f1("南京", "北京") == pytest.approx(0.5)
    assert char_f1("上海", "北京") == 0.0
    assert char_f1("", "北京") == 0.0
    assert char_f1("", "") == 1.0


def test_sentences_shorter_than_a_widget_prompt_give_no_item(tmp_path, vocab, hf):
    from helpers import prepare

    (tmp_path / "c.txt").write_text("中国\n\n北京\n", encoding="utf-8")
    assert prepare(vocab, [tmp_path / "c.txt"], tmp_path / "d", "--valid-ratio", "0.5") == 0
    rows = read_split(tmp_path / "d" / "train")
    import datasets

    table = datasets.Dataset.from_dict(
        {"input_ids": [r["input_ids"] for r in rows], "sentence_ends": [r["sentence_ends"] for r in rows]}
    ).with_format("numpy")
    assert build_cloze_set(table, hf, 10, seed=0) == []
    assert np.all(hanzi_ids(hf)[[hf.convert_tokens_to_ids("中")]])
