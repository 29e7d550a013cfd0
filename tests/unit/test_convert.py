"""``pretrain.convert``: UER-py BART state dicts <-> Hugging Face BART, and ``model.init_from`` a UER file.

The UER side (tests/uer_states.py) is written out from the key names UER-py's conversion scripts use,
independently of the tables in ``pretrain/convert.py``; every tensor is distinct random data (LayerNorms
and the output bias included), so a swapped or misplaced tensor shows.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import BartForConditionalGeneration, BertTokenizer
from uer_states import (
    DEC,
    DEC_FFN,
    ENC,
    ENC_FFN,
    HEADS,
    POSITIONS,
    D,
    expected_hf,
    hf_model,
    randomize,
    uer_state,
)

from data_prep.errors import UserError
from pretrain.config import ModelConfig
from pretrain.convert import main
from pretrain.model import build_model


def logits(model: BartForConditionalGeneration) -> torch.Tensor:
    ids = torch.tensor([[2, 7, 9, 11, 5, 3], [2, 8, 6, 3, 0, 0]])
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=(ids != 0).long(), decoder_input_ids=ids[:, :-1]).logits


def convert(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("tie", [True, False])
def test_hf_to_uer_to_hf_is_bit_identical(tmp_path, vocab, hf, capsys, tie):
    original = hf_model(len(hf), tie=tie)
    original.save_pretrained(str(tmp_path / "hf"))
    uer, back = tmp_path / "uer" / "model.bin", tmp_path / "back"
    assert convert(capsys, "hf-to-uer", "--input", str(tmp_path / "hf"), "--output", str(uer))[0] == 0
    code, out, _ = convert(
        capsys, "uer-to-hf", "--input", str(uer), "--output", str(back), "--vocab", str(vocab), "--heads", "4"
    )
    assert code == 0 and f"{ENC} encoder + {DEC} decoder layers" in out
    assert ("tied embeddings" in out) == tie

    again = BartForConditionalGeneration.from_pretrained(str(back)).eval()
    a, b = original.state_dict(), again.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        if key.endswith("embed_positions.weight"):  # BART's two offset rows are never read: UER has none
            assert torch.equal(a[key][2:], b[key][2:]) and not b[key][:2].any(), key
        elif key == "model.shared.weight" and not tie:  # untied, no forward reads it; UER-py puts the
            assert torch.equal(b[key], a["model.encoder.embed_tokens.weight"])  # encoder's table there
        else:
            assert torch.equal(a[key], b[key]), key
    assert torch.equal(logits(original), logits(again))
    for field in ("d_model", "encoder_layers", "decoder_layers", "encoder_ffn_dim", "decoder_ffn_dim"):
        assert getattr(again.config, field) == getattr(original.config, field)
    assert again.config.max_position_embeddings == POSITIONS and again.config.tie_word_embeddings == tie
    tok = BertTokenizer.from_pretrained(str(back))
    assert len(tok) == len(hf) and (back / "vocab.txt").read_bytes() == (vocab / "vocab.txt").read_bytes()
    assert again.config.decoder_start_token_id == tok.cls_token_id == again.generation_config.bos_token_id
    assert again.config.eos_token_id == tok.sep_token_id and again.config.pad_token_id == tok.pad_token_id


@pytest.mark.parametrize("old_names", [False, True])
def test_uer_names_convert_to_the_right_tensors(tmp_path, vocab, hf, capsys, old_names):
    state = uer_state(len(hf), old_names=old_names)
    torch.save(state, tmp_path / "model.bin")
    code, out, err = convert(
        capsys, "uer-to-hf", "--input", str(tmp_path / "model.bin"), "--output", str(tmp_path / "hf"),
        "--vocab", str(vocab / "vocab.txt"), "--heads", "4",
    )  # fmt: skip
    assert code == 0, err
    assert f"{ENC} encoder + {DEC} decoder layers, d_model {D}, 4 heads, ffn {ENC_FFN}/{DEC_FFN}" in out
    model = BartForConditionalGeneration.from_pretrained(str(tmp_path / "hf"))
    new = uer_state(len(hf), old_names=False)  # the same tensors under today's names
    want, got = expected_hf(new), model.state_dict()
    assert want.keys() == got.keys()
    assert all(torch.equal(want[k], got[k]) for k in want)
    assert model.config.tie_word_embeddings and model.config.encoder_attention_heads == 4
    assert set(load_file(tmp_path / "hf" / "model.safetensors")).isdisjoint({"lm_head.weight"})  # tied


def test_layer_counts_inferred_or_given(tmp_path, vocab, hf, capsys):
    torch.save(uer_state(len(hf)), tmp_path / "model.bin")
    base = ["uer-to-hf", "--input", str(tmp_path / "model.bin"), "--vocab", str(vocab), "--heads", "4"]
    code, _, err = convert(capsys, *base, "--output", str(tmp_path / "a"), "--encoder-layers", "1")
    assert code == 2 and "with 1 encoder + 1 decoder layers" in err
    assert "unexpected 16 keys: encoder.transformer.1." in err and "missing" not in err
    code, _, err = convert(capsys, *base, "--output", str(tmp_path / "b"), "--decoder-layers", "2")
    assert code == 2 and "missing 26 keys: decoder.transformer_decoder.1." in err
    explicit = ["--encoder-layers", str(ENC), "--decoder-layers", str(DEC)]
    assert convert(capsys, *base, "--output", str(tmp_path / "c"), *explicit)[0] == 0
    code, _, err = convert(capsys, *base, "--output", str(tmp_path / "d"), "--heads", "5")
    assert code == 2 and "5 attention heads do not divide d_model 32" in err
    code, _, err = convert(capsys, *base, "--output", str(tmp_path / "e"), "--heads", "0")
    assert code == 2 and "must be a positive integer, not '0'" in err


class _Planted:
    """Unpickling this would create the file; weights_only must refuse before."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def test_bad_files_are_refused_in_one_line(tmp_path, vocab, capsys):
    planted = tmp_path / "ran"
    torch.save(
        {"embedding.word.embedding.weight": torch.zeros(2), "x": _Planted(planted)}, tmp_path / "evil.bin"
    )
    (tmp_path / "text.bin").write_text("not a checkpoint\n")
    torch.save([torch.zeros(2)], tmp_path / "list.bin")
    bert = {
        "bert.embeddings.word_embeddings.weight": torch.zeros(4, 2),
        "encoder.transformer.0.x": torch.zeros(1),
    }
    torch.save(bert, tmp_path / "bert.bin")
    cases = {
        "missing.bin": "no such file",
        "evil.bin": "needs code to unpickle (",
        "text.bin": "is not a PyTorch checkpoint",
        "list.bin": "is not a state dict",
        "bert.bin": "is not a UER-py BART state dict with 1 encoder + 0 decoder layers; missing",
    }
    for name, message in cases.items():
        code, out, err = convert(
            capsys, "uer-to-hf", "--input", str(tmp_path / name), "--output", str(tmp_path / "o")
        )
        assert (
            code == 2 and message in err and err.count("\n") == 1 and err.startswith("bart-convert: error:")
        ), err
    assert not planted.exists() and not (tmp_path / "o").exists()
    _, _, err = convert(
        capsys, "uer-to-hf", "--input", str(tmp_path / "bert.bin"), "--output", str(tmp_path / "o")
    )
    assert "unexpected 2 keys: bert.embeddings.word_embeddings.weight, encoder.transformer.0.x" in err
    assert "embedding.word.embedding.weight" in err  # among the missing

    code, _, err = convert(capsys, "hf-to-uer", "--input", str(vocab), "--output", str(tmp_path / "m.bin"))
    assert code == 2 and "is not a Hugging Face model directory (no config.json)" in err


