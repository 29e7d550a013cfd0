"""``pretrain.checkpoint`` on checkpoints written here (no training): ``verify`` names a wrong size or sha256,
a missing file, a foreign or older checkpoint and a bad RNG file; ``load_checkpoint`` falls back to the
previous complete checkpoint; ``save_checkpoint`` writes atomically. The accelerator is a fake."""

from __future__ import annotations

import json
import logging
import pickle
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from data_prep.errors import UserError
from data_prep.shards import file_digest
from pretrain.checkpoint import (
    FORMAT,
    VERSION,
    Damaged,
    TrainState,
    load_checkpoint,
    resume_candidates,
    run_id,
    save_checkpoint,
    verify,
)
from pretrain.rundir import RunDir

RUN = run_id({"model": {"d_model": 32}, "seed": 0})
RNG_STATES = {  # what accelerate keeps per rank (the CUDA key too, so the check passes on a GPU)
    "random_state": 1,
    "numpy_random_seed": 2,
    "torch_manual_seed": torch.arange(4),
    "torch_cuda_manual_seed": [torch.arange(4)],
}


def write_files(root: Path, step: int, ranks: int = 1) -> None:
    """What ``accelerator.save_state`` writes: the weights, the optimizer, one RNG file per rank."""
    root.mkdir(parents=True, exist_ok=True)
    torch.save({"w": torch.full((3,), float(step))}, root / "pytorch_model.bin")
    torch.save({"state": {}, "step": step}, root / "optimizer.bin")
    for rank in range(ranks):
        torch.save(RNG_STATES, root / f"random_states_{rank}.pkl")


def make_checkpoint(root: Path, step: int, run: str = RUN, ranks: int = 1, **meta) -> Path:
    """A complete checkpoint as ``save_checkpoint`` leaves it (``meta`` overrides trainer_state.json)."""
    write_files(root, step, ranks)
    state = TrainState(step=step, epoch=1, offset=8 * step, seconds=1.5 * step)
    files = {p.name: file_digest(p) for p in sorted(root.iterdir())}
    record = {
        **state.state_dict(),
        "format": FORMAT,
        "version": VERSION,
        "run": run,
        "processes": ranks,
        "scheduler": {"last_epoch": step},
        "files": files,
        **meta,
    }
    RunDir.state_file(root).write_text(json.dumps(record))
    return root


def rewrite_meta(path: Path, **changes) -> None:
    meta = json.loads(RunDir.state_file(path).read_text())
    RunDir.state_file(path).write_text(json.dumps({**meta, **changes}))


@pytest.fixture(autouse=True)
def accelerate_state():
    """The warnings go through accelerate's logger, which needs its process state."""
    from accelerate import PartialState

    PartialState(cpu=True)


@pytest.fixture
def ckpt(tmp_path) -> Path:
    return make_checkpoint(tmp_path / "step-4", 4)


# -- verify -----------------------------------------------------------------------------------------------


def test_a_sound_checkpoint_verifies_to_its_trainer_state(ckpt):
    meta = verify(ckpt, 0, 1, RUN)
    assert meta["step"] == 4 and meta["offset"] == 32 and meta["scheduler"] == {"last_epoch": 4}
    assert set(meta["files"]) == {"pytorch_model.bin", "optimizer.bin", "random_states_0.pkl"}


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda p: p.write_bytes(p.read_bytes()[:-7]), id="shorter"),
        pytest.param(lambda p: p.write_bytes(p.read_bytes() + b"\0"), id="longer"),
        pytest.param(flip_a_byte, id="same-size-other-sha256"),
        pytest.param(lambda p: p.unlink(), id="missing"),
    ],
)
@pytest.mark.parametrize("name", ["pytorch_model.bin", "optimizer.bin", "random_states_0.pkl"])
def test_a_file_of_another_size_or_sha256_or_missing_is_damage_naming_it(ckpt, name, damage):
    damage(ckpt / name)
    with pytest.raises(Damaged, match=rf"^{name} is missing or does not match its recorded size and sha256$"):
        verify(ckpt, 0, 1, RUN)


