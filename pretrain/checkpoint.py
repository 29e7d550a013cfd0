"""Checkpoints ``checkpoints/step-N/``: written atomically on all ranks, the newest K kept, resumable.

A checkpoint is ``accelerator.save_state`` (model, optimizer, scheduler, grad scaler, the RNG of every
rank, the ``TrainState``) written into a temporary directory and renamed to ``step-N`` once
``trainer_state.json`` is in it: a directory named ``step-N`` is always complete.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from accelerate import Accelerator
from accelerate.logging import get_logger

from data_prep.atomic import fsync_files, replace_dir, temp_dir
from data_prep.errors import UserError
from pretrain.config import Config
from pretrain.rundir import RunDir

logger = get_logger(__name__)


@dataclass
class TrainState:
    """Everything about the loop's progress that the model/optimizer/scheduler states do not hold."""

    step: int = 0
    epoch: int = 0
    offset: int = 0  # examples of this epoch's permutation consumed by all ranks together
    bad_steps: int = 0  # skipped NaN/inf steps, in total
    bad_streak: int = 0  # ... and in a row

    def state_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)

    def load_state_dict(self, state: dict[str, int]) -> None:
        for key, value in state.items():
            setattr(self, key, value)


def save_checkpoint(accelerator: Accelerator, rundir: RunDir, state: TrainState, keep: int) -> Path:
    """Write ``checkpoints/step-N`` atomically on all ranks together, then prune to the newest ``keep``."""
    final = rundir.checkpoint(state.step)
    tmp = temp_dir(final)
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp), safe_serialization=False)  # torch.save keeps the tied embeddings tied
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        RunDir.state_file(tmp).write_text(json.dumps(state.state_dict(), indent=2) + "\n")
        fsync_files(tmp)
        replace_dir(tmp, final)
        rundir.prune(rundir.checkpoints_dir, keep)
    accelerator.wait_for_everyone()
    return final


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


def load_checkpoint(accelerator: Accelerator, candidates: list[Path], state: TrainState) -> Path | None:
    """Load the first candidate that loads; a damaged one is reported and the previous one tried."""
    for path in candidates:
        try:
            accelerator.load_state(str(path))
        except Exception as exc:  # noqa: BLE001 - any damage in the files means: try the older one
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if len(candidates) == 1:
                raise UserError(f"cannot load checkpoint {path}: {reason}") from None
            logger.warning(
                f"checkpoint {path} is damaged ({reason}); trying the previous one", main_process_only=True
            )
            continue
        saved = json.loads(RunDir.state_file(path).read_text())
        if saved.get("step") != state.step:
            raise UserError(
                f"checkpoint {path} is inconsistent: trainer_state.json says step {saved.get('step')}, "
                f"the saved state says {state.step}"
            )
        return path
    if candidates:
        raise UserError(
            f"none of the {len(candidates)} checkpoints in {candidates[0].parent} could be loaded"
        )
    return None
