"""``pretrain.uer``: the UER-py <-> Hugging Face BART key mapping, and UER files read safely. Checked against
tests/uer_states.py, which spells out UER-py's key names and what each HF tensor must be independently of
the tables in ``pretrain/uer.py``: the keys are UER-py's, every tensor lands where UER-py's script puts it,
the two offset rows of BART's position tables are zeros going to HF and dropped coming back (as copies),
the layer counts are inferred from the keys, a missing or extra key is a ``UserError`` that names them,
``uer_shape`` reads the architecture and tying off the tensors, and ``load_uer`` renames the pre-2022 names
and refuses what is not a plain state dict without running its code."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from uer_states import DEC, DEC_FFN, ENC, ENC_FFN, POSITIONS, D, expected_hf, hf_model, uer_state

from data_prep.errors import UserError
from pretrain.uer import (
    DECODER,
    ENCODER,
    OLD_NAMES,
    POS,
    TGT_POS,
    TGT_WORD,
    WORD,
    Shape,
    check_uer,
    count_layers,
    hf_to_uer_state_dict,
    layer_pairs,
    load_hf,
    load_uer,
    uer_keys,
    uer_shape,
    uer_to_hf_state_dict,
)

VOCAB = 50


@pytest.fixture(scope="module")
def state() -> dict[str, torch.Tensor]:
    return uer_state(VOCAB)


def test_the_keys_are_uer_pys(state):
    assert uer_keys(ENC, DEC) == set(state)
    # 2 embedding LayerNorms; per encoder layer 4 attention linears, 2 FFN linears, 2 LayerNorms; per
    # decoder layer one more attention block and LayerNorm: 2 tensors each
    assert len(layer_pairs(ENC, DEC)) == 2 * 2 + ENC * 2 * 8 + DEC * 2 * 13
    assert len({hf for _, hf in layer_pairs(ENC, DEC)}) == len(layer_pairs(ENC, DEC))  # one to one


def test_uer_to_hf_puts_every_tensor_where_uer_pys_script_does(state):
    hf = uer_to_hf_state_dict(state, ENC, DEC)
    want = expected_hf(state)
    assert hf.keys() == want.keys()
    assert all(torch.equal(hf[k], want[k]) for k in want), [
        k for k in want if not torch.equal(hf[k], want[k])
    ]
    assert not hf["model.encoder.embed_positions.weight"][:2].any()  # the two offset rows are zeros
    model = hf_model(VOCAB)
    assert hf.keys() == model.state_dict().keys()  # exactly the model's tensors
    model.load_state_dict(hf, strict=True)


def test_hf_to_uer_inverts_it_and_copies_the_positions(state):
    hf = uer_to_hf_state_dict(state, ENC, DEC)
    back = hf_to_uer_state_dict(hf, ENC, DEC)
    assert back.keys() == state.keys()
    assert all(torch.equal(back[k], state[k]) for k in state)
    hf["model.encoder.embed_positions.weight"][5] += 1  # not a view: the UER tensors do not change
    hf["model.decoder.embed_positions.weight"][5] += 1
    assert torch.equal(back[POS], state[POS]) and torch.equal(back[TGT_POS], state[TGT_POS])

    model = hf_model(VOCAB, tie=False).state_dict()
    uer = hf_to_uer_state_dict(model, ENC, DEC)
    assert uer.keys() == uer_keys(ENC, DEC)
    assert torch.equal(uer[POS], model["model.encoder.embed_positions.weight"][2:])  # offset rows dropped
    assert uer[POS].shape == (POSITIONS, D) and torch.equal(
        uer[TGT_WORD], model["model.decoder.embed_tokens.weight"]
    )


def test_count_layers(state):
    assert count_layers(state, ENCODER[0]) == ENC and count_layers(state, DECODER[0]) == DEC
    assert count_layers({}, ENCODER[0]) == 0
    keys = [
        "encoder.transformer.10.x",
        "encoder.transformer.3.y",
        "encoder.transformerX.40.z",
        "x.encoder.transformer.50.w",
    ]
    assert count_layers(keys, ENCODER[0]) == 11  # the highest index + 1; only keys under the stack


def test_check_uer_infers_or_checks_the_layer_counts(state):
    assert check_uer(state, "m.bin", None, None) == (ENC, DEC)
    assert check_uer(state, "m.bin", ENC, DEC) == (ENC, DEC)
    with pytest.raises(UserError) as err:
        check_uer(state, "m.bin", 1, None)
    assert str(err.value).startswith(
        "m.bin is not a UER-py BART state dict with 1 encoder + 1 decoder layers; "
    )
    assert "unexpected 16 keys: encoder.transformer.1." in str(err.value) and "missing" not in str(err.value)
    with pytest.raises(UserError, match=r"missing 26 keys: decoder\.transformer_decoder\.1\..* and 18 more$"):
        check_uer(state, "m.bin", None, 2)


def test_check_uer_names_missing_and_unexpected_keys(state):
    broken = {k: v for k, v in state.items() if k != WORD} | {"bert.pooler.weight": torch.zeros(1)}
    with pytest.raises(UserError) as err:
        check_uer(broken, "x.bin", None, None)
    message = str(err.value)
    assert f"with {ENC} encoder + {DEC} decoder layers" in message and "\n" not in message
    assert f"missing 1 keys: {WORD}" in message and "unexpected 1 keys: bert.pooler.weight" in message
    with pytest.raises(UserError, match=r"with 0 encoder \+ 0 decoder layers; missing 10 keys"):
        check_uer({}, "empty.bin", None, None)  # no layers is never a BART
    only_encoder = {k: v for k, v in state.items() if not k.startswith("decoder.")}
    with pytest.raises(UserError, match=r"with 2 encoder \+ 0 decoder layers$"):
        check_uer(only_encoder, "enc.bin", None, None)


def test_uer_shape(state):
    shape = uer_shape(state, ENC, DEC)
    assert shape == Shape(VOCAB, D, ENC, DEC, ENC_FFN, DEC_FFN, POSITIONS, True)
    assert shape.describe(4) == (
        f"{ENC} encoder + {DEC} decoder layers, d_model {D}, 4 heads, ffn {ENC_FFN}/{DEC_FFN}, "
        f"vocab {VOCAB}, {POSITIONS} positions, tied embeddings"
    )
    for key in (TGT_WORD, "target.lm.output_layer.weight"):  # either table different: not tied
        untied = dict(state)
        untied[key] = state[key].clone()
        untied[key][0, 0] += 1
        assert not uer_shape(untied, ENC, DEC).tie_word_embeddings
    assert "separate embeddings" in uer_shape(untied, ENC, DEC).describe(4)
    short = dict(state)
    short[TGT_POS] = state[TGT_POS][:-1]
    with pytest.raises(UserError, match=rf"position tables differ \(\[{POSITIONS - 1}, {POSITIONS}\] rows\)"):
        uer_shape(short, ENC, DEC)


def test_load_uer_reads_tensors_and_renames_old_names(tmp_path, state):
    torch.save(state, tmp_path / "new.bin")
    got = load_uer(tmp_path / "new.bin")
    assert got.keys() == state.keys() and all(torch.equal(got[k], state[k]) for k in state)
    torch.save(uer_state(VOCAB, old_names=True), tmp_path / "old.bin")
    got = load_uer(tmp_path / "old.bin")
    assert got.keys() == state.keys() and all(torch.equal(got[k], state[k]) for k in state)
    both = {"embedding.word_embedding.weight": torch.zeros(2), WORD: torch.ones(2)}  # never overwritten
    torch.save(both, tmp_path / "both.bin")
    got = load_uer(tmp_path / "both.bin")
    assert got.keys() == both.keys() and torch.equal(got[WORD], torch.ones(2))
    assert set(OLD_NAMES.values()) <= uer_keys(1, 1)


class _Opens:
    """Unpickling this would create a file: ``weights_only`` must refuse it first."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def test_load_uer_refuses_what_is_not_a_plain_state_dict(tmp_path):
    planted = tmp_path / "created"
    torch.save({WORD: torch.zeros(2), "x": _Opens(planted)}, tmp_path / "code.bin")
    (tmp_path / "text.bin").write_text("not a checkpoint\n")
    torch.save([torch.zeros(2)], tmp_path / "list.bin")
    torch.save({WORD: torch.zeros(2), "step": 5}, tmp_path / "mixed.bin")
    (tmp_path / "dir.bin").mkdir()
    (tmp_path / "pickle.bin").write_bytes(pickle.dumps({"a": 1}))
    cases = {
        "missing.bin": "no such file",
        "dir.bin": "is a directory, not a UER-py model file",
        "code.bin": "needs code to unpickle (",
        "text.bin": "is not a PyTorch checkpoint (",
        "list.bin": "is not a state dict",
        "mixed.bin": "is not a state dict",
        "pickle.bin": "is not a PyTorch checkpoint (",  # a bare pickle, not what torch.save writes
    }
    for name, message in cases.items():
        with pytest.raises(UserError) as err:
            load_uer(tmp_path / name)
        assert message in str(err.value) and "\n" not in str(err.value), (name, str(err.value))
    assert not planted.exists()


def test_load_hf_refuses_what_is_not_a_bart_directory(tmp_path):
    with pytest.raises(UserError, match="is not a Hugging Face model directory \\(no config.json\\)"):
        load_hf(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(UserError, match="cannot read"):
        load_hf(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(UserError, match="holds a bert model, not BART"):
        load_hf(tmp_path)