def test_a_recorded_size_or_sha256_that_is_wrong_is_caught_too(ckpt):
    """The check compares both: a forged size with the right hash fails, and so does the reverse."""
    files = json.loads(RunDir.state_file(ckpt).read_text())["files"]
    right = files["optimizer.bin"]
    for forged in ({**right, "bytes": right["bytes"] + 1}, {**right, "sha256": "0" * 64}):
        rewrite_meta(ckpt, files={**files, "optimizer.bin": forged})
        with pytest.raises(Damaged, match="optimizer.bin is missing or does not match"):
            verify(ckpt, 0, 1, RUN)
    rewrite_meta(ckpt, files=files)
    assert verify(ckpt, 0, 1, RUN)["step"] == 4


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": "something else"}, "trainer_state.json was not written by this trainer"),
        (
            {"version": VERSION - 1},
            f"version {VERSION - 1} of the checkpoint format; this trainer reads {VERSION}",
        ),
        ({"run": "0123456789abcdef"}, "belongs to another run"),
        ({"files": None}, "lacks its file list or scheduler state"),
        ({"scheduler": []}, "lacks its file list or scheduler state"),
        ({"files": {"../outside.bin": {"bytes": 1, "sha256": "0"}}}, "names a file outside the checkpoint"),
    ],
)
def test_a_checkpoint_of_another_trainer_version_or_run_is_refused(ckpt, change, message):
    rewrite_meta(ckpt, **change)
    with pytest.raises(Damaged, match=message):
        verify(ckpt, 0, 1, RUN)


def test_an_older_pickled_checkpoint_is_named_as_such_and_never_unpickled(ckpt, tmp_path):
    marker = tmp_path / "pwned"
    (ckpt / "custom_checkpoint_0.pkl").write_bytes(pickle.dumps(Planted(marker)))
    rewrite_meta(ckpt, format=None)
    with pytest.raises(Damaged, match="older version of this trainer"):
        verify(ckpt, 0, 1, RUN)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [("{garbage", "trainer_state.json cannot be read"), ("[1, 2]", "not a JSON object")],
)
def test_an_unreadable_trainer_state_is_damage(ckpt, content, message):
    RunDir.state_file(ckpt).write_text(content)
    with pytest.raises(Damaged, match=message):
        verify(ckpt, 0, 1, RUN)