def test_outputs_are_not_overwritten_without_force(tmp_path, vocab, hf, capsys):
    torch.save(uer_state(len(hf)), tmp_path / "model.bin")
    out = tmp_path / "hf"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    argv = ["uer-to-hf", "--input", str(tmp_path / "model.bin"), "--output", str(out), "--vocab", str(vocab)]
    code, _, err = convert(capsys, *argv, "--heads", "4")
    assert code == 2 and "exists and is not empty (pass --force" in err and (out / "keep.txt").exists()
    assert convert(capsys, *argv, "--heads", "4", "--force")[0] == 0
    assert not (out / "keep.txt").exists() and (out / "model.safetensors").is_file()

    target = tmp_path / "uer.bin"
    target.write_bytes(b"old")
    back = ["hf-to-uer", "--input", str(out), "--output", str(target)]
    assert convert(capsys, *back)[0] == 2 and target.read_bytes() == b"old"
    assert convert(capsys, *back, "--force")[0] == 0
    assert torch.load(target, weights_only=True).keys() == uer_state(len(hf)).keys()
    assert not list(tmp_path.glob(".*tmp*"))  # no temporaries left beside the outputs


def test_hf_to_uer_refuses_what_uer_cannot_hold(tmp_path, hf, capsys):
    missing = tmp_path / "nothing"
    assert convert(capsys, "hf-to-uer", "--input", str(missing), "--output", str(tmp_path / "a.bin"))[0] == 2
    model = hf_model(len(hf))
    model.config.scale_embedding = True
    model.save_pretrained(str(tmp_path / "scaled"))
    code, _, err = convert(
        capsys, "hf-to-uer", "--input", str(tmp_path / "scaled"), "--output", str(tmp_path / "b")
    )
    assert code == 2 and "scale_embedding" in err
    hf_model(len(hf)).save_pretrained(str(tmp_path / "cut"))
    weights = load_file(tmp_path / "cut" / "model.safetensors")
    from safetensors.torch import save_file

    save_file({k: v for k, v in weights.items() if ".fc2." not in k}, tmp_path / "cut" / "model.safetensors")
    code, _, err = convert(
        capsys, "hf-to-uer", "--input", str(tmp_path / "cut"), "--output", str(tmp_path / "c")
    )
    assert code == 2 and "lacks 6 weights" in err and "fc2" in err


