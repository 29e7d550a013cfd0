"""The training loop end to end on tiny models: learning, monitoring, exact resume, failures."""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
from pathlib import Path

import pytest
import torch
from helpers import run_training, scalars, train_until_interrupted
from safetensors.torch import load_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from data_prep.errors import UserError
from data_prep.shards import file_digest
from pretrain.__main__ import main
from pretrain.runlog import summarize

pytestmark = pytest.mark.slow  # end-to-end: trains, or prepares in several processes


@pytest.fixture(scope="module")
def learned_run(shards, tmp_path_factory) -> Path:
    """60 steps of a tiny model with an eval and a checkpoint every 15 steps."""
    out = tmp_path_factory.mktemp("learn") / "run"
    run_training(
        shards,
        out,
        **{
            "train.max_steps": 60,
            "train.eval_every": 15,
            "train.save_every": 15,
            "train.keep_checkpoints": 2,
            "train.keep_exports": 3,
            "train.log_every": 5,
            "model.dropout": 0.0,
        },
    )
    return out


def test_loss_falls_and_accuracy_on_corrupted_tokens_rises(learned_run):
    s = scalars(learned_run)
    loss = [v for _, v in s["train/loss"]]
    assert loss[-1] < loss[0] - 0.5
    acc = [v for _, v in s["eval/accuracy"]]
    assert [step for step, _ in s["eval/accuracy"]] == [15, 30, 45, 60]
    assert acc[-1] > acc[0] + 0.05 and acc[-1] > 0.2
    baseline = [v for _, v in s["eval/unigram_accuracy"]]
    assert len(set(baseline)) == 1 and 0 < baseline[0] < 1 and acc[-1] > baseline[0]


def test_tensorboard_scalars_text_and_hparams(learned_run):
    s = scalars(learned_run)
    for tag in [
        "train/loss",
        "train/lr",
        "train/grad_norm",
        "train/tokens_per_sec",
        "train/fill_ratio",
        "train/examples_per_sec",
        "eval/loss",
        "eval/accuracy",
        "eval/token_accuracy",
    ]:
        assert tag in s and all(math.isfinite(v) for _, v in s[tag]), tag
    assert all(0 < v <= 1 for _, v in s["train/fill_ratio"])
    assert [step for step, _ in s["train/loss"]] == list(range(5, 61, 5))
    lr = dict(s["train/lr"])  # linear warmup over 6 steps to 3e-3, then linear decay to 0
    assert lr[5] == pytest.approx(3e-3 * 5 / 6) and lr[60] == 0 and lr[30] == pytest.approx(3e-3 * 30 / 54)

    acc = EventAccumulator(str(learned_run / "tensorboard"), size_guidance={"tensors": 0})
    acc.Reload()
    texts = {
        tag: [e.tensor_proto.string_val[0].decode() for e in acc.Tensors(tag)]
        for tag in acc.Tags()["tensors"]
    }
    samples = texts["samples/fill_in/text_summary"]
    assert len(samples) == 4
    assert "中国的首都是[MASK]京" in samples[-1] and "刘强[MASK]" in samples[-1]
    rows = [line for line in samples[-1].splitlines() if line.startswith("| ") and "prompt" not in line]
    cells = [[c.strip() for c in row.split("|")[1:-1]] for row in rows]
    assert len(cells) == 4 and all(len(c) == 3 and re.search(r"[\u4e00-\u9fff]", c[0]) for c in cells)
    assert [bool(c[2]) for c in cells] == [False, False, True, True]  # held-out rows show the original
    assert all("[MASK]" not in c[2] and re.search(r"[\u4e00-\u9fff]", c[2]) for c in cells[2:])
    assert "[UNK]" not in samples[-1]
    assert '"seq_length": 48' in texts["run/manifest/text_summary"][0]
    assert "max_steps: 60" in texts["run/config/text_summary"][0]  # config.yaml in the Text tab
    # the hyper-parameters live in the run itself (no sub-run per launch), linked to the eval metrics
    assert [p for p in (learned_run / "tensorboard").iterdir() if p.is_dir()] == []
    assert "run/global_batch" not in s  # constants are hyper-parameters, not scalars
    data = {
        tag: HParamsPluginData.FromString(acc.SummaryMetadata(tag).plugin_data.content)
        for tag in ("_hparams_/experiment", "_hparams_/session_start_info")
    }
    assert {m.name.tag for m in data["_hparams_/experiment"].experiment.metric_infos} == {
        "eval/loss",
        "eval/accuracy",
    }
    started = data["_hparams_/session_start_info"].session_start_info.hparams
    assert started["train.lr"].number_value == 0.003 and started["run.global_batch"].number_value == 4


