"""Experiment trackers: ``train.report_to`` goes to accelerate's trackers as it is (tensorboard by default;
wandb, mlflow, aim, ... when installed); nothing here is a tracker of its own.

TensorBoard gets two things accelerate does not do the way a run needs: the hyper-parameters are
written into the run itself, linked to ``eval/loss`` and ``eval/accuracy`` (accelerate's
``store_init_configuration`` makes a new timestamped sub-run at every launch, with no metrics), and the
full config.yaml goes to the Text tab. Constants stay out of the scalars.
"""

from __future__ import annotations

import json
from typing import Any

from accelerate import Accelerator
from accelerate.tracking import LOGGER_TYPE_TO_CLASS, get_available_trackers

from data_prep.errors import UserError

HPARAM_METRICS = ("eval/loss", "eval/accuracy")


def known_trackers() -> list[str]:
    return sorted(LOGGER_TYPE_TO_CLASS)


def unknown_trackers(report_to: str) -> list[str]:
    """The names in ``train.report_to`` that accelerate does not know (the config's check of the key)."""
    return [name for name in _names(report_to) if name not in LOGGER_TYPE_TO_CLASS]


def _names(report_to: str) -> list[str]:
    return [n.strip() for n in report_to.split(",") if n.strip() and n.strip() != "none"]


def trackers(report_to: str) -> list[str]:
    """The names in ``train.report_to`` (comma-separated; ``none``: none), each installed (that each is a
    tracker accelerate knows, the config checked when it was loaded)."""
    names, available = _names(report_to), {str(getattr(t, "value", t)) for t in get_available_trackers()}
    for name in names:
        if name not in available:
            raise UserError(f"train.report_to: {name} is not installed (pip install {name})")
    return names


def start(
    accelerator: Accelerator, names: list[str], project: str, hparams: dict[str, Any], config_yaml: str
) -> None:
    """Start the trackers ``names``; in TensorBoard, the hyper-parameters in the run and the config as
    text (the other trackers get the hyper-parameters their own way)."""
    accelerator.init_trackers(project)
    for tracker in accelerator.trackers:
        if tracker.name != "tensorboard":
            tracker.store_init_configuration(hparams)
    if accelerator.is_main_process and "tensorboard" in names:
        from torch.utils.tensorboard.summary import hparams as hparams_summary

        writer = accelerator.get_tracker("tensorboard", unwrap=True)
        metrics = dict.fromkeys(HPARAM_METRICS, 0.0)  # values are read from the run's own scalars
        for summary in hparams_summary(hparams, metrics):
            writer.file_writer.add_summary(summary)
        config_text = "\n".join("    " + line for line in config_yaml.splitlines())
        writer.add_text("run/config", config_text)
        writer.flush()


def manifest_markdown(manifest: dict[str, Any], max_items: int = 10) -> str:
    """The data manifest as a JSON code block for a TensorBoard text summary (long lists shortened)."""
    short = {}
    for key, value in manifest.items():
        if isinstance(value, list) and len(value) > max_items:
            value = value[:max_items] + [f"... {len(value) - max_items} more"]
        elif isinstance(value, dict) and len(value) > max_items:  # the files' checksums
            value = {**dict(list(value.items())[:max_items]), "...": f"{len(value) - max_items} more"}
        short[key] = value
    body = json.dumps(short, indent=2, ensure_ascii=False)
    return "\n".join("    " + line for line in body.splitlines())
