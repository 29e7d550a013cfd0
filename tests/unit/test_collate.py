"""``DenoisingCollator``: dynamic padding, attention masks, teacher-forcing decoder inputs and labels; the
decoder padding mask left out (the GPU fast path) changes no loss or gradient and lets compiled attention
run causal without a mask."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import LENGTHS, examples, loss_and_grads, tiny_bart
from transformers.models.bart.modeling_bart import shift_tokens_right

from data_prep.noise import Denoiser, NoiseConfig, SpecialIds
from pretrain.collate import IGNORE_INDEX, DenoisingCollator

PAD, CLS, SEP, MSK = 0, 101, 102, 103
KEYS = ["input_ids", "attention_mask", "decoder_input_ids", "decoder_attention_mask", "labels"]


def example(src_len: int, tgt_len: int, dtype=np.int64) -> dict[str, np.ndarray]:
    """``[CLS] ... [SEP]`` rows whose text ids say where they come from (src 1000+, tgt 2000+)."""
    src = np.array([CLS, *range(1000, 1000 + src_len - 2), SEP], dtype=dtype)
    tgt = np.array([CLS, *range(2000, 2000 + tgt_len - 2), SEP], dtype=dtype)
    return {"input_ids": src, "labels": tgt}


def test_pads_to_the_longest_example_only():
    batch = [example(5, 8), example(9, 6), example(7, 10, dtype=np.uint16)]
    out = DenoisingCollator(pad_id=PAD)(batch)
    assert list(out) == KEYS
    assert all(t.dtype == torch.int64 for t in out.values())
    assert out["input_ids"].shape == (3, 9)  # the longest source, not 512
    assert out["decoder_input_ids"].shape == out["labels"].shape == (3, 9)  # longest target - 1
    for row, ex in enumerate(batch):
        src, tgt = ex["input_ids"].astype(np.int64), ex["labels"].astype(np.int64)
        n, m = len(src), len(tgt) - 1
        assert out["input_ids"][row, :n].tolist() == src.tolist()
        assert (out["input_ids"][row, n:] == PAD).all()
        assert out["attention_mask"][row].tolist() == [1] * n + [0] * (9 - n)
        assert out["decoder_input_ids"][row, :m].tolist() == tgt[:-1].tolist()
        assert out["decoder_input_ids"][row, 0] == CLS
        assert (out["decoder_input_ids"][row, m:] == PAD).all()
        assert out["decoder_attention_mask"][row].tolist() == [1] * m + [0] * (9 - m)
        assert out["labels"][row, :m].tolist() == tgt[1:].tolist()
        assert out["labels"][row, m - 1] == SEP
        assert (out["labels"][row, m:] == IGNORE_INDEX).all()
    assert (out["labels"] == PAD).sum() == 0  # padding is -100, never the pad id


def test_one_example_batch_has_no_padding():
    out = DenoisingCollator(pad_id=PAD)([example(6, 6)])
    assert out["attention_mask"].all() and out["decoder_attention_mask"].all()
    assert (out["labels"] != IGNORE_INDEX).all()


@pytest.mark.parametrize(("multiple", "src_width", "tgt_width"), [(8, 16, 16), (4, 12, 12), (1, 9, 9)])
def test_pad_to_multiple_of(multiple, src_width, tgt_width):
    batch = [example(9, 10), example(3, 4)]
    out = DenoisingCollator(pad_id=PAD, pad_to_multiple_of=multiple)(batch)
    assert out["input_ids"].shape == out["attention_mask"].shape == (2, src_width)
    assert out["labels"].shape == out["decoder_input_ids"].shape == (2, tgt_width)
    assert out["attention_mask"].sum(1).tolist() == [9, 3]
    assert out["decoder_attention_mask"].sum(1).tolist() == [9, 3]
    assert (out["labels"][:, 9:] == IGNORE_INDEX).all() and (out["input_ids"][:, 9:] == PAD).all()
    exact = DenoisingCollator(pad_id=PAD, pad_to_multiple_of=8)([example(8, 9)])
    assert exact["input_ids"].shape == exact["labels"].shape == (1, 8)  # a multiple already: unchanged


def test_accepts_lists_and_tensors():
    ex = example(5, 7)
    plain = DenoisingCollator(pad_id=PAD)([ex])
    as_lists = DenoisingCollator(pad_id=PAD)([{k: v.tolist() for k, v in ex.items()}])
    as_tensors = DenoisingCollator(pad_id=PAD)([{k: torch.from_numpy(v) for k, v in ex.items()}])
    for key in KEYS:
        assert torch.equal(plain[key], as_lists[key]) and torch.equal(plain[key], as_tensors[key])


def test_bad_batches_are_rejected():
    with pytest.raises(ValueError, match="empty batch"):
        DenoisingCollator(pad_id=PAD)([])
    with pytest.raises(ValueError, match="at least 2 tokens"):
        DenoisingCollator(pad_id=PAD)([{"input_ids": [CLS, SEP], "labels": [CLS]}])


def test_matches_bart_shift_tokens_right_on_noised_examples():
    """Labels shifted right the way BART does it (decoder_start_token_id = [CLS]) give the decoder inputs."""
    special = SpecialIds(pad=PAD, unk=100, cls=CLS, sep=SEP, mask=MSK, vocab_size=1000)
    rng = np.random.default_rng(0)
    batch = []
    for preset, length in [("uer", 40), ("bart", 17), ("uer", 3), ("bart", 64)]:
        ids = np.concatenate(([CLS], rng.integers(104, 1000, size=length - 2), [SEP]))
        src, tgt = Denoiser(NoiseConfig.from_preset(preset), special, seed=1)(ids, epoch=0, index=length)
        batch.append({"input_ids": src, "labels": tgt})
    out = DenoisingCollator(pad_id=PAD, pad_to_multiple_of=8)(batch)
    longest = max(len(b["input_ids"]) for b in batch)
    assert longest < 63 and out["input_ids"].shape[1] == -(-longest // 8) * 8  # noise shortens the sources
    assert out["labels"].shape[1] == 64
    assert out["attention_mask"].sum(1).tolist() == [len(b["input_ids"]) for b in batch]
    shifted = shift_tokens_right(out["labels"], PAD, CLS)
    real = out["decoder_attention_mask"].bool()
    assert torch.equal(shifted[real], out["decoder_input_ids"][real])
    assert (out["decoder_input_ids"][:, 0] == CLS).all()


def test_the_decoder_mask_can_be_left_out():
    """Left out (the trainer's default), the other tensors stay exactly the same."""
    batch = [example(5, 8), example(9, 6)]
    full = DenoisingCollator(pad_id=PAD, pad_to_multiple_of=8)(batch)
    lean = DenoisingCollator(pad_id=PAD, pad_to_multiple_of=8, decoder_attention_mask=False)(batch)
    assert list(lean) == [k for k in KEYS if k != "decoder_attention_mask"]
    assert all(torch.equal(lean[k], full[k]) for k in lean)


# -- the decoder padding mask, left out on the fast path ----------------------------------------------------


def test_dropping_the_decoder_mask_is_bit_identical():
    """Right-padded decoder inputs: the causal mask already hides the pads from every real position."""
    model, batch = tiny_bart(), examples(LENGTHS)
    with_mask = DenoisingCollator(PAD, 8, decoder_attention_mask=True)(batch)
    without = DenoisingCollator(PAD, 8, decoder_attention_mask=False)(batch)
    assert "decoder_attention_mask" not in without and (with_mask["decoder_attention_mask"] == 0).any()
    loss_a, grads_a = loss_and_grads(model, with_mask)
    loss_b, grads_b = loss_and_grads(model, without)
    assert torch.equal(loss_a, loss_b)
    assert grads_a.keys() == grads_b.keys() and all(torch.equal(grads_a[k], grads_b[k]) for k in grads_a)


@pytest.mark.parametrize("decoder_mask", [False, True])
def test_compiled_decoder_self_attention_is_causal_without_a_mask(monkeypatch, decoder_mask):
    """What SDPA is given under torch.compile: without the decoder padding mask, the decoder's
    self-attention gets ``is_causal`` and no mask (the case the flash kernel takes); with it, a 4D mask.
    The encoder's self-attention and the cross-attention keep the source padding mask either way."""
    sdpa, calls = torch.nn.functional.scaled_dot_product_attention, []

    def recording_sdpa(query, key, value, attn_mask=None, is_causal=False, **kw):  # runs while dynamo traces
        calls.append((attn_mask is not None, is_causal))
        return sdpa(query, key, value, attn_mask=attn_mask, is_causal=is_causal, **kw)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", recording_sdpa)
    torch._dynamo.reset()
    model = tiny_bart()
    batch = DenoisingCollator(PAD, 8, decoder_attention_mask=decoder_mask)(examples(LENGTHS))
    torch.compile(model, backend="eager", fullgraph=True)(**batch)
    decoder_self = (True, False) if decoder_mask else (False, True)
    assert calls == [(True, False), decoder_self, (True, False)]  # encoder, decoder self, cross
    torch._dynamo.reset()
