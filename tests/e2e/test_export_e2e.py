"""Hugging Face exports: loadable with BertTokenizer + BartForConditionalGeneration, portable to 4.x."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from helpers import run_training
from safetensors.torch import load_file
from transformers import BartForConditionalGeneration, BertTokenizer

from data_prep.errors import UserError
from pretrain.fill_in import main as fill_in_main

pytestmark = pytest.mark.slow  # end-to-end: trains, or prepares in several processes

PROMPT = "中国的首都是[MASK]京"  # the seed model card's example


@pytest.fixture(scope="module")
def run(shards, tmp_path_factory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("export") / "run"
    run_training(shards, out, **{"train.max_steps": 4, "train.save_every": 2})
    return shards, out


def test_export_files_and_special_ids_come_from_the_tokenizer(run):
    data, out = run
    final = out / "hf" / "final"
    assert {"config.json", "model.safetensors", "generation_config.json", "vocab.txt"} <= {
        p.name for p in final.iterdir()
    }
    assert (final / "vocab.txt").read_bytes() == (data / "tokenizer" / "vocab.txt").read_bytes()
    tok = BertTokenizer.from_pretrained(str(final))
    config = json.loads((final / "config.json").read_text())
    gen = json.loads((final / "generation_config.json").read_text())
    for c in (config, gen):
        assert c["decoder_start_token_id"] == tok.cls_token_id and c["eos_token_id"] == tok.sep_token_id
        assert c["pad_token_id"] == tok.pad_token_id and c["forced_eos_token_id"] == tok.sep_token_id
    assert config["vocab_size"] == len(tok) and config["tokenizer_class"] == "BertTokenizer"
    assert config["torch_dtype"] == "float32"  # what transformers 4.x reads
    assert gen["max_length"] == config["max_position_embeddings"]
    assert not list((out / "hf").glob(".tmp-*"))


def test_export_holds_the_trained_weights(run):
    _, out = run
    exported = load_file(out / "hf" / "step-4" / "model.safetensors")
    checkpoint = torch.load(out / "checkpoints" / "step-4" / "pytorch_model.bin", weights_only=True)
    final = load_file(out / "hf" / "final" / "model.safetensors")
    shared = exported.keys() & checkpoint.keys()
    assert "model.shared.weight" in shared and len(shared) > 10
    assert all(torch.equal(exported[k], checkpoint[k]) and torch.equal(exported[k], final[k]) for k in shared)


def test_loads_and_generation_stops_at_sep(run):
    _, out = run
    final = out / "hf" / "final"
    tok = BertTokenizer.from_pretrained(str(final))
    model = BartForConditionalGeneration.from_pretrained(str(final)).eval()
    tied = model.model.shared.weight.data_ptr() == model.lm_head.weight.data_ptr()
    assert tied == model.config.tie_word_embeddings  # the head the run trained (tiny.yaml: UER-py's, untied)
    assert torch.equal(model.model.encoder.embed_tokens.weight, model.model.shared.weight)
    enc = tok(PROMPT, return_tensors="pt", return_token_type_ids=False)
    with torch.no_grad():
        model.final_logits_bias[0, tok.sep_token_id] = 1e4  # make [SEP] the first choice
        generated = model.generate(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
    assert generated[0].tolist() == [tok.cls_token_id, tok.sep_token_id]
    target = os.environ.get("BART_E2E_EXPORT")  # launch.sh test: the transformers 4.x check runs on this
    if target and not Path(target).exists():
        shutil.copytree(final, target)
        write_reference(final, Path(target) / "reference_5x.json")


def write_reference(export: Path, path: Path) -> None:
    """What transformers 5 computes on the export, for tests/export_compat_4x.py to compare under 4.x."""
    tok = BertTokenizer.from_pretrained(str(export))
    model = BartForConditionalGeneration.from_pretrained(str(export)).eval()
    enc = tok(PROMPT, return_tensors="pt", return_token_type_ids=False)
    with torch.no_grad():
        logits = model(**enc, decoder_input_ids=enc["input_ids"][:, :4]).logits[0, :, :8]
        generated = {
            beams: model.generate(**enc, max_length=50, do_sample=False, num_beams=beams)[0].tolist()
            for beams in (1, 4)  # greedy, and the beam search that 4.x pipelines default to
        }
    reference = {
        "prompt": PROMPT,
        "input_ids": enc["input_ids"][0].tolist(),
        "logits": logits.tolist(),
        "generated_ids": generated,
    }
    path.write_text(json.dumps(reference), encoding="utf-8")


def test_init_from_an_export_continues_from_its_weights(run, tmp_path):
    data, out = run
    final = out / "hf" / "final"
    tiny_lr = {"train.lr": 1e-30, "train.max_steps": 1}  # a step far below every weight's ulp: unchanged
    again = run_training(data, tmp_path / "again", **{"model.init_from": str(final), **tiny_lr})
    a, b = load_file(final / "model.safetensors"), load_file(again / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)

    other = tmp_path / "other"
    shutil.copytree(final, other)
    (other / "vocab.txt").write_text((other / "vocab.txt").read_text().replace("[MASK]", "[MASK2]"))
    with pytest.raises(UserError, match="different vocab.txt"):
        run_training(data, tmp_path / "bad", **{"model.init_from": str(other)})


def test_fill_in_cli(run, capsys):
    _, out = run
    assert fill_in_main([str(out / "hf" / "final"), "中国的首都是[MASK]京"]) == 0
    assert "中国的首都是[MASK]京\n  -> " in capsys.readouterr().out
    assert fill_in_main([str(out / "hf")]) == 2  # neither an export nor a run directory
