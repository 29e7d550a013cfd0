"""``prepare --segment``: word boundaries from a Chinese segmenter stored with the shards and used by the
whole-word noise and the trainer; ``prepare --layout uer``: one document per example, as UER-py."""

from __future__ import annotations

import importlib.metadata
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import (
    REAL_VOCAB,
    SAMPLE,
    SPECIALS,
    cli,
    clue_corpus,
    make_sentences,
    needs_shared,
    prepare,
    read_split,
    stream_of,
)

from data_prep.noise import Denoiser, NoiseConfig
from data_prep.shards import WORD_CONTINUES, ShardDir
from data_prep.units import SEGMENTERS

TEXT = "我们喜欢北京天安门。\nhello world，他们在北京。\n"
WORDS = ["我们", "喜欢", "北京", "天安门", "。", "hello", "world", "，", "他们", "在", "北京", "。"]


def words_of(tokens: list[str], continues: list[int]) -> list[str]:
    """The row's tokens (without [CLS]/[SEP]) joined into words by the continuation offsets."""
    words: list[str] = []
    for i, token in enumerate(tokens):
        if token in ("[CLS]", "[SEP]"):
            continue
        piece = token.removeprefix("##")
        if i in continues:
            words[-1] += piece
        else:
            words.append(piece)
    return words


