"""The GPU fast path, proved on CPU: each change trains on the same loss and gradients as the plain path.

Plain path = transformers' own loss over the full logits, with the decoder padding mask, one micro-batch
holding the whole optimizer step. Exact where the arithmetic is the same; else fp32 tolerance.
"""

from __future__ import annotations

import copy
import importlib
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import ROOT, tiny_overrides
from transformers import BartConfig, BartForConditionalGeneration

from pretrain.collate import IGNORE_INDEX, DenoisingCollator
from pretrain.config import load_config
from pretrain.loss import LinearCrossEntropy, labelled_rows, use_fused_loss
from pretrain.model import share_token_embeddings, train_logits_bias
from pretrain.stepstats import StepStats
from pretrain.train import Trainer, build, train_step

sys.path.insert(0, str(ROOT / "bench"))
gpu_probe = importlib.import_module("gpu_probe")
VARIANTS = gpu_probe.VARIANTS

PAD, CLS, SEP = 0, 2, 3
TOLERANCE = {"rtol": 1e-5, "atol": 1e-7}  # fp32: the sums run in another order


def tiny_bart(
    bias: bool = True, tie: bool = True, trained_bias: bool = False
) -> BartForConditionalGeneration:
    """``tie``: lm_head is the token embedding; else UER-py's head (one token embedding for encoder and
    decoder, lm_head apart), with ``trained_bias`` the output bias a parameter, as build_model makes them."""
    torch.manual_seed(0)
    config = BartConfig(
        vocab_size=97, d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64,
        dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, pad_token_id=PAD, bos_token_id=CLS,
        eos_token_id=SEP, decoder_start_token_id=CLS, tie_word_embeddings=tie,
    )  # fmt: skip
    model = BartForConditionalGeneration._from_config(config, attn_implementation="sdpa")
    if bias:  # a unigram-like final_logits_bias, as init_logits_bias: unigram gives
        with torch.no_grad():
            model.final_logits_bias.normal_()
    if not tie:
        share_token_embeddings(model, loaded=False)
    if trained_bias:
        train_logits_bias(model)
    return model


def examples(lengths: list[tuple[int, int]], seed: int = 0) -> list[dict[str, list[int]]]:
    rng = np.random.default_rng(seed)
    row = lambda n: [CLS, *rng.integers(5, 97, n - 2).tolist(), SEP]  # noqa: E731
    return [{"input_ids": row(s), "labels": row(t)} for s, t in lengths]


LENGTHS = [(9, 12), (20, 5), (14, 17), (3, 30)]


