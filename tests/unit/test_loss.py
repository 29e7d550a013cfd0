"""``pretrain.loss``, the GPU fast path's loss, proved on CPU: fused with the LM head and on the labelled
rows only, it gives the loss and gradients of transformers' own loss over the full logits, for every head
(tied, UER-py's, frozen or trained bias), in fp32 and under bf16 autocast. Exact where the arithmetic is
the same; else fp32 tolerance. (The decoder mask left out: tests/unit/test_collate.py; the token-weighted
step: tests/e2e/test_train_step_e2e.py.)"""

from __future__ import annotations

import copy

import pytest
import torch
from helpers import LENGTHS, PAD, TOLERANCE, examples, loss_and_grads, tiny_bart

from pretrain.collate import IGNORE_INDEX, DenoisingCollator
from pretrain.loss import LinearCrossEntropy, labelled_rows, use_fused_loss


@pytest.mark.parametrize("chunks", [1, 3, 64])  # 64 chunks > rows here: empty slices are fine
def test_fused_loss_equals_the_full_logits_loss(chunks):
    plain = tiny_bart()
    fused = copy.deepcopy(plain)
    use_fused_loss(fused, chunks)
    batch = DenoisingCollator(PAD, 8, decoder_attention_mask=False)(examples(LENGTHS))
    loss_a, grads_a = loss_and_grads(plain, batch)
    loss_b, grads_b = loss_and_grads(fused, batch)
    torch.testing.assert_close(loss_b, loss_a, **TOLERANCE)
    assert grads_a.keys() == grads_b.keys()  # the tied embeddings get the LM head's gradient too
    torch.testing.assert_close(grads_b, grads_a, **TOLERANCE)
    # without labels (evaluation, generation) the model is transformers' own
    batch.pop("labels")
    torch.testing.assert_close(fused(**batch).logits, plain(**batch).logits, rtol=0, atol=0)


HEADS = [(True, False), (False, False), (True, True), (False, True)]  # (tied, trained bias)


@pytest.mark.parametrize("chunks", [0, 3])
@pytest.mark.parametrize(("tie", "trained_bias"), HEADS)
def test_the_loss_on_the_labelled_rows_equals_transformers_for_every_head(chunks, tie, trained_bias):
    """Fused (``chunks`` 3) and plain (0), tied and UER-py's head, frozen and trained output bias: the loss
    on the labelled rows only has transformers' loss and gradients, the bias's included."""
    plain = tiny_bart(tie=tie, trained_bias=trained_bias)
    ours = copy.deepcopy(plain)
    use_fused_loss(ours, chunks)
    batch = DenoisingCollator(PAD, 8, decoder_attention_mask=False)(examples(LENGTHS))
    loss_a, grads_a = loss_and_grads(plain, batch)
    loss_b, grads_b = loss_and_grads(ours, batch)
    torch.testing.assert_close(loss_b, loss_a, **TOLERANCE)
    assert grads_a.keys() == grads_b.keys()
    torch.testing.assert_close(grads_b, grads_a, **TOLERANCE)
    assert ("final_logits_bias" in grads_b) == trained_bias and ("lm_head.weight" in grads_b) == (not tie)
    if not tie:  # one token embedding for encoder and decoder, as UER-py: named once, one gradient
        assert "model.encoder.embed_tokens.weight" not in grads_b and "model.shared.weight" in grads_b
    # the labelled rows found on the host (as train_step passes them) give the very same loss
    rows = labelled_rows(batch["labels"], max(chunks, 1))
    loss_c, grads_c = loss_and_grads(ours, {**batch, "label_rows": rows})
    assert torch.equal(loss_c, loss_b) and all(torch.equal(grads_c[k], grads_b[k]) for k in grads_b)


@pytest.mark.parametrize("chunks", [0, 2])
def test_only_the_labelled_rows_reach_the_lm_head(monkeypatch, chunks):
    """The padded decoder rows (label -100) are dropped before the LM head, in either path."""
    model = tiny_bart()
    use_fused_loss(model, chunks)
    batch = DenoisingCollator(PAD, 16, decoder_attention_mask=False)(examples(LENGTHS))
    labelled = int((batch["labels"] != IGNORE_INDEX).sum())
    assert labelled < batch["labels"].numel() / 2  # mostly padding: lengths 4..29 padded to 32
    rows: list[int] = []
    lm_head = model.lm_head.forward
    monkeypatch.setattr(model.lm_head, "forward", lambda h: rows.append(h.shape[0]) or lm_head(h))
    apply = LinearCrossEntropy.apply
    monkeypatch.setattr(LinearCrossEntropy, "apply", lambda h, *a: rows.append(h.shape[0]) or apply(h, *a))
    model(**batch).loss.backward()
    assert rows == [labelled + labelled % 2] if chunks else [labelled]  # even slices: one ignored row more


def test_labelled_rows_are_padded_to_even_slices_with_an_ignored_row():
    labels = torch.tensor([[5, 6, 7, IGNORE_INDEX], [8, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]])
    assert labelled_rows(labels).tolist() == [0, 1, 2, 4]
    assert labelled_rows(labels, 3).tolist() == [0, 1, 2, 4, 8, 8]  # 8 = labels.numel(): the extra row
    assert labelled_rows(labels, 4).tolist() == [0, 1, 2, 4]


def test_fused_loss_in_bf16_matches_the_autocast_lm_head():
    """Under bf16 autocast both run the LM head matmul in bf16 and the softmax in fp32."""
    hidden = torch.randn(37, 32, requires_grad=True)
    weight = torch.randn(97, 32, requires_grad=True)
    bias, labels = torch.randn(97), torch.randint(0, 97, (37,))
    labels[::5] = IGNORE_INDEX
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = torch.nn.functional.linear(hidden, weight) + bias
    plain = torch.nn.functional.cross_entropy(logits, labels, reduction="sum")
    plain.backward()
    expected = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None
    fused = LinearCrossEntropy.apply(hidden, weight, bias, labels, 4, torch.bfloat16)
    fused.backward()
    torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(hidden.grad, expected[0], rtol=2e-2, atol=1e-2)  # bf16 products
    torch.testing.assert_close(weight.grad, expected[1], rtol=2e-2, atol=1e-2)


def test_fused_loss_gives_a_trained_bias_its_gradient_in_bf16():
    hidden, weight = torch.randn(37, 32), torch.randn(97, 32)
    bias, labels = torch.randn(97, requires_grad=True), torch.randint(0, 97, (37,))
    labels[::5] = IGNORE_INDEX
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = torch.nn.functional.linear(hidden, weight) + bias
    torch.nn.functional.cross_entropy(logits, labels, reduction="sum").backward()
    expected, bias.grad = bias.grad.clone(), None
    LinearCrossEntropy.apply(hidden, weight, bias, labels, 4, torch.bfloat16).backward()
    assert bias.grad.dtype == torch.float32
    torch.testing.assert_close(bias.grad, expected, rtol=1e-5, atol=1e-5)  # softmax and sums in fp32
