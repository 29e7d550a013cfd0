"""Hugging Face exports ``hf/step-N/`` and ``hf/final/`` that transformers 4.x and 5.x both load.

Each holds config.json, model.safetensors, generation_config.json (generation starts at ``[CLS]`` and
stops at ``[SEP]``) and the data's tokenizer files including vocab.txt (which transformers 5 does not
write itself, and which 4.x's ``BertTokenizer`` needs), and the model card ``README.md`` (``pretrain.card``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from safetensors import SafetensorError
from transformers import PreTrainedModel
from transformers.utils import logging as hf_logging

from data_prep.atomic import atomic_dir
from data_prep.errors import UserError, first_line


def export(
    accelerator: Accelerator, model: torch.nn.Module, tokenizer_dir: Path, target: Path, card: str
) -> None:
    """Gather the full weights (a collective under FSDP / ZeRO-3) and write the export on the main process."""
    state_dict = accelerator.get_state_dict(model)
    if accelerator.is_main_process:
        export_model(accelerator.unwrap_model(model), state_dict, tokenizer_dir, target, card)
    accelerator.wait_for_everyone()


def export_model(
    model: PreTrainedModel, state_dict: dict[str, Any] | None, tokenizer_dir: Path, out: Path, card: str
) -> Path:
    """Write the export, its model card (``README.md``) included, into a temporary directory beside
    ``out``, then move it into place."""
    hf_logging.disable_progress_bar()
    try:
        with atomic_dir(out) as tmp:
            model.save_pretrained(str(tmp), state_dict=state_dict, safe_serialization=True)
            _make_config_portable(tmp / "config.json")
            for file in tokenizer_dir.iterdir():
                if file.is_file():
                    shutil.copy2(file, tmp / file.name)
            (tmp / "README.md").write_text(card, encoding="utf-8")
    except (OSError, SafetensorError) as exc:  # a full disk, mostly
        reason = first_line(exc)
        raise UserError(
            f"cannot write the export {out}: {reason} (the checkpoints are intact; free space and rerun "
            "with --train.resume auto, which writes it again)"
        ) from None
    return out


def _make_config_portable(path: Path) -> None:
    """Add what transformers 4.x reads where 5.x writes another key (``torch_dtype``), and the tokenizer."""
    config = json.loads(path.read_text(encoding="utf-8"))
    if "dtype" in config:
        config.setdefault("torch_dtype", config["dtype"])
    config.setdefault("tokenizer_class", "BertTokenizer")
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
