"""Batching noised examples: dynamic padding, attention masks, teacher-forcing decoder inputs.

Each example is ``{"input_ids": src, "labels": tgt}`` as the ``Denoiser`` returns them: ``src`` the
corrupted encoder input, ``tgt`` the original example (``[CLS] ... [SEP]``). The decoder is fed
``tgt[:-1]`` (so it starts with ``[CLS]``, the model's ``decoder_start_token_id``) and learns to
predict ``tgt[1:]``. A batch is padded to its longest member only, never to a fixed length.

The decoder inputs are right-padded, so the decoder's causal mask already hides every pad from every
real position: ``decoder_attention_mask`` changes no real output (tests/unit/test_collate.py proves it)
and only keeps SDPA off its flash kernel. It is left out unless asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

IGNORE_INDEX = -100  # label value that the cross-entropy of transformers skips


@dataclass(frozen=True)
class DenoisingCollator:
    """``collate(examples) -> dict of int64 tensors``: input_ids, attention_mask, decoder_input_ids,
    [decoder_attention_mask,] labels (pads are ``-100``). ``pad_to_multiple_of`` rounds the padded
    lengths up (8 suits GPU tensor cores; a coarser multiple gives torch.compile fewer shapes)."""

    pad_id: int
    pad_to_multiple_of: int | None = None
    decoder_attention_mask: bool = True

    def __call__(self, examples: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if not examples:
            raise ValueError("cannot collate an empty batch")
        sources = [np.asarray(e["input_ids"], dtype=np.int64) for e in examples]
        targets = [np.asarray(e["labels"], dtype=np.int64) for e in examples]
        if any(len(t) < 2 for t in targets):
            raise ValueError("every target needs at least 2 tokens ([CLS] ... [SEP])")
        input_ids, attention_mask = self._pad(sources, self.pad_id)
        decoder_input_ids, decoder_attention_mask = self._pad([t[:-1] for t in targets], self.pad_id)
        labels, _ = self._pad([t[1:] for t in targets], IGNORE_INDEX)
        batch = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "decoder_input_ids": decoder_input_ids,
        }
        if self.decoder_attention_mask:
            batch["decoder_attention_mask"] = decoder_attention_mask
        return {**batch, "labels": labels}

    def _pad(self, rows: list[np.ndarray], value: int) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        width = int(lengths.max())
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        out = np.full((len(rows), width), value, dtype=np.int64)
        mask = np.arange(width) < lengths[:, None]
        out[mask] = np.concatenate(rows)
        return torch.from_numpy(out), torch.from_numpy(mask.astype(np.int64))