class Planted:
    """A pickle that runs code when it is unpickled (it creates ``marker``)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def forge(path: Path, name: str, data: bytes) -> None:
    """Replace a file of the checkpoint and its recorded digest, as a planted file would come."""
    (path / name).write_bytes(data)
    files = json.loads(RunDir.state_file(path).read_text())["files"]
    rewrite_meta(path, files={**files, name: file_digest(path / name)})


def test_an_rng_file_that_does_not_load_or_holds_no_rng_state_is_damage(ckpt, tmp_path):
    forge(ckpt, "random_states_0.pkl", b"garbage")
    with pytest.raises(Damaged, match="random_states_0.pkl cannot be loaded"):
        verify(ckpt, 0, 1, RUN)
    marker = tmp_path / "pwned"
    forge(ckpt, "random_states_0.pkl", pickle.dumps({"random_state": Planted(marker)}))
    with pytest.raises(Damaged, match="random_states_0.pkl cannot be loaded"):
        verify(ckpt, 0, 1, RUN)
    assert not marker.exists()  # weights_only: nothing in it ran
    other = tmp_path / "other.pkl"
    torch.save({"random_state": 1}, other)
    forge(ckpt, "random_states_0.pkl", other.read_bytes())
    with pytest.raises(Damaged, match="random_states_0.pkl does not hold the RNG states"):
        verify(ckpt, 0, 1, RUN)


def test_each_rank_checks_its_own_rng_file_only(tmp_path):
    path = make_checkpoint(tmp_path / "step-2", 2, ranks=2)
    (path / "random_states_1.pkl").write_bytes(b"damaged")
    assert verify(path, 0, 2, RUN)["step"] == 2  # rank 0 never loads rank 1's file
    with pytest.raises(Damaged, match="random_states_1.pkl is missing or does not match"):
        verify(path, 1, 2, RUN)


def test_a_missing_rng_file_is_damage_unless_the_number_of_ranks_changed(tmp_path, caplog):
    path = make_checkpoint(tmp_path / "step-2", 2, ranks=1)
    with pytest.raises(Damaged, match="random_states_1.pkl is missing"):
        verify(path, 1, 1, RUN)  # saved by 1 process, read by "rank 1 of 1": its file should be there
    with caplog.at_level(logging.WARNING):
        assert verify(path, 1, 2, RUN)["step"] == 2  # saved by 1, resumed on 2: allowed, with a warning
    assert "saved by 1 processes, resuming on 2" in caplog.text


# -- the trainer state ------------------------------------------------------------------------------------


def test_the_train_state_round_trips_and_refuses_what_is_not_a_count():
    state = TrainState(step=7, epoch=2, offset=96, bad_steps=1, window_loss=2.5, window_steps=3, seconds=9.5)
    again = TrainState()
    again.load_state_dict(json.loads(json.dumps(state.state_dict())))
    assert again == state
    older = {k: v for k, v in state.state_dict().items() if k != "seconds"}  # saved before "seconds"
    again.load_state_dict(older)
    assert again.seconds == 0.0 and again.step == 7
    for key, bad in (
        ("step", -1),
        ("epoch", "2"),
        ("offset", True),
        ("window_loss", float("nan")),
        ("step", 1.5),
    ):
        with pytest.raises(ValueError, match=f"trainer state '{key}' is .*, not a count"):
            TrainState().load_state_dict({**state.state_dict(), key: bad})


# -- which checkpoints, and the fall-back ------------------------------------------------------------------


def cfg(resume: str) -> SimpleNamespace:
    return SimpleNamespace(train=SimpleNamespace(resume=resume))


def test_resume_auto_tries_the_complete_checkpoints_newest_first(tmp_path):
    rundir = RunDir(tmp_path / "run")
    for step in (2, 4, 10):
        make_checkpoint(rundir.checkpoint(step), step)
    write_files(rundir.checkpoint(12), 12)  # cut before trainer_state.json: incomplete, not a candidate
    write_files(rundir.checkpoints_dir / ".tmp-step-14", 14)
    assert resume_candidates(cfg("auto"), rundir) == [rundir.checkpoint(s) for s in (10, 4, 2)]
    assert resume_candidates(cfg(""), rundir) == []
    assert resume_candidates(cfg("auto"), RunDir(tmp_path / "nothing")) == []


def test_resume_from_a_path_means_that_complete_checkpoint_only(tmp_path):
    rundir = RunDir(tmp_path / "run")
    make_checkpoint(rundir.checkpoint(2), 2)
    make_checkpoint(rundir.checkpoint(4), 4)
    assert resume_candidates(cfg(str(rundir.checkpoint(2))), rundir) == [rundir.checkpoint(2)]
    write_files(rundir.checkpoint(6), 6)
    with pytest.raises(UserError, match="step-6 is not a complete checkpoint"):
        resume_candidates(cfg(str(rundir.checkpoint(6))), rundir)


class FakeAccelerator:
    """One process; ``load_state`` records what it loaded (or fails for the paths in ``fails``);
    ``save_state`` writes the files ``accelerator.save_state`` would (or raises ``save_error``)."""

    num_processes = 1
    process_index = 0
    is_main_process = True

    def __init__(self, fails: tuple[Path, ...] = (), save_error: Exception | None = None) -> None:
        self.loaded: list[Path] = []
        self.fails = fails
        self.save_error = save_error

    def load_state(self, path: str) -> None:
        if Path(path) in self.fails:
            raise RuntimeError("PytorchStreamReader failed reading zip archive")
        self.loaded.append(Path(path))

    def save_state(self, path: str, safe_serialization: bool = True) -> None:
        write_files(Path(path), 6)
        if self.save_error:
            raise self.save_error

    def wait_for_everyone(self) -> None:
        pass


class FakeScheduler:
    def __init__(self) -> None:
        self.state: dict | None = None

    def load_state_dict(self, state: dict) -> None:
        self.state = state

    def state_dict(self) -> dict:
        return {"last_epoch": 6}


@pytest.fixture
def rundir(tmp_path) -> RunDir:
    rundir = RunDir(tmp_path / "run")
    for step in (2, 4):
        make_checkpoint(rundir.checkpoint(step), step)
    return rundir


def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one(rundir, caplog):
    (rundir.checkpoint(4) / "optimizer.bin").write_bytes(b"cut")
    acc, scheduler, state = FakeAccelerator(), FakeScheduler(), TrainState()
    with caplog.at_level(logging.WARNING):
        loaded = load_checkpoint(acc, resume_candidates(cfg("auto"), rundir), state, scheduler, RUN)
    assert loaded == rundir.checkpoint(2) and acc.loaded == [rundir.checkpoint(2)]  # step-4 never loaded
    assert (state.step, state.offset, scheduler.state) == (2, 16, {"last_epoch": 2})
    assert "step-4 is damaged (optimizer.bin is missing or does not match" in caplog.text
    assert "trying the previous one" in caplog.text


def test_a_checkpoint_that_fails_to_load_falls_back_too(rundir, caplog):
    acc, state = FakeAccelerator(fails=(rundir.checkpoint(4),)), TrainState()
    with caplog.at_level(logging.WARNING):
        assert load_checkpoint(acc, resume_candidates(cfg("auto"), rundir), state, FakeScheduler(), RUN) == (
            rundir.checkpoint(2)
        )
    assert state.step == 2 and "failed reading zip archive" in caplog.text


def test_the_newest_sound_checkpoint_is_loaded_without_a_warning(rundir, caplog):
    acc, state = FakeAccelerator(), TrainState()
    with caplog.at_level(logging.WARNING):
        assert load_checkpoint(acc, resume_candidates(cfg("auto"), rundir), state, FakeScheduler(), RUN) == (
            rundir.checkpoint(4)
        )
    assert acc.loaded == [rundir.checkpoint(4)] and state.step == 4 and "damaged" not in caplog.text


def test_when_no_candidate_loads_it_is_one_user_error(rundir):
    for step in (2, 4):
        (rundir.checkpoint(step) / "pytorch_model.bin").unlink()
    candidates = resume_candidates(cfg("auto"), rundir)
    with pytest.raises(UserError, match=r"none of the 2 checkpoints in .*checkpoints could be loaded"):
        load_checkpoint(FakeAccelerator(), candidates, TrainState(), FakeScheduler(), RUN)
    with pytest.raises(UserError, match=r"cannot load checkpoint .*step-4: pytorch_model.bin is missing"):
        load_checkpoint(FakeAccelerator(), candidates[:1], TrainState(), FakeScheduler(), RUN)  # a path given
    assert load_checkpoint(FakeAccelerator(), [], TrainState(), FakeScheduler(), RUN) is None  # afresh


def test_another_runs_checkpoint_is_never_loaded(rundir):
    acc = FakeAccelerator()
    with pytest.raises(UserError, match="none of the 2 checkpoints"):
        load_checkpoint(acc, resume_candidates(cfg("auto"), rundir), TrainState(), FakeScheduler(), "other")
    assert acc.loaded == []


# -- the save ---------------------------------------------------------------------------------------------


def test_a_save_is_complete_verified_and_pruned_to_keep(rundir):
    state = TrainState(step=6, epoch=1, offset=48)
    path = save_checkpoint(FakeAccelerator(), rundir, state, FakeScheduler(), RUN, keep=2)
    assert path == rundir.checkpoint(6)
    meta = verify(path, 0, 1, RUN)
    assert meta["step"] == 6 and meta["scheduler"] == {"last_epoch": 6} and meta["processes"] == 1
    assert set(meta["files"]) == {"pytorch_model.bin", "optimizer.bin", "random_states_0.pkl"}
    assert [s for s, _ in rundir.complete_checkpoints()] == [4, 6]  # step-2 pruned
    assert sorted(p.name for p in rundir.checkpoints_dir.iterdir()) == ["step-4", "step-6"]  # no temporary


@pytest.mark.parametrize(
    "error",
    [OSError(28, "No space left on device"), RuntimeError("PytorchStreamWriter failed writing file data/0")],
)
def test_a_failed_save_is_one_error_and_leaves_the_earlier_checkpoints_intact(rundir, error):
    before = {p: p.read_bytes() for p in rundir.checkpoints_dir.rglob("*") if p.is_file()}
    acc = FakeAccelerator(save_error=error)
    with pytest.raises(
        UserError, match=r"cannot write checkpoint .*step-6: .*the earlier checkpoints are intact"
    ):
        save_checkpoint(acc, rundir, TrainState(step=6), FakeScheduler(), RUN, keep=2)
    assert sorted(p.name for p in rundir.checkpoints_dir.iterdir()) == ["step-2", "step-4"]
    assert {p: p.read_bytes() for p in rundir.checkpoints_dir.rglob("*") if p.is_file()} == before


def test_an_error_that_is_not_a_failed_write_is_a_bug_and_propagates(rundir):
    acc = FakeAccelerator(save_error=RuntimeError("CUDA error: an illegal memory access"))
    with pytest.raises(RuntimeError, match="illegal memory access"):
        save_checkpoint(acc, rundir, TrainState(step=6), FakeScheduler(), RUN, keep=2)
