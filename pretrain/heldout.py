"""Held-out evaluation (loss, accuracy on corrupted tokens) and greedy fill-in samples.

The evaluation set is always the first ``eval.num_examples`` rows of the valid split, noised with the
fixed ``eval.noise_seed`` (epoch 0), so curves compare across runs and resumes.

``eval/accuracy`` is the share of *corrupted* target tokens that the decoder's argmax (teacher forcing)
predicts right. A target token is corrupted when the source does not carry it through: it is not part
of any block that ``difflib.SequenceMatcher`` aligns between source and target (masked, replaced,
deleted or moved tokens). ``eval/accuracy_copied`` is the same over the other target tokens, those
the source carries through: the copying a young model learns first, long before it fills in anything.
``eval/token_accuracy`` is the same over all target tokens.
``eval/unigram_accuracy`` is the baseline a model without context reaches: the share of corrupted
tokens equal to the most frequent corrupted token of the evaluation set (the best constant guess).
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import datasets
import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import DistributedType

from pretrain.config import EvalConfig


def corrupted_mask(src: np.ndarray, tgt: np.ndarray) -> np.ndarray:
    """True for every target position whose token the source does not carry through unchanged."""
    mask = np.ones(len(tgt), dtype=bool)
    matcher = difflib.SequenceMatcher(None, src.tolist(), tgt.tolist(), autojunk=False)
    for block in matcher.get_matching_blocks():
        mask[block.b : block.b + block.size] = False
    return mask


@dataclass
class EvalExample:
    row: int
    src: np.ndarray
    tgt: np.ndarray
    corrupted: np.ndarray  # bool per target position
    weight: int = 1  # 0: padding so that every rank runs the same number of batches


def build_eval_set(valid: datasets.Dataset, denoiser: Callable, num_examples: int) -> list[EvalExample]:
    rows = valid[: min(num_examples, len(valid))]
    out = []
    for i, (ids, sents, docs) in enumerate(
        zip(rows["input_ids"], rows["sentence_ends"], rows["doc_ends"], strict=True)
    ):
        src, tgt = denoiser(ids, sents, docs, epoch=0, index=i)
        out.append(EvalExample(i, src, tgt, corrupted_mask(src, tgt)))
    return out


def unigram_accuracy(examples: list[EvalExample]) -> float:
    """The best constant prediction's accuracy on the corrupted target tokens of ``examples``."""
    corrupted = [e.tgt[e.corrupted] for e in examples if e.weight]
    tokens = np.concatenate(corrupted) if corrupted else np.zeros(0, dtype=np.int64)
    if not len(tokens):
        return 0.0
    return float(np.unique(tokens, return_counts=True)[1].max() / len(tokens))


def rank_slice(examples: list[EvalExample], rank: int, world: int) -> list[EvalExample]:
    """Rank ``rank``'s disjoint share, padded with weight-0 copies to the same length on every rank."""
    share = examples[rank::world]
    per_rank = math.ceil(len(examples) / world)
    filler = EvalExample(-1, examples[0].src, examples[0].tgt, examples[0].corrupted, weight=0)
    return share + [filler] * (per_rank - len(share))


def can_sample(accelerator: Accelerator) -> bool:
    """Fill-in samples need the whole model on one rank: not under FSDP or ZeRO-3, which shard the weights."""
    if accelerator.distributed_type == DistributedType.FSDP:
        return False
    deepspeed = accelerator.distributed_type == DistributedType.DEEPSPEED
    return not (deepspeed and accelerator.state.deepspeed_plugin.zero_stage == 3)