def small_config(**extra) -> ModelConfig:
    return ModelConfig(
        vocab_size=None, d_model=64, encoder_layers=3, decoder_layers=3, encoder_attention_heads=HEADS,
        decoder_attention_heads=HEADS, encoder_ffn_dim=16, decoder_ffn_dim=16, max_position_embeddings=8,
        **extra,
    )  # fmt: skip


def test_init_from_a_uer_file_loads_its_weights(tmp_path, vocab, hf):
    state = uer_state(len(hf))
    torch.save(state, tmp_path / "model.bin-250000")  # the name UER-py's pretrain.py gives a checkpoint
    # The run's config says other sizes: the tensors win, as for an export; heads come from the config.
    model = build_model(small_config(init_from=str(tmp_path / "model.bin-250000")), hf, vocab / "vocab.txt")
    want, got = expected_hf(state), model.state_dict()
    assert all(torch.equal(want[k], got[k]) for k in want) and want.keys() == got.keys()
    assert (model.config.encoder_layers, model.config.d_model, model.config.max_position_embeddings) == (
        ENC,
        D,
        POSITIONS,
    )
    assert (
        model.config.decoder_start_token_id == hf.cls_token_id
        and model.config.pad_token_id == hf.pad_token_id
    )
    assert model.generation_config.max_length == POSITIONS

    torch.save(uer_state(len(hf) + 1), tmp_path / "other.bin")
    with pytest.raises(UserError, match=f"vocab_size {len(hf) + 1} but the data's tokenizer has {len(hf)}"):
        build_model(small_config(init_from=str(tmp_path / "other.bin")), hf, vocab / "vocab.txt")
    with pytest.raises(UserError, match="no such file"):
        build_model(small_config(init_from=str(tmp_path / "absent.pt")), hf, vocab / "vocab.txt")
    with pytest.raises(UserError, match="nor a UER-py model file"):
        build_model(small_config(init_from=str(tmp_path)), hf, vocab / "vocab.txt")
    export = tmp_path / "export.bin"  # a directory stays an export, whatever its name
    hf_model(len(hf)).save_pretrained(str(export))
    again = build_model(small_config(init_from=str(export)), hf, vocab / "vocab.txt")
    assert torch.equal(again.model.shared.weight, hf_model(len(hf)).model.shared.weight)


