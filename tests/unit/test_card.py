"""``pretrain.card``: a card the Hub parses, with this model's facts, and result blocks that replace only
themselves."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from huggingface_hub import EvalResult, ModelCard
from transformers import BartConfig, BartForConditionalGeneration

from data_prep.errors import UserError
from pretrain import card

MANIFEST = {
    "tokenizer": "google_zh_vocab.txt",
    "vocab_sha256": "ab" * 32,
    "seq_length": 512,
    "counts": {
        "train": {"documents": 1200, "sentences": 9000, "tokens": 400000, "examples": 800, "ids": 401600}
    },
    "fill": {"train": {"fill_ratio": 0.981}},
    "sources": [{"path": "/data/news.txt", "bytes": 1}, {"path": "/data/wiki.txt", "bytes": 2}],
}


def tiny_model(tied: bool = True) -> BartForConditionalGeneration:
    config = BartConfig(
        vocab_size=50, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=32,
        tie_word_embeddings=tied,
    )  # fmt: skip
    return BartForConditionalGeneration(config)


def facts(step: int = 500, max_steps: int = 1000, **extra) -> card.Facts:
    model = tiny_model()
    training = card.Training(
        step=step, max_steps=max_steps, global_batch="64 = 8 per device x grad_accum 1 x 8 processes",
        target_tokens=step * 64 * 501.0, optimizer="AdamW lr 0.0001",
        schedule="10% linear warmup, then linear", noise="uer (mask_ratio=0.3)", precision="bf16",
        devices="8 processes on NVIDIA H100", wall_seconds=7200.0,
        resume_command="accelerate launch -m pretrain --config R/config.yaml --train.resume auto",
    )  # fmt: skip
    values = dict(
        name="run/step-500", config=model.config, parameters=12345, head=card.head_of(model),
        manifest=MANIFEST, training=training, eval_metrics={"eval/loss": 2.5, "eval/accuracy": 0.4},
    )  # fmt: skip
    return card.Facts(**{**values, **extra})


def saved(tmp_path: Path, text: str) -> Path:
    (tmp_path / card.CARD).write_text(text, encoding="utf-8")
    return tmp_path


def test_the_hub_parses_the_metadata(tmp_path):
    loaded = ModelCard.load(
        saved(tmp_path, card.render(facts(license="apache-2.0", datasets=["cluecorpussmall"]))) / card.CARD
    )
    data = loaded.data
    assert data.language == "zh" and data.pipeline_tag == "text2text-generation"
    assert data.license == "apache-2.0" and data.datasets == ["cluecorpussmall"]
    assert data.widget == [{"text": "中国的首都是[MASK]京"}]
    assert "bart" in data.tags
    results = {r.metric_name: r.metric_value for r in data.eval_results}
    assert results == {"eval/loss": 2.5, "eval/accuracy": 0.4}
    assert all(r.task_type == "text2text-generation" for r in data.eval_results)


def test_the_sections_state_this_models_facts(tmp_path):
    text = card.render(facts())
    for section in ("How to use", "Training data", "Training procedure", "Evaluation results", "Limitations"):
        assert f"## {section}" in text
    assert "Text2TextGenerationPipeline" in text and "model.generate" in text  # 4.x and 5.x
    assert "1,200 documents" in text and "400,000 tokens" in text and "98.1%" in text and "news.txt" in text
    assert "500 of 1,000 planned" in text and "about 16,032,000" in text and "2.00 h" in text
    assert "uer (mask_ratio=0.3)" in text and "bf16" in text and "8 processes on NVIDIA H100" in text
    assert "--train.resume auto" in text and "12,345" in text and "tied to the token embeddings" in text
    assert "intermediate checkpoint: step 500 of 1,000" in text and "not the final model" in text
    assert "@inproceedings{lewis-etal-2020-bart" in text and "@inproceedings{zhao2019uer" in text
    assert "license" not in ModelCard(text).data.to_dict()  # none stated unless the user sets one


def test_a_final_export_is_not_called_intermediate():
    text = card.render(facts(step=1000))
    assert "intermediate" not in text and "not the final model" not in text


def test_an_untied_head_is_named():
    model = tiny_model(tied=False)
    assert "separate lm_head" in card.head_of(model)


def test_a_converted_model_has_no_training_sections():
    text = card.render(card.Facts(name="seed", config=tiny_model().config, parameters=1, head="tied",
                                  source="converted from the UER-py file `model.bin`"))  # fmt: skip
    assert "converted from the UER-py file" in text and "## Training procedure" not in text
    assert "bart-eval PATH --data SHARDS --card" in text  # how to add an evaluation


def result(metric: str, value: float) -> EvalResult:
    return EvalResult(task_type="text-classification", task_name="x", dataset_type="d", dataset_name="d",
                      metric_type="accuracy", metric_name=metric, metric_value=value)  # fmt: skip


def test_a_section_replaces_only_itself_and_its_own_results(tmp_path):
    directory = saved(tmp_path, card.render(facts()))
    before = (directory / card.CARD).read_text(encoding="utf-8")
    card.write_section(directory, "probe", "### probe\n\nfirst table", [result("probe accuracy", 0.5)])
    card.write_section(directory, "probe", "### probe\n\nsecond table", [result("probe accuracy", 0.75)])
    after = (directory / card.CARD).read_text(encoding="utf-8")
    assert after.count("<!-- probe:begin -->") == 1 and "second table" in after and "first table" not in after
    body_before = before.partition("\n---\n")[2]
    body_after = after.partition("\n---\n")[2]
    block = body_after[body_after.index("<!-- probe:begin -->") : body_after.index("<!-- probe:end -->") + 18]
    assert body_after.replace(block + "\n\n", "") == body_before  # nothing else of the text changed
    results = {r.metric_name: r.metric_value for r in ModelCard.load(directory / card.CARD).data.eval_results}
    assert results == {"eval/loss": 2.5, "eval/accuracy": 0.4, "probe accuracy": 0.75}


def test_a_directory_without_a_card_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no model card"):
        card.write_section(tmp_path, "probe", "x", [])


def test_eval_results_go_into_the_card(tmp_path):
    directory = saved(tmp_path, card.render(facts()))
    score = SimpleNamespace(metrics={"eval/loss": 3.25, "cloze/char_f1": 0.125})
    card.add_eval_results(directory, score, "| metric | a |\n|---|---:|", "shards")
    loaded = ModelCard.load(directory / card.CARD)
    assert "### bart-eval on `shards`" in loaded.text
    names = {r.metric_name: r.metric_value for r in loaded.data.eval_results}
    assert names["bart-eval eval/loss"] == 3.25 and names["bart-eval cloze/char_f1"] == 0.125


def test_finetune_results_go_into_the_card_one_block_per_task(tmp_path):
    directory = saved(tmp_path, card.render(facts()))

    def entries(task: str, accuracy: float) -> list[dict]:
        metric = {"type": "accuracy", "value": accuracy, "name": "test accuracy"}
        return [{"task": {"type": "text-classification", "name": "Text Classification"},
                 "dataset": {"name": task, "type": task, "split": "test"}, "metrics": [metric]}]  # fmt: skip

    card.add_finetune_results(directory, entries("chnsenticorp", 0.8), "table A", "chnsenticorp")
    card.add_finetune_results(directory, entries("book_review", 0.7), "table B", "book_review")
    card.add_finetune_results(directory, entries("chnsenticorp", 0.85), "table C", "chnsenticorp")
    loaded = ModelCard.load(directory / card.CARD)
    assert "table B" in loaded.text and "table C" in loaded.text and "table A" not in loaded.text
    accuracy = {
        r.dataset_name: r.metric_value for r in loaded.data.eval_results if r.metric_type == "accuracy"
    }
    assert accuracy["chnsenticorp"] == 0.85 and accuracy["book_review"] == 0.7