@dataclass
class Evaluation:
    """The fixed evaluation set, this rank's share of it and its unigram baseline."""

    examples: list[EvalExample]
    share: list[EvalExample]
    baseline: float
    samples: bool  # log fill-in samples (main process, when the whole model is on it)

    @classmethod
    def build(
        cls, valid: datasets.Dataset | None, denoiser: Callable, cfg: EvalConfig, accelerator: Accelerator
    ) -> Evaluation:
        examples = build_eval_set(valid, denoiser, cfg.num_examples) if valid is not None else []
        share = rank_slice(examples, accelerator.process_index, accelerator.num_processes) if examples else []
        samples = accelerator.is_main_process and can_sample(accelerator)
        return cls(examples, share, unigram_accuracy(examples), samples)

    def run(
        self, model: Any, accelerator: Accelerator, collate: Callable, tokenizer: Any, cfg: EvalConfig
    ) -> dict[str, Any]:
        """The metrics of ``evaluate`` (all ranks), the baseline, and the fill-in samples where drawn."""
        metrics: dict[str, Any] = evaluate(model, self.share, collate, cfg.batch_size, accelerator)
        metrics["eval/unigram_accuracy"] = self.baseline
        if self.samples:
            metrics["samples/fill_in"] = samples_markdown(
                accelerator.unwrap_model(model), tokenizer, cfg, self.examples
            )
        return metrics


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    examples: list[EvalExample],
    collate: Callable,
    batch_size: int,
    accelerator: Accelerator,
) -> dict[str, float]:
    """Loss and accuracies over this rank's ``examples``, summed over all ranks (each example once)."""
    was_training = model.training
    model.eval()
    sums = torch.zeros(
        5, dtype=torch.float64, device=accelerator.device
    )  # loss, tokens, correct, corrupted, hit
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        batch = collate([{"input_ids": e.src, "labels": e.tgt} for e in chunk])
        labels = batch.pop("labels")
        corrupted = torch.zeros_like(labels, dtype=torch.bool)
        for i, e in enumerate(chunk):
            if e.weight == 0:
                labels[i] = -100
            corrupted[i, : len(e.tgt) - 1] = torch.from_numpy(e.corrupted[1:])
        batch = {k: v.to(accelerator.device) for k, v in batch.items()}
        labels, corrupted = labels.to(accelerator.device), corrupted.to(accelerator.device)
        logits = model(**batch).logits.float()
        valid = labels != -100
        hits = (logits.argmax(-1) == labels) & valid
        corrupted &= valid
        sums += torch.stack(
            [
                F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=-100, reduction="sum").double(),
                valid.sum().double(),
                hits.sum().double(),
                corrupted.sum().double(),
                (hits & corrupted).sum().double(),
            ]
        )
    model.train(was_training)
    loss, tokens, correct, n_corrupted, hit_corrupted = accelerator.reduce(sums, reduction="sum").tolist()
    return {
        "eval/loss": loss / max(tokens, 1.0),
        "eval/accuracy": hit_corrupted / max(n_corrupted, 1.0),
        "eval/accuracy_copied": (correct - hit_corrupted) / max(tokens - n_corrupted, 1.0),
        "eval/token_accuracy": correct / max(tokens, 1.0),
    }


def to_text(tokenizer: Any, ids: Any) -> str:
    """Readable text of ids: no [CLS]/[SEP]/[PAD], [MASK] kept, spaces only between ASCII words."""
    text = tokenizer.decode([int(i) for i in ids], skip_special_tokens=False)
    for token in (tokenizer.cls_token, tokenizer.sep_token, tokenizer.pad_token):
        text = text.replace(token, " ")
    text = re.sub(r" +", " ", text).strip()
    return re.sub(r"(?<![A-Za-z0-9]) | (?![A-Za-z0-9])", "", text)


@torch.no_grad()
def fill_in(model: Any, tokenizer: Any, sources: list[list[int]], max_new_tokens: int) -> list[str]:
    """Greedy decoding of each source (token ids), one at a time."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    outputs = []
    for ids in sources:
        input_ids = torch.tensor([ids], device=device)
        limit = min(max_new_tokens + 1, len(ids) + 16, model.config.max_position_embeddings)
        generated = model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            max_length=limit,
            do_sample=False,
            num_beams=1,
        )
        outputs.append(to_text(tokenizer, generated[0]))
    model.train(was_training)
    return outputs


def samples_markdown(model: Any, tokenizer: Any, cfg: EvalConfig, heldout: list[EvalExample]) -> str:
    """A markdown table prompt -> greedy output for the configured prompts and a few noised held-out
    examples (with their original text)."""
    shown = heldout[: cfg.num_heldout_samples]
    sources = [tokenizer(p)["input_ids"] for p in cfg.prompts] + [e.src.tolist() for e in shown]
    originals = [""] * len(cfg.prompts) + [to_text(tokenizer, e.tgt) for e in shown]
    outputs = fill_in(model, tokenizer, sources, cfg.max_new_tokens)
    lines = ["| prompt | output | original |", "|---|---|---|"]
    for src, out, original in zip(sources, outputs, originals, strict=True):
        lines.append(f"| {_cell(to_text(tokenizer, src))} | {_cell(out)} | {_cell(original)} |")
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