def loss_and_grads(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
    model.zero_grad(set_to_none=True)
    loss = model(**batch).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


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


# -- the real train_step ----------------------------------------------------------------------------------


def trainer(shards, tmp_path, **overrides) -> Trainer:
    from accelerate.state import AcceleratorState, GradientState, PartialState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    PartialState._reset_state()
    settings = {"model.dropout": 0.0, "model.attention_dropout": 0.0, "model.activation_dropout": 0.0}
    return build(load_config(None, tiny_overrides(shards, tmp_path / "run", **{**settings, **overrides})))


def step_grads(t: Trainer, batches: list[dict[str, torch.Tensor]]) -> tuple[float, dict[str, torch.Tensor]]:
    """Run one real ``train_step``; the gradients it hands to the optimizer, and the step's loss."""
    seen: dict[str, torch.Tensor] = {}

    def capture(*args, **kwargs):
        seen.update({n: p.grad.clone() for n, p in t.model.named_parameters() if p.grad is not None})

    t.optimizer.step = capture
    stats = StepStats.start(t.accelerator.device, 0)
    train_step(t, iter(batches), stats)
    return float(stats.loss), seen


def test_token_weighted_loss_is_the_same_for_8x1_and_2x4_and_the_plain_full_batch(shards, tmp_path):
    rows = examples([(9, 12), (20, 5), (14, 17), (3, 30), (25, 4), (6, 6), (11, 40), (30, 9)], seed=1)
    one = trainer(shards, tmp_path / "a", **{"train.batch_size": 8})
    vocab_size = one.model.config.vocab_size
    for row in rows:  # the ids must fit the shards' vocab
        row["input_ids"] = [i % vocab_size for i in row["input_ids"]]
        row["labels"] = [i % vocab_size for i in row["labels"]]
    loss_1, grads_1 = step_grads(one, [one.collate(rows)])

    four = trainer(shards, tmp_path / "b", **{"train.batch_size": 2, "train.grad_accum": 4})
    assert four.plan.grad_accum == 4 and four.collate.decoder_attention_mask is False
    loss_4, grads_4 = step_grads(four, [four.collate(rows[i : i + 2]) for i in range(0, 8, 2)])

    plain = trainer(
        shards,
        tmp_path / "c",
        **{"train.batch_size": 8, "train.loss_chunks": 0, "data.decoder_attention_mask": True},
    )
    batch = plain.collate(rows)
    assert "decoder_attention_mask" in batch
    loss_p, grads_p = loss_and_grads(plain.model, batch)

    assert loss_1 == pytest.approx(float(loss_p), rel=1e-6) and loss_4 == pytest.approx(loss_1, rel=1e-6)
    assert grads_1.keys() == grads_4.keys() == grads_p.keys()
    torch.testing.assert_close(grads_1, grads_p, **TOLERANCE)
    torch.testing.assert_close(grads_4, grads_1, **TOLERANCE)


def test_a_nan_step_is_skipped_on_the_device_and_train_step_never_reads_the_device(
    shards, tmp_path, monkeypatch
):
    t = trainer(shards, tmp_path)
    batch = t.collate([t.loader.dataset[(0, i)] for i in range(4)])
    stats = StepStats.start(t.accelerator.device, 0)

    reads = ("item", "tolist", "__float__", "__int__", "__bool__")
    originals = {name: getattr(torch.Tensor, name) for name in reads}
    inside_model = []

    def guard(name: str):
        def read(self, *args, **kwargs):
            assert inside_model, f"train_step called Tensor.{name}: a host-device sync"
            return originals[name](self, *args, **kwargs)

        return read

    forward = t.model.forward

    def model_forward(**batch):  # transformers' eager mask helpers read the masks (compiled, they do not)
        inside_model.append(1)
        try:
            return forward(**batch)
        finally:
            inside_model.pop()

    def weights() -> dict[str, torch.Tensor]:
        return {n: p.detach().clone() for n, p in t.model.named_parameters()}

    t.model.forward = model_forward
    with monkeypatch.context() as patch:
        for name in reads:
            patch.setattr(torch.Tensor, name, guard(name))
        before = weights()
        train_step(t, iter([batch]), stats)  # a good step
        good = weights()
        with torch.no_grad():
            t.model.model.shared.weight[5, 0] = math.nan
        poisoned = weights()
        train_step(t, iter([batch]), stats)  # NaN loss and gradients: skipped, twice
        train_step(t, iter([batch]), stats)
    assert all(
        not torch.equal(before[n], good[n])
        for n in ("model.shared.weight", "model.encoder.layers.0.fc1.weight")
    )
    torch.testing.assert_close(weights(), poisoned, rtol=0, atol=0, equal_nan=True)
    assert all(int(s["step"]) == 1 for s in t.optimizer.optimizer.state.values())  # skips did not count
    applied, worst, grad_norm = stats.read(t.state)
    window = t.state  # the loss window lives in the state
    assert (applied, worst, window.window_steps, t.state.bad_steps, t.state.bad_streak) == (False, 2, 1, 2, 2)
    assert math.isfinite(window.window_loss) and window.window_loss > 0 and not math.isfinite(grad_norm)


@pytest.mark.slow  # ~30 s of tracing on 2 CPU cores
def test_compiled_training_does_not_recompile_after_warm_up(shards, tmp_path, monkeypatch):
    """``train.compile true`` through the real build and train_step, on batches of changing lengths: after
    the warm-up (a static graph, then one that makes the source and the target lengths dynamic) no batch
    compiles again. The fused loss traces into the same single graph (no graph break). aot_eager stands
    in for inductor: recompiles are decided by dynamo, before the backend."""
    import torch._dynamo.utils

    compile_ = torch.nn.Module.compile
    monkeypatch.setattr(
        torch.nn.Module, "compile", lambda self, **kw: compile_(self, backend="aot_eager", **kw)
    )
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    t = trainer(shards, tmp_path, **{"train.compile": "true"})
    rows = [t.loader.dataset[(0, i)] for i in range(40)]
    cuts = [(48, 48), (40, 48), (32, 24), (48, 16), (24, 40), (16, 8), (44, 36), (12, 30), (47, 47), (9, 9)]
    stats, shapes, compiled = StepStats.start(t.accelerator.device, 0), set(), []
    for i, (src, tgt) in enumerate(cuts):
        chunk = rows[4 * i : 4 * i + 4]
        batch = t.collate(
            [
                {"input_ids": r["input_ids"][: src - j], "labels": r["labels"][: tgt - j]}
                for j, r in enumerate(chunk)
            ]
        )
        shapes.add((batch["input_ids"].shape, batch["labels"].shape))
        train_step(t, iter([batch]), stats)
        compiled.append(torch._dynamo.utils.counters["frames"]["ok"])
    assert len(shapes) == 8 and compiled[0] == 1
    assert compiled[2] == compiled[-1] <= 3, compiled  # nothing compiles after the third batch
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == compiled[-1]
    assert not torch._dynamo.utils.counters["graph_break"]
    assert stats.read(t.state)[0] and t.state.window_steps == len(cuts) and math.isfinite(t.state.window_loss)


# -- the GPU probe ------------------------------------------------------------------------------------------


@pytest.mark.slow  # ~30 s: 11 variants of a tiny model, then the CLI
def test_gpu_probe_tiny_prints_the_table(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu_probe.py"), "--tiny", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    table = done.stdout[done.stdout.index("| variant |") :].strip().splitlines()
    assert table[0].split("|")[1:-1] == [
        " variant ", " ms/step ", " target tokens/s ", " MFU (honest) ", " peak GB ", " syncs/step ",
        " attention kernel ",
    ]  # fmt: skip
    rows = {line.split("|")[1].strip(): line.split("|")[2:-1] for line in table[2:]}
    assert len(rows) == len(VARIANTS) + 2 and all(any(k.startswith(n) for k in rows) for n, _ in VARIANTS)

    def row(prefix: str) -> list[str]:
        return next(cells for name, cells in rows.items() if name.startswith(prefix))

    assert float(row("shipped 8x8 eager")[1].replace(",", "")) > 0  # target tokens/s
    assert rows["fast eager, attention_dropout 0"][5].strip() == "flash"  # CPU flash: no dropout
    assert row("fast eager, attention_dropout 0.125")[5].strip() == "math"
    assert float(row("CLI: python -m pretrain")[1].replace(",", "")) > 0


def test_gpu_probe_names_what_is_missing(monkeypatch, capsys):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n: None if n in ("datasets", "snownlp") else find_spec(n)
    )
    assert gpu_probe.main([]) == 2
    assert capsys.readouterr().out.strip() == (
        "gpu_probe: missing packages: datasets snownlp (pip install them, or carry them in)"
    )


def test_fast_path_settings_are_checked(shards, tmp_path):
    from data_prep.errors import UserError
    from pretrain.plan import compile_model

    cfg = load_config(None, tiny_overrides(shards, tmp_path))
    assert cfg.train.compile == "auto" and compile_model(cfg.train) is torch.cuda.is_available()
    for value, expected in (("true", True), ("yes", True), ("false", False), ("no", False)):
        cfg.train.compile = value  # YAML true / false arrive as "yes" / "no"
        assert compile_model(cfg.train) is expected
    with pytest.raises(UserError, match="'train.compile' must be auto, true or false, not 'sometimes'"):
        load_config(None, tiny_overrides(shards, tmp_path, **{"train.compile": "sometimes"}))
    for key, value, why in (
        ("train.loss_chunks", -1, "at least 0"),
        ("data.pad_to_multiple_of", 0, "at least 1"),
    ):
        with pytest.raises(UserError, match=f"'{key}' must be {why}, not {value}"):
            load_config(None, tiny_overrides(shards, tmp_path, **{key: value}))
