"""Real SIGKILLs at chosen moments, for the fault suite (``tests/e2e/test_kills_e2e.py``, bench/faults.py).

``python tests/killpoints.py POINT N -m MODULE ARGS...`` runs ``python -m MODULE ARGS...`` and SIGKILLs
its own process the N-th time the run reaches POINT:

    checkpoint  inside ``accelerator.save_state``: just after ``torch.save`` wrote its N-th file
    export      inside ``save_pretrained``: just after the N-th ``model.safetensors`` was written
    prune       when the N-th ``.del-step-K`` directory (a pruned checkpoint or export) is to be deleted
    replace     between the two renames that replace an existing directory (``hf/final`` and the like)
    shard       inside ``prepare``: just after its N-th Arrow record batch was written (1 worker)
    time        after N milliseconds, wherever the run is

Under torchrun only rank 0 kills itself (torchrun then stops the other rank). Only this test harness
patches anything; the product has no kill hooks.
"""

from __future__ import annotations

import json
import os
import runpy
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

POINTS = ("checkpoint", "export", "prune", "replace", "shard", "time")


def record(**fields: Any) -> None:
    """Append one kill round to ``$BART_FAULT_LOG`` (JSON lines), for ``bench/faults.py``'s figures."""
    log = os.environ.get("BART_FAULT_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as f:
            f.write(json.dumps(fields) + "\n")


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _counting(n: int, original: Callable[..., Any], before: bool, wanted: Callable[..., bool]) -> Callable:
    """``original``, that kills the process at the n-th call that ``wanted`` accepts (before or after)."""
    seen = [0]

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        hit = wanted(*args, **kwargs)
        if hit:
            seen[0] += 1
        if hit and before and seen[0] == n:
            _die()
        result = original(*args, **kwargs)
        if hit and not before and seen[0] == n:
            _die()
        return result

    return wrapper


def install(point: str, n: int) -> None:
    """Arm the kill ``point`` for its ``n``-th occurrence in this process."""
    if os.environ.get("RANK", "0") != "0":
        return
    if point == "time":
        timer = threading.Timer(n / 1000, _die)
        timer.daemon = True  # a run that ends first is not held up
        timer.start()
    elif point == "checkpoint":
        import torch

        torch.save = _counting(n, torch.save, False, lambda *a, **k: True)
    elif point == "export":
        import transformers.modeling_utils as mu

        mu.safe_save_file = _counting(n, mu.safe_save_file, False, lambda *a, **k: True)
    elif point == "prune":
        import shutil

        shutil.rmtree = _counting(
            n, shutil.rmtree, True, lambda path, *a, **k: Path(path).name.startswith(".del-")
        )
    elif point == "replace":

        def moved_aside(self: Path, target: str | Path) -> bool:
            """The rename of a finished ``.tmp-X`` onto ``X``, once the older ``X`` is ``.old-X``."""
            target = Path(target)
            return self.name.startswith(".tmp-") and target.with_name(f".old-{target.name}").exists()

        Path.rename = _counting(n, Path.rename, True, moved_aside)
    elif point == "shard":
        from data_prep.shards import UnitWriter

        UnitWriter._write_batch = _counting(
            n, UnitWriter._write_batch, False, lambda self: bool(self._buf["input_ids"])
        )
    else:
        raise SystemExit(f"unknown kill point {point!r} (known: {', '.join(POINTS)})")


def main(argv: list[str]) -> None:
    point, n, flag, module, *args = argv
    if flag != "-m":
        raise SystemExit("usage: killpoints.py POINT N -m MODULE ARGS...")
    install(point, int(n))
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