def test_checkpoints_exports_and_report(learned_run):
    assert sorted(p.name for p in (learned_run / "checkpoints").iterdir()) == ["step-45", "step-60"]
    exports = sorted(p.name for p in (learned_run / "hf").iterdir())
    assert exports == ["final", "step-30", "step-45", "step-60"]
    state = json.loads((learned_run / "checkpoints" / "step-60" / "trainer_state.json").read_text())
    assert state["step"] == 60 and state["bad_steps"] == 0
    report = summarize(learned_run)
    assert re.search(r"steps:\s+60 / 60 \(100.0%\)", report) and "best eval loss" in report
    assert "tokens/s" in report and "finished" in report


def test_exact_resume_after_a_crash(shards, tmp_path):
    """Killed during step 6 (last checkpoint: step 4) and resumed == never interrupted, bit for bit."""
    settings = {"train.max_steps": 8, "train.save_every": 4, "data.num_workers": 1}  # dropout on
    whole = run_training(shards, tmp_path / "whole", **settings)
    train_until_interrupted(shards, tmp_path / "resumed", 6, **settings)
    assert not (tmp_path / "resumed" / "hf" / "final").exists()
    resumed = run_training(shards, tmp_path / "resumed", **settings, **{"train.resume": "auto"})

    a, b = load_file(whole / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert scalars(tmp_path / "whole")["train/loss"] == scalars(tmp_path / "resumed")["train/loss"]


def test_nan_loss_is_skipped_then_stops_with_the_last_checkpoint_intact(shards, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(UserError, match=r"NaN/inf for 3 steps in a row .*Last good checkpoint: .*step-1"):
        run_training(
            shards,
            out,
            **{
                "train.lr": 1e30,
                "train.warmup_ratio": 0,
                "train.save_every": 1,
                "train.max_bad_steps": 3,
                "train.max_steps": 50,
            },
        )
    ckpts = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert ckpts == ["step-1"]
    assert json.loads((out / "checkpoints" / "step-1" / "trainer_state.json").read_text())["step"] == 1


def test_damaged_newest_checkpoint_falls_back_to_the_previous(shards, tmp_path, caplog):
    out = tmp_path / "run"
    run_training(shards, out, **{"train.max_steps": 4, "train.save_every": 2})
    (out / "checkpoints" / "step-4" / "pytorch_model.bin").write_bytes(b"garbage")
    (out / "checkpoints" / ".tmp-step-6").mkdir()  # a save that crashed half-way is ignored
    run_training(shards, out, **{"train.max_steps": 6, "train.save_every": 2, "train.resume": "auto"})
    assert "checkpoint" in caplog.text and "damaged" in caplog.text
    assert (out / "checkpoints" / "step-6" / "trainer_state.json").is_file()
    assert [s for s, _ in scalars(out)["train/loss"]] == [1, 2, 3, 4, 5, 6]
    explicit = out / "checkpoints" / "step-6"
    (explicit / "optimizer.bin").write_bytes(b"")
    with pytest.raises(UserError, match="cannot load checkpoint"):
        run_training(shards, out, **{"train.max_steps": 8, "train.resume": str(explicit)})


def test_bad_input_is_a_user_error(shards, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="no manifest.json"):
        run_training(empty, tmp_path / "a")
    with pytest.raises(UserError, match="data.path is not set"):
        run_training("", tmp_path / "a")
    with pytest.raises(UserError, match=r"model.vocab_size is 21128 but the data's tokenizer has \d+ tokens"):
        run_training(shards, tmp_path / "b", **{"model.vocab_size": 21128})
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not empty and holds no run"):
        run_training(shards, stranger)
    run = tmp_path / "run"
    run_training(shards, run, **{"train.max_steps": 2})
    with pytest.raises(UserError, match="already holds a run: pass --train.resume auto"):
        run_training(shards, run, **{"train.max_steps": 2})
    with pytest.raises(UserError, match=r"holds a different run \(differs in model.d_model\)"):
        run_training(shards, run, **{"train.max_steps": 2, "train.resume": "auto", "model.d_model": 48})

    other_vocab = tmp_path / "other_vocab"
    shutil.copytree(shards, other_vocab)
    vocab = other_vocab / "tokenizer" / "vocab.txt"
    vocab.write_text(vocab.read_text(encoding="utf-8") + "[unused1]\n", encoding="utf-8")
    with pytest.raises(UserError, match="not the vocab the shards were made with"):
        run_training(other_vocab, tmp_path / "c")
    manifest = json.loads((other_vocab / "manifest.json").read_text())
    manifest["vocab_sha256"] = hashlib.sha256(vocab.read_bytes()).hexdigest()
    manifest["files"]["tokenizer/vocab.txt"] = file_digest(vocab)  # a consistent other vocab
    (other_vocab / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match=r"holds a different run \(differs in vocab_sha256\)"):
        run_training(other_vocab, run, **{"train.max_steps": 4, "train.resume": "auto"})


def test_a_launch_that_fails_its_checks_writes_nothing(shards, tmp_path, capsys):
    """Every check runs before the run directory is written, so the corrected command just works."""
    out = tmp_path / "run"
    argv = ["--config", str(Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml")]
    argv += ["--data.path", str(shards), "--train.output_dir", str(out), "--noise.mask_ratio", "1.5"]
    assert main(argv) == 2
    assert "'mask_ratio' must be between 0 and 1" in capsys.readouterr().err and not out.exists()
    for bad in (
        {"train.batch_size": 10_000},  # fewer examples than one batch: found while building the sampler
        {"model.attn_implementation": "magic"},
        {"model.max_position_embeddings": 16},  # shorter than the data's sequences
        {"train.mixed_precision": "fp16"},  # needs a GPU
    ):
        with pytest.raises(UserError):
            run_training(shards, out, **bad)
        assert not out.exists(), bad
    run_training(shards, out, **{"train.max_steps": 2})
    assert (out / "hf" / "final" / "model.safetensors").is_file()


def test_a_directory_without_a_checkpoint_is_not_a_run_yet(shards, tmp_path):
    """Interrupted before its first checkpoint, a run directory is reused by a new command, even one
    with other settings, with or without --train.resume auto; its earlier logs are replaced."""
    out = tmp_path / "run"
    train_until_interrupted(shards, out, 3, **{"train.save_every": 4})
    assert (out / "run.json").is_file() and not (out / "checkpoints").exists()
    run_training(shards, out, **{"train.max_steps": 4, "noise.mask_ratio": 0.3, "train.resume": "auto"})
    assert json.loads((out / "run.json").read_text())["noise"]["mask_ratio"] == 0.3
    assert [s for s, _ in scalars(out)["train/loss"]] == [1, 2, 3, 4]
    assert len(list((out / "tensorboard").glob("events.out.tfevents.*"))) == 1  # the earlier attempt's went
    with pytest.raises(UserError, match="already holds a run"):  # now it is one
        run_training(shards, out, **{"train.max_steps": 4, "noise.mask_ratio": 0.2})

    other = tmp_path / "other"
    train_until_interrupted(shards, other, 3, **{"train.save_every": 4})
    run_training(shards, other, **{"train.max_steps": 2, "model.d_model": 48})  # no resume, other model
    assert json.loads((other / "run.json").read_text())["model"]["d_model"] == 48


def test_empty_train_split(shards, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(shards, broken)
    shutil.rmtree(broken / "train")
    with pytest.raises(UserError, match=r"broken/train/\S+ is missing \(listed in manifest.json\)"):
        run_training(broken, tmp_path / "a")


def test_without_a_terminal_each_log_interval_is_one_plain_line(shards, tmp_path, capsys):
    run_training(shards, tmp_path / "run", **{"train.max_steps": 4, "train.log_every": 2})
    out, err = capsys.readouterr()
    assert "\r" not in err  # no progress bar: stderr is not a terminal here
    lines = [line for line in out.splitlines() if re.match(r"step \d+/\d+ loss ", line)]
    assert [line.split()[1] for line in lines] == ["2/4", "4/4"]
    assert re.fullmatch(
        r"step 4/4 loss \d+\.\d{4} lr \S+ grad_norm \d+\.\d{3} tokens/s [\d,]+ "
        r"elapsed \d:\d\d:\d\d eta 0:00:00",
        lines[-1],
    ), lines[-1]
    summary = next(line for line in out.splitlines() if line.startswith("model: "))
    assert re.search(
        r"M parameters; plan: 4 steps x 4 examples = [\d,]+ target tokens, 0\.12 epochs", summary
    )
    assert "real-token fill ratio 9" in summary