def test_the_uer_head_round_trips_through_uer_exactly(tmp_path, vocab, hf, capsys):
    """UER-py's head (one token table, lm_head apart, a trained output bias) as our trainer builds it:
    hf-to-uer then uer-to-hf gives back every tensor and the logits exactly, and training continues
    from either file with the same head."""
    model = randomize(
        build_model(small_config(tie_word_embeddings=False, logits_bias="trained"), hf, vocab / "vocab.txt"),
        3,
    ).eval()
    assert model.model.encoder.embed_tokens.weight is model.model.shared.weight
    model.save_pretrained(str(tmp_path / "hf"))
    uer, back = tmp_path / "model.bin", tmp_path / "back"
    assert convert(capsys, "hf-to-uer", "--input", str(tmp_path / "hf"), "--output", str(uer))[0] == 0
    state = torch.load(uer, weights_only=True)
    assert torch.equal(state["embedding.word.embedding.weight"], state["tgt_embedding.word.embedding.weight"])
    assert torch.equal(state["target.lm.output_layer.bias"], model.final_logits_bias[0].detach())
    code, out, _ = convert(
        capsys, "uer-to-hf", "--input", str(uer), "--output", str(back), "--vocab", str(vocab), "--heads", "4"
    )
    assert code == 0 and "separate embeddings" in out

    again = BartForConditionalGeneration.from_pretrained(str(back)).eval()
    a, b = model.state_dict(), again.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        if key.endswith("embed_positions.weight"):  # BART's two offset rows are never read: UER has none
            assert torch.equal(a[key][2:], b[key][2:]), key
        else:
            assert torch.equal(a[key], b[key]), key
    assert torch.equal(logits(again), logits(model))
    for source in (back, uer):  # --model.init_from the export or the UER file
        resumed = build_model(
            small_config(logits_bias="trained", init_from=str(source)), hf, vocab / "vocab.txt"
        )
        assert resumed.model.decoder.embed_tokens.weight is resumed.model.shared.weight
        assert isinstance(resumed.final_logits_bias, torch.nn.Parameter)
        assert torch.equal(logits(resumed.eval()), logits(model))


def test_a_converted_model_carries_a_card_naming_its_source(tmp_path, vocab, hf, capsys):
    from huggingface_hub import ModelCard

    torch.save(uer_state(len(hf), old_names=False), tmp_path / "model.bin")
    code, _, err = convert(
        capsys, "uer-to-hf", "--input", str(tmp_path / "model.bin"), "--output", str(tmp_path / "hf"),
        "--vocab", str(vocab / "vocab.txt"), "--heads", "4",
    )  # fmt: skip
    assert code == 0, err
    card = ModelCard.load(tmp_path / "hf" / "README.md")
    assert card.data.language == "zh" and card.data.pipeline_tag == "text2text-generation"
    assert (
        "converted from the UER-py file `model.bin`" in card.text and "## Training procedure" not in card.text
    )
    assert f"{ENC} encoder + {DEC} decoder layers, hidden size {D}, 4 attention heads" in card.text
