"""What a run prints: the start-up summary, and one greppable line per log interval.

A progress bar is for a terminal; redirected to a file it is one long line of ``\\r`` updates. So the bar
is shown only when stderr is a terminal, and otherwise every ``log_every`` steps print one line:

    step 1200/1000000 loss 5.4321 lr 4.99e-05 grad_norm 1.234 tokens/s 12,345 mfu 38.2% elapsed 0:12:34
        eta 3 days, 4:05:06     (one line)
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any


def interactive() -> bool:
    """True when stderr is a terminal (then the progress bar shows the numbers)."""
    return sys.stderr.isatty()


@dataclass
class Clock:
    """Elapsed time and the ETA from the steps done in this launch."""

    first_step: int
    started: float = field(default_factory=time.monotonic)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def eta(self, step: int, max_steps: int) -> float | None:
        done = step - self.first_step
        return self.elapsed() / done * (max_steps - step) if done > 0 else None


def log_line(step: int, max_steps: int, logs: dict[str, float], clock: Clock) -> str:
    """``step N/M loss ... eta ...``: the numbers of one log interval, in one line."""
    parts = [
        f"step {step}/{max_steps}",
        f"loss {logs['train/loss']:.4f}",
        f"lr {logs['train/lr']:.2e}",
        f"grad_norm {logs['train/grad_norm']:.3f}",
        f"tokens/s {logs['train/tokens_per_sec']:,.0f}",
    ]
    if "train/mfu" in logs:
        parts.append(f"mfu {logs['train/mfu']:.1%}")
    parts.append(f"elapsed {timedelta(seconds=round(clock.elapsed()))}")
    eta = clock.eta(step, max_steps)
    parts.append(f"eta {timedelta(seconds=round(eta))}" if eta is not None else "eta ?")
    return " ".join(parts)


def startup_summary(
    params: int, max_steps: int, global_batch: int, train_examples: int, manifest: dict[str, Any]
) -> str:
    """The parameters, the planned target tokens and epochs, and the data's real-token fill ratio."""
    counts = manifest.get("counts", {}).get("train", {})
    ids_per_example = counts.get("ids", 0) / max(counts.get("examples", 0), 1)
    examples = max_steps * global_batch
    fill = manifest.get("fill", {}).get("train", {}).get("fill_ratio")
    return (
        f"model: {params / 1e6:,.1f} M parameters; plan: {max_steps:,} steps x {global_batch} examples = "
        f"{_amount(examples * ids_per_example)} target tokens, {examples / max(train_examples, 1):,.2f} "
        f"epochs of {train_examples:,} examples"
        + (f"; the data's real-token fill ratio {fill:.1%}" if fill is not None else "")
    )


def _amount(n: float) -> str:
    """``33.55 B``, ``9.6 M`` or ``12,345``."""
    if n >= 1e9:
        return f"{n / 1e9:,.2f} B"
    return f"{n / 1e6:,.1f} M" if n >= 1e6 else f"{n:,.0f}"
