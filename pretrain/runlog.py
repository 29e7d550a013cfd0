"""A run's story read back from its TensorBoard event files: the summaries, the comparison and the plots
of ``python -m pretrain.report`` (``pretrain.cli.report``) and of the demo.

Prints the steps done (of max_steps), the latest training loss, the best eval loss, the eval accuracy
on corrupted and on copied tokens, the current throughput and the ETA to max_steps, for users without
a browser. An unfinished run that no longer logs is reported as stopped, with the checkpoint a resume
continues from and the command that does it. Several runs also get a side-by-side table (ablations);
``--plot`` draws their curves into one image (needs matplotlib: ``pip install -e '.[plot]'``).
"""

from __future__ import annotations

import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from data_prep.errors import UserError, first_line
from pretrain.rundir import RunDir

Scalars = dict[str, list[tuple[float, int, float]]]

# A run that has not logged for this long (and for 5 of its log intervals) counts as stopped.
STOPPED_AFTER_S = 600


def read_scalars(run_dir: Path) -> Scalars:
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
    if not acc.Tags()["scalars"]:
        print(
            f"warning: the event files in {logdir} hold no scalars (damaged, or none logged yet)",
            file=sys.stderr,
        )
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


def max_steps_of(run_dir: Path) -> int | None:
    """The planned steps of the run's latest launch: its plan.json (a token or epoch budget turned into
    steps), else (a run made before plans were recorded) ``train.max_steps`` of its config.yaml."""
    rundir = RunDir(run_dir)
    source = rundir.plan_file if rundir.plan_file.is_file() else rundir.config_file
    if not source.is_file():
        return None
    try:
        tree = yaml.safe_load(source.read_text(encoding="utf-8")) or {}  # JSON is YAML
        steps = (
            tree.get("max_steps") if source == rundir.plan_file else tree.get("train", {}).get("max_steps")
        )
    except (OSError, ValueError, yaml.YAMLError, AttributeError) as exc:
        reason = first_line(exc)
        print(f"warning: cannot read {source} ({reason}): planned steps unknown", file=sys.stderr)
        return None
    return steps if isinstance(steps, int) else None


def last_step(scalars: Scalars) -> int:
    return max((p[1] for points in scalars.values() for p in points), default=0)


def resume_lines(run_dir: Path, scalars: Scalars, now: float) -> list[str]:
    """An unfinished run: running or stopped (no log for a while), and where a resume continues from."""
    loss = scalars.get("train/loss", [])
    last_log = max((p[0] for points in scalars.values() for p in points), default=now)
    age = max(0.0, now - last_log)
    rate = steps_per_second(loss)
    interval = (loss[-1][1] - loss[-2][1]) / rate if rate and len(loss) > 1 else 0.0
    ago = f"last log {timedelta(seconds=round(age))} ago"
    if age < max(STOPPED_AFTER_S, 5 * interval):
        return [f"status:          running ({ago})"]
    lines = [f"status:          stopped at step {last_step(scalars):,} ({ago}), before max_steps"]
    run = RunDir(run_dir)
    done = run.complete_checkpoints()
    if not done:
        lines.append("resume:          no complete checkpoint yet: a new launch starts this run afresh")
        return lines
    step, path = done[-1]
    lines.append(f"resume:          from {path} (step {step:,}, the newest complete checkpoint):")
    lines.append(
        f"                 python -m pretrain --config {run.config_file} --train.output_dir {run_dir} "
        "--train.resume auto"
    )
    return lines


