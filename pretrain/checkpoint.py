"""Checkpoints ``checkpoints/step-N/``: written atomically on all ranks, verified before they are trusted.

A checkpoint is ``accelerator.save_state`` (model, optimizer, grad scaler, the RNG of every rank) plus
``trainer_state.json``: the ``TrainState``, the LR scheduler's state, the run's identity and the size and
sha256 of every other file. All of it is written into a temporary directory that is renamed to ``step-N``
once ``trainer_state.json`` is in it, so a directory named ``step-N`` is always complete.

Nothing is loaded that could run code: our own state is JSON (accelerate would pickle it into
``custom_checkpoint_*.pkl`` and unpickle that with ``weights_only=False``), and accelerate loads the
tensors with ``weights_only=True``. Before loading, every file this rank reads is checked against its
recorded size and hash, and the RNG state (which accelerate skips silently when it cannot load it) is
read once by us: a checkpoint that cannot be restored exactly is damaged, and the previous one is tried.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import load as safe_load

from data_prep.atomic import fsync_files, replace_dir, temp_dir
from data_prep.errors import UserError, first_line
from data_prep.shards import file_digest
from pretrain.config import Config
from pretrain.rundir import RunDir

logger = get_logger(__name__)

FORMAT = "bart-chinese-pretrain checkpoint"
VERSION = 2
RNG_FILE = re.compile(r"^random_states_(\d+)\.pkl$")
RNG_KEYS = ("random_state", "numpy_random_seed", "torch_manual_seed")


@dataclass
class TrainState:
    """Everything about the loop's progress that the model/optimizer/scheduler states do not hold."""

    step: int = 0
    epoch: int = 0
    offset: int = 0  # examples of this epoch's permutation consumed by all ranks together
    bad_steps: int = 0  # skipped NaN/inf steps, in total
    bad_streak: int = 0  # ... and in a row
    window_loss: float = 0.0  # the loss window: summed loss of the applied steps since the last log ...
    window_steps: int = 0  # ... and their count (here, so a resumed log is exact)
    seconds: float = 0.0  # wall-clock seconds of training, over all launches (for the model card)

    def add_losses(self, total: float, steps: int) -> None:
        self.window_loss, self.window_steps = self.window_loss + total, self.window_steps + steps

    def take_mean_loss(self) -> float:
        """The mean loss of the window, which starts again empty."""
        mean = self.window_loss / self.window_steps
        self.window_loss, self.window_steps = 0.0, 0
        return mean

    def state_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for f in dataclasses.fields(self):
            value = state.get(f.name, 0.0 if f.name == "seconds" else None)  # older checkpoints lack it
            kinds = (int, float) if f.type in ("float", float) else (int,)
            if not isinstance(value, kinds) or isinstance(value, bool) or not value >= 0:
                raise ValueError(f"trainer state '{f.name}' is {value!r}, not a count")
            setattr(self, f.name, type(f.default)(value))


class Damaged(Exception):
    """A checkpoint whose files do not restore the saved state exactly."""


