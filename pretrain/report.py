"""``python -m pretrain.report RUN_DIR``: a run's summary from its TensorBoard event files.

Prints the steps done (of max_steps), the latest training loss, the best eval loss, the current
throughput and the ETA to max_steps, for users without a browser.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from data_prep.errors import UserError, run_cli
from pretrain.rundir import RunDir


def manifest_markdown(manifest: dict[str, Any], max_items: int = 10) -> str:
    """The data manifest as a JSON code block for a TensorBoard text summary (long lists shortened)."""
    short = {}
    for key, value in manifest.items():
        if isinstance(value, list) and len(value) > max_items:
            value = value[:max_items] + [f"... {len(value) - max_items} more"]
        short[key] = value
    body = json.dumps(short, indent=2, ensure_ascii=False)
    return "\n".join("    " + line for line in body.splitlines())


def read_scalars(run_dir: Path) -> dict[str, list[tuple[float, int, float]]]:
    """tag -> [(wall_time, step, value)] by step from ``RUN_DIR/tensorboard``.

    A resumed run logs again the steps after its checkpoint; the latest value of a step wins.
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logdir = RunDir(run_dir).tensorboard_dir
    if not logdir.is_dir() or not any(p.name.startswith("events.out.tfevents") for p in logdir.iterdir()):
        raise UserError(
            f"{run_dir} holds no TensorBoard event files (expected {logdir}/events.out.tfevents.*)"
        )
    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    acc.Reload()
    out = {}
    for tag in acc.Tags()["scalars"]:
        latest = {
            e.step: (e.wall_time, e.step, e.value)
            for e in sorted(acc.Scalars(tag), key=lambda e: e.wall_time)
        }
        out[tag] = sorted(latest.values(), key=lambda p: p[1])
    return out


def steps_per_second(points: list[tuple[float, int, float]], window: int = 10) -> float | None:
    """Median rate over the last ``window`` consecutive log intervals (gaps from restarts ignored)."""
    rates = []
    tail = points[-window - 1 :]
    for (t0, s0, _), (t1, s1, _) in zip(tail, tail[1:], strict=False):
        if s1 > s0 and t1 > t0:
            rates.append((s1 - s0) / (t1 - t0))
    return statistics.median(rates) if rates else None


def summarize(run_dir: Path) -> str:
    scalars = read_scalars(run_dir)
    config_file = RunDir(run_dir).config_file
    max_steps = None
    if config_file.is_file():
        max_steps = (
            (yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}).get("train", {}).get("max_steps")
        )
    loss = scalars.get("train/loss", [])
    step = max((p[1] for points in scalars.values() for p in points), default=0)
    lines = [f"run:             {run_dir}"]
    lines.append(
        f"steps:           {step:,}" + (f" / {max_steps:,} ({step / max_steps:.1%})" if max_steps else "")
    )
    if loss:
        lines.append(f"train loss:      {loss[-1][2]:.4f} (step {loss[-1][1]:,})")
    evals = scalars.get("eval/loss", [])
    if evals:
        best = min(evals, key=lambda p: p[2])
        lines.append(f"best eval loss:  {best[2]:.4f} (step {best[1]:,})")
    acc = scalars.get("eval/accuracy", [])
    if acc:
        unigram = scalars.get("eval/unigram_accuracy", [])
        baseline = f", unigram baseline {unigram[-1][2]:.3f}" if unigram else ""
        lines.append(f"eval accuracy:   {acc[-1][2]:.3f} on corrupted tokens (step {acc[-1][1]:,}{baseline})")
    tokens = scalars.get("train/tokens_per_sec", [])
    rate = steps_per_second(loss)
    if tokens or rate:
        recent = statistics.median(p[2] for p in tokens[-10:]) if tokens else 0.0
        parts = ([f"{recent:,.0f} tokens/s"] if tokens else []) + ([f"{rate:.2f} steps/s"] if rate else [])
        lines.append(f"throughput:      {', '.join(parts)}")
    if rate and max_steps and step < max_steps:
        lines.append(
            f"ETA:             {timedelta(seconds=round((max_steps - step) / rate))} to step {max_steps:,}"
        )
    elif max_steps and step >= max_steps:
        lines.append("ETA:             finished")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    def _main() -> int:
        parser = argparse.ArgumentParser(
            prog="python -m pretrain.report", description=__doc__.splitlines()[0]
        )
        parser.add_argument("run_dir", type=Path, help="a train.output_dir")
        args = parser.parse_args(argv)
        if not args.run_dir.is_dir():
            raise UserError(f"{args.run_dir} is not a directory")
        print(summarize(args.run_dir))
        return 0

    return run_cli(_main, "pretrain.report")


if __name__ == "__main__":
    sys.exit(main())