def summarize(run_dir: Path, now: float | None = None) -> str:
    """The report of one run; ``now`` (epoch seconds) decides whether an unfinished run has stopped."""
    scalars = read_scalars(run_dir)
    max_steps = max_steps_of(run_dir)
    loss = scalars.get("train/loss", [])
    step = last_step(scalars)
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
    copied = scalars.get("eval/accuracy_copied", [])
    if copied:
        lines.append(
            f"                 {copied[-1][2]:.3f} on copied tokens (what the source carries through)"
        )
    tokens = scalars.get("train/tokens_per_sec", [])
    rate = steps_per_second(loss)
    if tokens or rate:
        recent = statistics.median(p[2] for p in tokens[-10:]) if tokens else 0.0
        parts = ([f"{recent:,.0f} tokens/s"] if tokens else []) + ([f"{rate:.2f} steps/s"] if rate else [])
        lines.append(f"throughput:      {', '.join(parts)}")
    if max_steps and step >= max_steps:
        lines.append("ETA:             finished")
        return "\n".join(lines)
    if rate and max_steps:
        lines.append(
            f"ETA:             {timedelta(seconds=round((max_steps - step) / rate))} to step {max_steps:,}"
        )
    if max_steps:
        lines += resume_lines(run_dir, scalars, time.time() if now is None else now)
    return "\n".join(lines)


def compare(run_dirs: list[Path]) -> str:
    """One row per run, the columns an ablation compares (the latest values, the best eval loss)."""

    def last(scalars: Scalars, tag: str, fmt: str) -> str:
        points = scalars.get(tag)
        return format(points[-1][2], fmt) if points else "-"

    header = [
        "run",
        "steps",
        "train loss",
        "best eval loss",
        "acc corrupted",
        "unigram",
        "acc copied",
        "tokens/s",
    ]
    rows = [header]
    for run_dir in run_dirs:
        s = read_scalars(run_dir)
        evals = s.get("eval/loss")
        best = f"{min(p[2] for p in evals):.4f}" if evals else "-"
        tokens = s.get("train/tokens_per_sec")
        speed = f"{statistics.median(p[2] for p in tokens[-10:]):,.0f}" if tokens else "-"
        rows.append(
            [
                str(run_dir),
                f"{last_step(s):,}",
                last(s, "train/loss", ".4f"),
                best,
                last(s, "eval/accuracy", ".3f"),
                last(s, "eval/unigram_accuracy", ".3f"),
                last(s, "eval/accuracy_copied", ".3f"),
                speed,
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    )


# Panels of --plot: title, then (tag, line style, legend suffix) drawn per run in the run's colour.
PANELS = [
    ("loss", [("train/loss", "-", "train"), ("eval/loss", "o--", "eval")]),
    (
        "eval accuracy",
        [
            ("eval/accuracy", "o-", "corrupted"),
            ("eval/unigram_accuracy", ":", "unigram baseline"),
            ("eval/accuracy_copied", "s--", "copied"),
        ],
    ),
    ("learning rate", [("train/lr", "-", "")]),
    ("tokens/s", [("train/tokens_per_sec", "-", "")]),
]


def plot(run_dirs: list[Path]) -> Any:
    """A matplotlib ``Figure`` of the runs' curves against the step, one panel per entry of PANELS."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise UserError(
            "--plot needs matplotlib: pip install matplotlib (or pip install -e '.[plot]')"
        ) from None
    fig = Figure(figsize=(12, 8), layout="constrained")
    axes = fig.subplots(2, 2).flatten()
    names = [d.name for d in run_dirs]
    labels = names if len(set(names)) == len(names) else [str(d) for d in run_dirs]
    for n, (run_dir, label) in enumerate(zip(run_dirs, labels, strict=True)):
        scalars = read_scalars(run_dir)
        for ax, (title, curves) in zip(axes, PANELS, strict=True):
            for tag, style, suffix in curves:
                points = scalars.get(tag)
                if points:
                    steps, values = [p[1] for p in points], [p[2] for p in points]
                    name = f"{label} {suffix}".strip()
                    ax.plot(steps, values, style, color=f"C{n}", label=name, markersize=3)
            ax.set_title(title)
    for ax in axes:
        ax.set_xlabel("step")
        if ax.lines:
            ax.legend(fontsize="small")
    return fig
