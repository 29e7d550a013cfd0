"""The run directory (``train.output_dir``): its layout's one owner; nobody else spells a path in it.

    run.json                what makes this run this run (model, noise, seed, vocab): resume refuses another
    config.yaml             the full config of the latest launch, as written
    plan.json               what that launch derived from it (pretrain.plan: batch split, max_steps, ...)
    checkpoints/step-N/     full training state (complete once trainer_state.json is in it)
    hf/step-N/, hf/final/   Hugging Face exports
    tensorboard/            event files
    .lock                   only while a job runs in it (data_prep.lock): host, pid, start, heartbeat

A directory becomes a run when its first checkpoint is complete. Before that (a launch that failed or
was interrupted early) it holds nothing worth keeping, and a new command may start afresh in it.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from accelerate import PartialState
from accelerate.utils import broadcast_object_list, parse_flag_from_env

from data_prep.atomic import write_json, write_text
from data_prep.errors import UserError
from data_prep.lock import DirLock, contents
from pretrain.config import NOT_BART_FIELDS, Config

STEP_DIR = re.compile(r"^step-(\d+)$")


@dataclass(frozen=True)
class RunDir:
    root: Path

    @property
    def run_file(self) -> Path:
        return self.root / "run.json"

    @property
    def config_file(self) -> Path:
        return self.root / "config.yaml"

    @property
    def plan_file(self) -> Path:
        return self.root / "plan.json"

    @property
    def checkpoints_dir(self) -> Path:
        return self.root / "checkpoints"

    @property
    def exports_dir(self) -> Path:
        return self.root / "hf"

    @property
    def tensorboard_dir(self) -> Path:
        return self.root / "tensorboard"

    @property
    def final_export(self) -> Path:
        return self.exports_dir / "final"

    def checkpoint(self, step: int) -> Path:
        return self.checkpoints_dir / f"step-{step}"

    def export(self, step: int) -> Path:
        return self.exports_dir / f"step-{step}"

    @staticmethod
    def state_file(checkpoint: Path) -> Path:
        """Written last into a checkpoint: a checkpoint without it is incomplete."""
        return checkpoint / "trainer_state.json"

    @contextmanager
    def hold(self) -> Iterator[None]:
        """The run directory's lock, for the whole job: the main process (of all nodes) takes it before
        any rank goes on; when it cannot, every rank fails with its one-line error, none is left waiting."""
        state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))
        lock, error = DirLock(self.root, "train.output_dir"), None
        if state.is_main_process:
            try:
                lock.acquire()
            except UserError as exc:
                error = str(exc)
        if state.num_processes > 1:
            [error] = broadcast_object_list([error])
        if error:
            raise UserError(error)
        try:
            yield
        finally:
            lock.release()  # a no-op on the other ranks

    def complete_checkpoints(self) -> list[tuple[int, Path]]:
        """``(step, path)`` of the complete checkpoints, oldest first."""
        return [(s, p) for s, p in _step_dirs(self.checkpoints_dir) if self.state_file(p).is_file()]

    def exports(self) -> list[Path]:
        """The ``hf/step-N`` exports, oldest first, then ``hf/final`` if there is one."""
        found = [p for _, p in _step_dirs(self.exports_dir)]
        return found + [self.final_export] if self.final_export.is_dir() else found

    def is_run(self) -> bool:
        """True once a checkpoint (or an export) exists: from then on, only a resume may continue it."""
        return self.run_file.is_file() and bool(self.complete_checkpoints() or self.exports())

    def check(self, identity: dict[str, Any], resume: bool) -> None:
        """Refuse a directory that holds something else, this run without resume, or another run."""
        if self.root.exists() and not self.root.is_dir():
            raise UserError(f"train.output_dir {self.root} exists and is not a directory")
        if not self.run_file.is_file():
            leftovers = sorted(p.name for p in contents(self.root))
            if leftovers:
                raise UserError(
                    f"train.output_dir {self.root} is not empty and holds no run of this trainer "
                    f"({', '.join(leftovers[:3])}...): choose another output_dir"
                )
            return
        if not self.is_run():
            return
        if not resume:
            raise UserError(
                f"train.output_dir {self.root} already holds a run: pass --train.resume auto to continue "
                "it, or choose another output_dir"
            )
        saved = self._read_run_file()
        if "data" not in saved:
            raise UserError(
                f"train.output_dir {self.root} holds a run of an older version of this trainer (its "
                "checkpoints cannot be verified): choose another output_dir, or --model.init_from its export"
            )
        diff = sorted(k for k in identity if k != "model" and saved.get(k) != identity[k])
        saved_model = saved.get("model", {})
        model = identity["model"]
        diff += sorted(
            f"model.{k}" for k in model.keys() | saved_model.keys() if saved_model.get(k) != model.get(k)
        )
        if diff:
            raise UserError(
                f"train.output_dir {self.root} holds a different run (differs in {', '.join(diff[:5])}): "
                "choose another output_dir"
            )

    def start(self, identity: dict[str, Any], config_yaml: str, plan: dict[str, Any]) -> bool:
        """Write run.json, config.yaml and plan.json (main process, after every check passed). A directory
        that was not a run yet is started afresh: the logs of the earlier attempt go. True when that
        happened."""
        fresh_start = self.run_file.is_file() and not self.is_run()
        if fresh_start:
            shutil.rmtree(self.tensorboard_dir, ignore_errors=True)
            shutil.rmtree(self.checkpoints_dir, ignore_errors=True)  # both hold only incomplete saves
            shutil.rmtree(self.exports_dir, ignore_errors=True)
        self.root.mkdir(parents=True, exist_ok=True)
        write_json(self.run_file, identity)
        write_text(self.config_file, config_yaml)
        write_json(self.plan_file, plan)
        return fresh_start

    def prune(self, directory: Path, keep: int) -> None:
        """Delete all but the newest ``keep`` ``step-N`` directories in ``directory`` (0: keep all).

        Each is renamed to ``.del-step-N`` before it is deleted, so that a kill in the middle never
        leaves a half-deleted directory under a name that looks complete."""
        if keep <= 0:
            return
        for _, path in _step_dirs(directory)[:-keep]:
            doomed = path.with_name(f".del-{path.name}")
            path.rename(doomed)
            _remove(doomed)

    def set_aside_after(self, step: int) -> list[str]:
        """Rename the checkpoints newer than the resumed ``step`` (damaged ones a resume fell back from, or
        those an older ``--train.resume PATH`` leaves ahead) to ``.set-aside-step-N``: kept for a look,
        but never counted by pruning (which could delete the fresh ones) nor resumed from. Their names."""
        moved = []
        for found, path in _step_dirs(self.checkpoints_dir):
            if found > step:
                target = path.with_name(f".set-aside-{path.name}")
                _remove(target)
                path.rename(target)
                moved.append(f"{self.checkpoints_dir.name}/{target.name}")
        return moved

    def clean_temporaries(self) -> list[str]:
        """Remove what an interrupted save, export or prune left (main process, before the loop).

        ``.tmp-X`` (unfinished) and ``.del-X`` (being deleted) go; ``.old-X`` is the previous ``X`` of a
        replacement that was cut between its two renames: put back when ``X`` is missing, else removed.
        Returns the names it cleaned."""
        cleaned = []
        for tmp in self.root.glob(".*.tmp"):  # an atomic write of run.json or config.yaml, cut short
            tmp.unlink(missing_ok=True)
            cleaned.append(tmp.name)
        for directory in (self.checkpoints_dir, self.exports_dir):
            if not directory.is_dir():
                continue
            for path in sorted(directory.iterdir()):
                kind, _, name = path.name.partition("-")
                if kind not in (".tmp", ".del", ".old") or not name:
                    continue
                target = directory / name
                if kind == ".old" and not target.exists():
                    path.rename(target)
                else:
                    _remove(path)
                cleaned.append(f"{directory.name}/{path.name}")
        return cleaned

    def _read_run_file(self) -> dict[str, Any]:
        try:
            return json.loads(self.run_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot read {self.run_file}: {exc}") from None


def _remove(path: Path) -> None:
    """Delete a directory tree; a symbolic link is unlinked, never followed."""
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


def _step_dirs(root: Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of the ``step-N`` directories under ``root``, oldest first."""
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := STEP_DIR.match(p.name)) and p.is_dir()]
    return sorted(found)


def run_identity(cfg: Config, vocab_sha256: str, data: str | None) -> dict[str, Any]:
    """What makes two runs the same run: model, noise, seed, the vocabulary and the data (the shards'
    ``plan_sha256``: their inputs, options and tokenizer)."""
    tree = cfg.to_dict()
    model = {k: v for k, v in tree["model"].items() if k not in NOT_BART_FIELDS}
    if cfg.model.logits_bias != "frozen":  # another set of parameters (absent: the runs made before it)
        model["logits_bias"] = cfg.model.logits_bias
    return {
        "model": model,
        "noise": tree["noise"],
        "seed": cfg.train.seed,
        "vocab_sha256": vocab_sha256,
        "data": data,
    }
