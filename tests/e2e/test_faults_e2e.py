"""Faults in training runs: damaged checkpoints are detected and fallen back from; nothing we load runs
code; interrupted saves, exports and prunes are completed or cleaned; a full disk is a one-line error that
a rerun recovers from; planted links are never written through. (Damaged shards: tests/unit/test_shards.py;
interrupted and hostile ``prepare`` runs: tests/unit/test_job.py, test_merge.py and test_prepare.py.)"""

from __future__ import annotations

import errno
import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from helpers import run_training, scalars, write_shards
from safetensors.torch import load_file

from data_prep.__main__ import main as data_main
from data_prep.errors import UserError
from data_prep.shards import ShardDir


class Planted:
    """A pickle that runs code when it is unpickled (it creates ``marker``)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


pytestmark = [pytest.mark.slow, pytest.mark.faults]  # trains; counted by bench/faults.py


# -- checkpoints ------------------------------------------------------------------------------------------

STEPS = {"train.max_steps": 4, "train.save_every": 2, "train.eval_every": 100}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> tuple[Path, Path]:
    """Shards and a 4-step run with checkpoints at steps 2 and 4 (copy it before damaging it)."""
    root = tmp_path_factory.mktemp("faults")
    data = write_shards(root / "shards")
    out = root / "run"
    run_training(data, out, **STEPS)
    return data, out


def copy_run(finished_run, tmp_path: Path) -> tuple[Path, Path]:
    data, out = finished_run
    return data, Path(shutil.copytree(out, tmp_path / "run"))


def losses(out: Path) -> list[tuple[int, float]]:
    return scalars(out)["train/loss"]


def test_nothing_in_a_checkpoint_is_unpickled_as_code(finished_run, tmp_path):
    data, out = copy_run(finished_run, tmp_path)
    marker = tmp_path / "pwned"
    for name in ("custom_checkpoint_0.pkl", "custom_checkpoint_1.pkl"):  # where accelerate pickles state
        (out / "checkpoints" / "step-4" / name).write_bytes(pickle.dumps(Planted(marker)))
    run_training(data, out, **{**STEPS, "train.max_steps": 6, "train.resume": "auto"})
    assert not marker.exists()
    # A planted pickle in place of a file we do load, with its checksum forged too: weights_only refuses.
    step6 = out / "checkpoints" / "step-6"
    rng = step6 / "random_states_0.pkl"
    rng.write_bytes(pickle.dumps({"random_state": Planted(marker)}))
    state = json.loads((step6 / "trainer_state.json").read_text())
    from data_prep.shards import file_digest

    state["files"]["random_states_0.pkl"] = file_digest(rng)
    (step6 / "trainer_state.json").write_text(json.dumps(state))
    with pytest.raises(UserError, match="random_states_0.pkl cannot be loaded"):
        run_training(data, out, **{**STEPS, "train.max_steps": 8, "train.resume": str(step6)})
    assert not marker.exists()


def flip_a_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("name", "damage"),
    [
        ("random_states_0.pkl", lambda p: p.write_bytes(b"garbage")),  # accelerate would skip it silently
        ("pytorch_model.bin", flip_a_bit),  # same size, still a valid zip
        ("optimizer.bin", lambda p: p.write_bytes(p.read_bytes()[:100])),
        ("trainer_state.json", lambda p: p.write_text("{garbage")),
    ],
)
def test_a_damaged_checkpoint_file_falls_back_and_resume_stays_exact(
    finished_run, tmp_path, caplog, name, damage
):
    data, out = copy_run(finished_run, tmp_path)
    damage(out / "checkpoints" / "step-4" / name)
    run_training(data, out, **{**STEPS, "train.resume": "auto"})  # falls back to step 2, retrains 3-4
    assert "step-4 is damaged" in caplog.text and name in caplog.text
    assert losses(out) == losses(finished_run[1])
    assert (out / "checkpoints" / ".set-aside-step-4").is_dir()  # kept for a look, out of pruning's way
    final = [load_file(d / "hf" / "final" / "model.safetensors") for d in (out, finished_run[1])]
    assert all(torch.equal(final[0][k], final[1][k]) for k in final[0])


def test_resume_path_must_be_a_checkpoint_of_this_run(finished_run, tmp_path):
    data, out = copy_run(finished_run, tmp_path)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "trainer_state.json").write_text(json.dumps({"step": 3}))
    with pytest.raises(UserError, match="not written by this trainer"):
        run_training(data, out, **{**STEPS, "train.max_steps": 6, "train.resume": str(foreign)})
    (foreign / "trainer_state.json").write_text("{garbage")
    with pytest.raises(UserError, match="trainer_state.json cannot be read"):
        run_training(data, out, **{**STEPS, "train.max_steps": 6, "train.resume": str(foreign)})
    other = tmp_path / "other"
    run_training(data, other, **{**STEPS, "train.max_steps": 2, "train.seed": 8})
    with pytest.raises(UserError, match="belongs to another run"):
        run_training(
            data,
            out,
            **{**STEPS, "train.max_steps": 6, "train.resume": str(other / "checkpoints" / "step-2")},
        )


def test_resume_completes_a_cut_export_and_cleans_what_saves_and_prunes_left(finished_run, tmp_path):
    data, out = copy_run(finished_run, tmp_path)
    hf = out / "hf"
    expected = (hf / "step-4" / "model.safetensors").read_bytes()
    (hf / "step-4").rename(hf / ".tmp-step-4")  # killed while exporting step 4
    (hf / "step-2").rename(hf / ".del-step-2")  # ... while pruning step 2
    (hf / "final").rename(hf / ".old-final")  # ... between the two renames of replacing final
    (out / "checkpoints" / ".tmp-step-6").mkdir()
    run_training(data, out, **{**STEPS, "train.resume": "auto"})
    assert (hf / "step-4" / "model.safetensors").read_bytes() == expected
    assert (hf / "final").is_dir()
    leftovers = [p.name for d in (hf, out / "checkpoints") for p in d.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_a_full_disk_during_a_checkpoint_is_one_error_and_a_rerun_recovers(
    finished_run, tmp_path, monkeypatch
):
    from accelerate import Accelerator

    data, out = copy_run(finished_run, tmp_path)
    save_state = Accelerator.save_state

    def full(self, output_dir=None, **kwargs):
        save_state(self, output_dir, **kwargs)
        raise RuntimeError(
            "[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file"
        )

    monkeypatch.setattr(Accelerator, "save_state", full)
    with pytest.raises(UserError, match="cannot write checkpoint .*step-6.*intact"):
        run_training(data, out, **{**STEPS, "train.max_steps": 6, "train.resume": "auto"})
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-2", "step-4"]
    monkeypatch.setattr(Accelerator, "save_state", save_state)
    run_training(data, out, **{**STEPS, "train.max_steps": 6, "train.resume": "auto"})
    assert (out / "checkpoints" / "step-6" / "trainer_state.json").is_file()


def test_a_full_disk_during_an_export_is_one_error_and_resume_writes_it(finished_run, tmp_path, monkeypatch):
    from transformers import PreTrainedModel

    data, out = copy_run(finished_run, tmp_path)
    save_pretrained = PreTrainedModel.save_pretrained

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", full)
    with pytest.raises(UserError, match="cannot write the export .*step-6.*No space left"):
        run_training(data, out, **{**STEPS, "train.max_steps": 6, "train.resume": "auto"})
    assert (out / "checkpoints" / "step-6").is_dir() and not (out / "hf" / "step-6").exists()
    monkeypatch.setattr(PreTrainedModel, "save_pretrained", save_pretrained)
    run_training(data, out, **{**STEPS, "train.max_steps": 6, "train.resume": "auto"})
    assert (out / "hf" / "step-6" / "model.safetensors").is_file()
    assert not [p for p in (out / "hf").iterdir() if p.name.startswith(".")]


# -- planted files and foreign data -----------------------------------------------------------------------


def test_auto_map_in_an_init_from_config_is_never_run(finished_run, tmp_path):
    data, out = finished_run
    export = Path(shutil.copytree(out / "hf" / "final", tmp_path / "export"))
    marker = tmp_path / "pwned"
    (export / "evil.py").write_text(f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n")
    config = json.loads((export / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "evil.Config", "AutoModelForSeq2SeqLM": "evil.Model"}
    (export / "config.json").write_text(json.dumps(config))
    run_training(data, tmp_path / "run", **{**STEPS, "train.max_steps": 1, "model.init_from": str(export)})
    assert not marker.exists()


def test_output_dirs_that_are_files_or_inside_one_are_one_line_errors(finished_run, tmp_path):
    data, _ = finished_run
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UserError, match="exists and is not a directory"):
        run_training(data, blocker, **STEPS)
    with pytest.raises(UserError, match="lies inside a file"):
        run_training(data, blocker / "run", **STEPS)
    assert data_main(["prepare", "--input", str(blocker), "--tokenizer", "x", "--output", str(blocker)]) == 2


def test_symlinks_planted_in_an_output_dir_are_replaced_never_written_through(finished_run, tmp_path):
    data, out = copy_run(finished_run, tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")
    shutil.rmtree(out / "hf" / "step-2")
    (out / "hf" / "step-2").symlink_to(outside, target_is_directory=True)  # pruned at the next save
    (out / "config.yaml").unlink()
    (out / "config.yaml").symlink_to(outside / "keep.txt")  # rewritten at every launch
    run_training(data, out, **{**STEPS, "train.max_steps": 8, "train.resume": "auto"})
    assert (outside / "keep.txt").read_text() == "mine"
    assert not (out / "config.yaml").is_symlink() and not (out / "hf" / "step-2").exists()
    assert not [p for p in (out / "hf").iterdir() if p.name.startswith(".")]


def test_resuming_onto_other_data_with_the_same_vocab_is_refused(finished_run, tmp_path):
    data, out = copy_run(finished_run, tmp_path)
    other = write_shards(tmp_path / "other", n_docs=120)  # the same vocab, other documents
    assert ShardDir(other).vocab_sha256() == ShardDir(data).vocab_sha256()
    with pytest.raises(UserError, match=r"holds a different run \(differs in data\)"):
        run_training(other, out, **{**STEPS, "train.max_steps": 6, "train.resume": "auto"})