def run_id(identity: dict[str, Any]) -> str:
    """A short fingerprint of the run identity, kept in every checkpoint."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def save_checkpoint(
    accelerator: Accelerator,
    rundir: RunDir,
    state: TrainState,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    run: str,
    keep: int,
) -> Path:
    """Write ``checkpoints/step-N`` atomically on all ranks together, then prune to the newest ``keep``.

    A failed write (a full disk) on any rank fails the save on every rank, with the same one-line error
    and no rank left waiting for another."""
    final = rundir.checkpoint(state.step)
    tmp = temp_dir(final)
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    error = _attempt(lambda: accelerator.save_state(str(tmp), safe_serialization=False))  # keeps ties tied
    if _everywhere(accelerator, error is None) and accelerator.is_main_process:
        meta = {
            **state.state_dict(),
            "format": FORMAT,
            "version": VERSION,
            "run": run,
            "processes": accelerator.num_processes,
            "scheduler": scheduler.state_dict(),
            "files": {rel: file_digest(tmp / rel) for rel in _files(tmp)},
        }
        error = _attempt(lambda: _finish(tmp, final, meta, rundir, keep))
    if not _everywhere(accelerator, error is None):
        if accelerator.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        reason = first_line(error) if error else "another process could not write its part"
        raise UserError(
            f"cannot write checkpoint {final}: {reason} (the earlier checkpoints are intact; "
            "free space and rerun with --train.resume auto)"
        )
    return final


def _finish(tmp: Path, final: Path, meta: dict[str, Any], rundir: RunDir, keep: int) -> None:
    RunDir.state_file(tmp).write_text(json.dumps(meta, indent=2) + "\n")
    fsync_files(tmp)
    replace_dir(tmp, final)
    rundir.prune(rundir.checkpoints_dir, keep)


def _attempt(write: Any) -> Exception | None:
    """Run ``write``; the error of a failed write (a full disk), None when it worked. torch reports a full
    disk as ``RuntimeError(... failed writing ...)``; any other error is a bug and propagates."""
    try:
        write()
    except OSError as exc:
        return exc
    except RuntimeError as exc:
        if "writ" not in str(exc).lower():
            raise
        return exc
    return None


def _everywhere(accelerator: Accelerator, ok: bool) -> bool:
    """True when ``ok`` holds on every rank (one all-reduce with several ranks)."""
    if accelerator.num_processes == 1:
        return ok
    flag = torch.tensor(0.0 if ok else 1.0, device=accelerator.device)
    return float(accelerator.reduce(flag, reduction="sum")) == 0.0


def resume_candidates(cfg: Config, rundir: RunDir) -> list[Path]:
    """Checkpoints to try, best first: ``resume: auto`` -> newest complete first; a path -> just that one."""
    resume = cfg.train.resume
    if not resume:
        return []
    if resume == "auto":
        return [path for _, path in reversed(rundir.complete_checkpoints())]
    path = Path(resume)
    if not RunDir.state_file(path).is_file():
        raise UserError(f"train.resume {path} is not a complete checkpoint (no trainer_state.json)")
    return [path]


def load_checkpoint(
    accelerator: Accelerator,
    candidates: list[Path],
    state: TrainState,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    run: str,
) -> Path | None:
    """Load the first candidate that verifies and loads on every rank; a damaged one is reported (by the
    rank that found the damage) and the previous one tried, by all ranks together."""
    for path in candidates:
        problem = None
        try:
            meta = verify(path, accelerator.process_index, accelerator.num_processes, run)
        except Exception as exc:  # noqa: BLE001 - any damage in the files means: try the older one
            problem = exc
        if _everywhere(accelerator, problem is None):  # verified everywhere: load (collective under FSDP)
            try:
                accelerator.load_state(str(path))
                scheduler.load_state_dict(meta["scheduler"])
                state.load_state_dict(meta)
            except Exception as exc:  # noqa: BLE001
                problem = exc
            if _everywhere(accelerator, problem is None):
                return path
        reason = first_line(problem) if problem else "damaged on another process"
        if len(candidates) == 1:
            raise UserError(f"cannot load checkpoint {path}: {reason}")
        if problem or accelerator.is_main_process:
            logger.warning(
                f"checkpoint {path} is damaged ({reason}); trying the previous one", main_process_only=False
            )
    if candidates:
        raise UserError(
            f"none of the {len(candidates)} checkpoints in {candidates[0].parent} could be loaded"
        )
    return None


def verify(path: Path, rank: int, processes: int, run: str) -> dict[str, Any]:
    """The checkpoint's ``trainer_state.json`` once every file this rank will load matches it."""
    meta = _read_meta(path)
    if meta.get("format") != FORMAT:
        older = (path / "custom_checkpoint_0.pkl").is_file()
        raise Damaged(
            "it was written by an older version of this trainer (a pickled state, which is not loaded)"
            if older
            else "trainer_state.json was not written by this trainer"
        )
    if meta.get("version") != VERSION:
        raise Damaged(
            f"it is version {meta.get('version')} of the checkpoint format; this trainer reads {VERSION}"
        )
    if meta.get("run") != run:
        raise Damaged("it belongs to another run (other model, noise, seed or data)")
    files = meta.get("files")
    if not isinstance(files, dict) or not isinstance(meta.get("scheduler"), dict):
        raise Damaged("trainer_state.json lacks its file list or scheduler state")
    for rel, info in files.items():
        rng = RNG_FILE.match(Path(rel).name)
        if rng and int(rng.group(1)) != rank:
            continue  # another rank's
        file = (path / rel).resolve()
        if not file.is_relative_to(path.resolve()):
            raise Damaged(f"trainer_state.json names a file outside the checkpoint: {rel}")
        if not file.is_file() or file_digest(file) != info:
            raise Damaged(f"{rel} is missing or does not match its recorded size and sha256")
    rng_file = f"random_states_{rank}.pkl"
    if rng_file not in files:
        if meta.get("processes") == processes:
            raise Damaged(f"{rng_file} is missing")
        logger.warning(
            f"checkpoint {path} was saved by {meta.get('processes')} processes, resuming on {processes}: "
            "rank RNG states differ, so this run will not repeat the uninterrupted one exactly"
        )
    else:
        _check_rng(path / rng_file)
    return meta


def _read_meta(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(RunDir.state_file(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise Damaged(f"trainer_state.json cannot be read: {first_line(exc)}") from None
    if not isinstance(meta, dict):
        raise Damaged("trainer_state.json is not a JSON object")
    return meta


def _check_rng(file: Path) -> None:
    """Load the RNG state as accelerate will (``weights_only``), since it ignores a failure there."""
    try:
        states = safe_load(file)
    except Exception as exc:  # noqa: BLE001 - any failure to unpickle
        raise Damaged(f"{file.name} cannot be loaded: {first_line(exc)}") from None
    if not isinstance(states, dict) or any(key not in states for key in RNG_KEYS):
        raise Damaged(f"{file.name} does not hold the RNG states")
    if torch.cuda.is_available() and "torch_cuda_manual_seed" not in states:
        raise Damaged(f"{file.name} holds no CUDA RNG state")


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
