"""Checkpoints ``output_dir/checkpoints/step-N/``: written atomically, the newest K kept, resumable.

A checkpoint is ``accelerator.save_state`` (model, optimizer, scheduler, grad scaler, the RNG of every
rank, the ``TrainState``) written into ``.tmp-step-N`` and renamed to ``step-N`` once
``trainer_state.json`` is in it: a directory named ``step-N`` is always complete.
``output_dir/run.json`` identifies the run, so a different run is never resumed or overwritten.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from accelerate import Accelerator
from accelerate.logging import get_logger

from data_prep.errors import UserError
from pretrain.config import Config
from pretrain.model import NOT_BART_FIELDS

logger = get_logger(__name__)
STEP_DIR = re.compile(r"^step-(\d+)$")
STATE_FILE = "trainer_state.json"
RUN_FILE = "run.json"


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


def step_dirs(root: Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of the complete ``step-N`` directories under ``root``, oldest first."""
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := STEP_DIR.match(p.name)) and p.is_dir()]
    return sorted(found)


def complete_checkpoints(output_dir: Path) -> list[tuple[int, Path]]:
    return [(s, p) for s, p in step_dirs(output_dir / "checkpoints") if (p / STATE_FILE).is_file()]


def replace_dir(tmp: Path, final: Path) -> None:
    """Move a finished ``tmp`` onto ``final``; an older ``final`` is removed only after the move."""
    old = final.with_name(f".old-{final.name}")
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def save_checkpoint(accelerator: Accelerator, output_dir: Path, state: TrainState, keep: int) -> Path:
    """Write ``checkpoints/step-N`` atomically on all ranks together, then prune to the newest ``keep``."""
    root = output_dir / "checkpoints"
    tmp, final = root / f".tmp-step-{state.step}", root / f"step-{state.step}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp), safe_serialization=False)  # torch.save keeps the tied embeddings tied
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / STATE_FILE).write_text(json.dumps(state.state_dict(), indent=2) + "\n")
        _fsync_dir(tmp)
        replace_dir(tmp, final)
        prune(root, keep)
    accelerator.wait_for_everyone()
    return final


def prune(root: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` ``step-N`` directories (``keep <= 0`` keeps all)."""
    if keep <= 0:
        return
    for _, path in step_dirs(root)[:-keep]:
        shutil.rmtree(path, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    for file in path.iterdir():
        if file.is_file():
            with open(file, "rb") as fh:
                os.fsync(fh.fileno())


def resume_candidates(cfg: Config, output_dir: Path) -> list[Path]:
    """Checkpoints to try, best first: ``resume: auto`` -> newest complete first; a path -> just that one."""
    resume = cfg.train.resume
    if not resume:
        return []
    if resume == "auto":
        return [path for _, path in reversed(complete_checkpoints(output_dir))]
    path = Path(resume)
    if not (path / STATE_FILE).is_file():
        raise UserError(f"train.resume {path} is not a complete checkpoint (no {STATE_FILE})")
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
        saved = json.loads((path / STATE_FILE).read_text())
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


def run_identity(cfg: Config, vocab_sha256: str) -> dict[str, Any]:
    """What makes two runs the same run: model, noise, seed and the vocabulary."""
    tree = cfg.to_dict()
    model = {k: v for k, v in tree["model"].items() if k not in NOT_BART_FIELDS}
    return {"model": model, "noise": tree["noise"], "seed": cfg.train.seed, "vocab_sha256": vocab_sha256}


def check_output_dir(cfg: Config, output_dir: Path, identity: dict[str, Any]) -> None:
    """Refuse an output_dir that holds something else, or this run without ``--train.resume``."""
    run_file = output_dir / RUN_FILE
    if not run_file.is_file():
        leftovers = [p.name for p in output_dir.iterdir()] if output_dir.is_dir() else []
        if leftovers:
            raise UserError(
                f"train.output_dir {output_dir} is not empty and holds no run of this trainer "
                f"({', '.join(sorted(leftovers)[:3])}...): choose another output_dir"
            )
        return
    if not cfg.train.resume:
        raise UserError(
            f"train.output_dir {output_dir} already holds a run: pass --train.resume auto to continue "
            "it, or choose another output_dir"
        )
    saved = json.loads(run_file.read_text(encoding="utf-8"))
    diff = sorted(k for k in identity if k != "model" and saved.get(k) != identity[k])
    diff += sorted(f"model.{k}" for k, v in identity["model"].items() if saved.get("model", {}).get(k) != v)
    if diff:
        raise UserError(
            f"train.output_dir {output_dir} holds a different run (differs in {', '.join(diff[:5])}): "
            "choose another output_dir"
        )


def write_run_file(output_dir: Path, identity: dict[str, Any]) -> None:
    tmp = output_dir / f".{RUN_FILE}.tmp"
    tmp.write_text(json.dumps(identity, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(output_dir / RUN_FILE)