@pytest.fixture
def corpus(tmp_path) -> Path:
    """A vocab of the characters of ``TEXT`` plus ``he ##llo world``, and ``TEXT`` as one document."""
    chars = sorted({c for c in TEXT if not c.isspace() and not c.isascii()})
    (tmp_path / "vocab.txt").write_text("\n".join([*SPECIALS, *chars, "he", "##llo", "world"]) + "\n")
    (tmp_path / "corpus.txt").write_text(TEXT, encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize("segmenter", SEGMENTERS)
def test_word_continues_are_the_later_tokens_of_each_word(corpus, segmenter):
    pytest.importorskip(segmenter)
    from transformers import BertTokenizer

    out = corpus / "out"
    assert prepare(corpus, [corpus / "corpus.txt"], out, "--segment", segmenter, "--valid-ratio", "0") == 0
    (row,) = read_split(out / "train")
    tokens = BertTokenizer(str(corpus / "vocab.txt")).convert_ids_to_tokens(row["input_ids"])
    assert words_of(tokens, row[WORD_CONTINUES]) == WORDS
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["options"]["segment"] == f"{segmenter} {importlib.metadata.version(segmenter)}"


def test_segmenting_only_adds_the_column_and_changes_the_plan(tmp_path, vocab):
    pytest.importorskip("jieba")
    clue_corpus(tmp_path / "c.txt", 60, seed=3)
    plain, words = tmp_path / "plain", tmp_path / "words"
    assert prepare(vocab, [tmp_path / "c.txt"], plain, "--seq-length", "64") == 0
    assert prepare(vocab, [tmp_path / "c.txt"], words, "--seq-length", "64", "--segment", "jieba") == 0
    for split in ("train", "valid"):
        a, b = read_split(plain / split), read_split(words / split)
        assert [set(r) for r in a] == [{"input_ids", "sentence_ends", "doc_ends"}] * len(a)
        assert [{k: r[k] for k in a[0]} for r in b] == a  # the same rows, one column more
    options = json.loads((plain / "manifest.json").read_text())["options"]
    assert "segment" not in options and "layout" not in options  # a default run's plan is the old one
    # --resume sees the segmenter: the finished segmented directory is not the default job's
    assert prepare(vocab, [tmp_path / "c.txt"], words, "--seq-length", "64", "--resume") == 2


def test_continuations_never_start_a_sentence_and_cover_every_piece(tmp_path, vocab, hf):
    pytest.importorskip("jieba")
    clue_corpus(tmp_path / "c.txt", 80, seed=5)
    out = tmp_path / "out"
    assert prepare(vocab, [tmp_path / "c.txt"], out, "--seq-length", "48", "--segment", "jieba") == 0
    rows = read_split(out / "train")
    pieces = continued = 0
    for row in rows:
        cont = set(row[WORD_CONTINUES])
        tokens = hf.convert_ids_to_tokens(row["input_ids"])
        starts = {1} | set(row["sentence_ends"]) | {d + 1 for d in row["doc_ends"]}
        assert not cont & starts  # [CLS], the first token of every sentence (piece), [SEP]s
        assert row[WORD_CONTINUES] == sorted(cont)
        piece = {i for i, t in enumerate(tokens) if t.startswith("##")}
        assert piece - starts <= cont  # a ## piece continues its word (unless a sentence piece starts)
        pieces += len(piece)
        continued += len(cont - piece)
    assert pieces > 20 and continued > 20  # both kinds occur: the checks have teeth


def test_a_missing_segmenter_is_a_one_line_error(tmp_path, vocab, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "jieba", None)  # import jieba raises ImportError
    clue_corpus(tmp_path / "c.txt", 3)
    assert prepare(vocab, [tmp_path / "c.txt"], tmp_path / "out", "--segment", "jieba") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install jieba" in err


def test_the_trainer_noises_segmented_shards_by_their_words(tmp_path):
    pytest.importorskip("jieba")
    from pretrain.data import NoisedDataset, load_shards

    src = tmp_path / "src"
    src.mkdir()
    sents = make_sentences(200, seed=1)
    chars = sorted({c for s in sents for c in s})
    (src / "vocab.txt").write_text("\n".join(SPECIALS + chars) + "\n", encoding="utf-8")
    (src / "corpus.txt").write_text("\n\n".join("\n".join(sents[i : i + 5]) for i in range(0, 200, 5)) + "\n")
    options = ("--seq-length", "48", "--segment", "jieba")
    assert prepare(src, [src / "corpus.txt"], tmp_path / "data", *options) == 0
    shards = load_shards(str(tmp_path / "data"))
    assert WORD_CONTINUES in shards.train.column_names
    d = Denoiser.from_tokenizer(NoiseConfig.from_preset("bart"), shards.tokenizer, seed=3)
    keys = [(0, i) for i in range(len(shards.train))]
    items = NoisedDataset(shards.train, d).__getitems__(keys)
    differ = 0
    for (epoch, i), item in zip(keys, items, strict=True):
        row = shards.train[i]
        cols = (row["input_ids"], row["sentence_ends"], row["doc_ends"])
        by_words = d(*cols, row[WORD_CONTINUES], epoch=epoch, index=i)[0]
        assert np.array_equal(item["input_ids"], by_words)
        differ += not np.array_equal(by_words, d(*cols, epoch=epoch, index=i)[0])
    assert differ > len(keys) // 2  # the words change the noise (a character vocab has no ## pieces)


def test_the_uer_layout_holds_one_document_per_example(tmp_path, vocab):
    clue_corpus(tmp_path / "c.txt", 60, seed=2)
    packed, uer = tmp_path / "packed", tmp_path / "uer"
    assert prepare(vocab, [tmp_path / "c.txt"], packed, "--seq-length", "64") == 0
    assert prepare(vocab, [tmp_path / "c.txt"], uer, "--seq-length", "64", "--layout", "uer") == 0
    for split in ("train", "valid"):
        a, b = read_split(packed / split), read_split(uer / split)
        assert all(len(r["doc_ends"]) == 1 for r in b) and len(b) > len(a)
        assert stream_of(a)[0] == stream_of(b)[0]  # the same tokens, in the same order
    assert json.loads((uer / "manifest.json").read_text())["options"]["layout"] == "uer"
    assert prepare(vocab, [tmp_path / "c.txt"], uer, "--seq-length", "64", "--resume") == 2  # in the plan


def fill(directory: Path, capsys) -> float:
    assert cli("inspect", str(directory)) == 0
    return float(re.search(r"train: [\d,]+ examples, fill ([\d.]+)%", capsys.readouterr().out).group(1))


@needs_shared
def test_uer_layout_fill_on_cluecorpussmall(tmp_path, capsys):
    """UER-py's data leaves ~59% of a 512-id example padding; the packed layout ~2%."""
    for layout in ("packed", "uer"):
        assert prepare(REAL_VOCAB, [SAMPLE], tmp_path / layout, "--layout", layout) == 0
    assert fill(tmp_path / "packed", capsys) > 97
    assert 39 < fill(tmp_path / "uer", capsys) < 43
    rows = ShardDir.open(tmp_path / "uer").load_split("train")
    assert max(len(ends) for ends in rows["doc_ends"]) == 1


def test_merged_parts_keep_the_word_continues(tmp_path, vocab):
    pytest.importorskip("jieba")
    for k in range(2):
        clue_corpus(tmp_path / f"c{k}.txt", 30, seed=k)
    inputs = [tmp_path / "c0.txt", tmp_path / "c1.txt"]
    options = ("--seq-length", "64", "--segment", "jieba")
    assert prepare(vocab, inputs, tmp_path / "whole", *options) == 0
    for k in (1, 2):
        assert prepare(vocab, inputs, tmp_path / f"p{k}", *options, "--part", f"{k}/2") == 0
    assert cli("merge", "--output", str(tmp_path / "merged"), str(tmp_path / "p1"), str(tmp_path / "p2")) == 0
    for split in ("train", "valid"):
        assert read_split(tmp_path / "merged" / split) == read_split(tmp_path / "whole" / split)
