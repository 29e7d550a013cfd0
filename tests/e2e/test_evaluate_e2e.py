"""``bart-eval`` end to end: it agrees with training, scores a UER file as its export, knows a fresh model
when it sees one, refuses a foreign vocab, and writes JSON and cards."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from helpers import run_training, scalars
from huggingface_hub import ModelCard

from pretrain.cli.evaluate import main as eval_main
from pretrain.convert import main as convert_main

pytestmark = pytest.mark.slow  # trains a tiny model

RUN_EVAL = ["--examples", "8", "--batch-size", "4", "--seed", "1234", "--preset", "uer"]  # tiny_overrides'
FEW = ["--cloze", "8"]


@pytest.fixture(scope="module")
def run(shards, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("evaluate") / "run"
    run_training(shards, out, **{"train.max_steps": 8, "train.save_every": 4, "train.eval_every": 4})
    return out


def scored(tmp_path: Path, *argv: str) -> dict:
    out = tmp_path / "scores.json"
    assert eval_main([*argv, "--json", str(out)]) == 0
    return {m["name"]: m for m in json.loads(out.read_text(encoding="utf-8"))["models"]}


def test_an_export_scores_what_the_run_logged_at_its_step(run, shards, tmp_path):
    logged = {tag: dict(points) for tag, points in scalars(run).items()}
    step4 = str(run / "hf" / "step-4")
    metrics = scored(tmp_path, step4, "--data", str(shards), *RUN_EVAL, *FEW)[step4]["metrics"]
    assert metrics["eval/loss"] == pytest.approx(logged["eval/loss"][4], rel=1e-5)
    assert metrics["eval/accuracy"] == pytest.approx(logged["eval/accuracy"][4], abs=1e-6)
    assert metrics["eval/perplexity"] == pytest.approx(math.exp(metrics["eval/loss"]))


def test_a_run_directory_means_its_final_export_scored_with_the_runs_settings(run, shards, tmp_path, capsys):
    logged = {tag: dict(points) for tag, points in scalars(run).items()}
    metrics = scored(tmp_path, str(run), "--data", str(shards))[str(run)]["metrics"]
    assert f"settings: {run / 'config.yaml'}" in capsys.readouterr().out
    assert metrics["eval/loss"] == pytest.approx(logged["eval/loss"][8], rel=1e-5)


def test_a_uer_file_scores_exactly_as_the_export_it_came_from(run, shards, tmp_path):
    final, uer = run / "hf" / "final", tmp_path / "model.bin"
    assert convert_main(["hf-to-uer", "--input", str(final), "--output", str(uer)]) == 0
    heads = ["--heads", "2"]
    models = scored(tmp_path, str(final), str(uer), "--data", str(shards), *RUN_EVAL, *heads, *FEW)
    assert models[str(uer)]["kind"] == "uer"
    assert models[str(uer)]["metrics"] == models[str(final)]["metrics"]
    assert models[str(uer)]["prompts"] == models[str(final)]["prompts"]


def test_a_fresh_model_scores_the_uniform_loss_and_fills_nothing(run, shards, tmp_path):
    from transformers import BertTokenizer

    vocab = len(BertTokenizer.from_pretrained(str(shards / "tokenizer")))
    models = scored(tmp_path, str(run), "random", "--data", str(shards), *RUN_EVAL, *FEW)
    fresh = models["random"]["metrics"]
    assert fresh["eval/loss"] == pytest.approx(math.log(vocab), abs=0.02)
    assert fresh["cloze/exact_match"] == 0.0 and fresh["eval/accuracy"] < 0.05
    assert models["random"]["parameters"] == models[str(run)]["parameters"]
    assert models[str(run)]["metrics"]["eval/loss"] < fresh["eval/loss"] - 0.3


def test_every_model_sees_the_same_examples(run, shards, tmp_path):
    first = scored(tmp_path, str(run), "--data", str(shards), *RUN_EVAL, *FEW)
    again = scored(tmp_path, str(run), "--data", str(shards), *RUN_EVAL, *FEW)
    other_seed = scored(tmp_path, str(run), "--data", str(shards), *RUN_EVAL[:4], "--seed", "99", *FEW)
    assert first == again
    assert first[str(run)]["metrics"]["eval/loss"] != other_seed[str(run)]["metrics"]["eval/loss"]


def test_the_card_gets_the_results_and_keeps_the_rest(run, shards, tmp_path):
    final = run / "hf" / "final"
    before = ModelCard.load(final / "README.md")
    assert eval_main([str(final), "random", "--data", str(shards), *RUN_EVAL, "--card"]) == 0
    after = ModelCard.load(final / "README.md")
    assert "### bart-eval on" in after.text and "| random |" in after.text
    assert after.text.startswith(before.text.partition("## Limitations")[0].rstrip("\n"))
    names = {r.metric_name for r in after.data.eval_results}
    assert {"eval/loss", "bart-eval eval/loss", "bart-eval cloze/exact_match"} <= names


def test_exports_carry_a_card_the_hub_parses(run):
    step4, final = (ModelCard.load(run / "hf" / d / "README.md") for d in ("step-4", "final"))
    assert step4.data.language == "zh" and step4.data.pipeline_tag == "text2text-generation"
    assert "step 4 of 8" in step4.text and "not the final model" in step4.text
    assert "not the final model" not in final.text and "| steps | 8 of 8 planned |" in final.text
    assert {r.metric_name for r in final.data.eval_results} >= {"eval/loss", "eval/accuracy"}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["nowhere", "--data", "DATA"], "no such model: nowhere"),
        (["random", "--data", "DATA"], "'random' copies the shape of another model"),
        (["RUN", "--data", "nowhere"], "data.path"),
        (["RUN", "--data", "DATA", "--examples", "0"], "must be at least 1"),
        (["RUN", "--data", "DATA", "--set", "mask_ratio=2"], "mask_ratio"),
    ],
)
def test_bad_input_is_a_one_line_error(run, shards, capsys, argv, message):
    argv = [str(run) if a == "RUN" else str(shards) if a == "DATA" else a for a in argv]
    assert eval_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("bart-eval: error:") and message in err and "\n" not in err


def test_a_model_of_another_vocab_is_refused_naming_both_sizes(run, vocab, tmp_path, capsys):
    from helpers import clue_corpus, prepare
    from transformers import BertTokenizer

    clue_corpus(tmp_path / "c.txt", docs=30)
    assert prepare(vocab, [tmp_path / "c.txt"], tmp_path / "other", "--valid-ratio", "0.2") == 0
    ours = len(BertTokenizer.from_pretrained(str(run / "hf" / "final")))
    theirs = len(BertTokenizer.from_pretrained(str(vocab)))
    assert eval_main([str(run), "--data", str(tmp_path / "other")]) == 2
    err = capsys.readouterr().err
    assert f"vocab of {ours:,} tokens" in err and f"has {theirs:,}" in err
