"""``pretrain.train.train_step``, the real one, on tiny trainers: the token-weighted loss is the same for
8 x 1, 2 x 4 and the plain full batch; a NaN step is skipped on the device and the step never reads the
device; compiled training does not recompile after its warm-up. (It takes optimizer steps: e2e.)"""

from __future__ import annotations

import math

import pytest
import torch
from helpers import TOLERANCE, examples, loss_and_grads, tiny_overrides

from pretrain.config import load_config
from pretrain.stepstats import StepStats
from pretrain.train import Trainer, build, train_step

pytestmark = pytest.mark.slow  # trains


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
