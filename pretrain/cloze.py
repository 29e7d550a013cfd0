"""The cloze score: can a model fill in a short gap in held-out text, as the seed card's widget asks?

Item ``i`` takes one sentence of a held-out example and replaces a span of 1-4 Chinese characters with
one ``[MASK]`` (``中国的首都是[MASK]京`` style). The choice is a pure function of ``(seed, i)``, so every
model and every run sees the same items. The model decodes the prompt greedily; the fill is what its
output holds between the prompt's copied left and right context. Scored as exact match of the filled
span and as character F1 (SQuAD's token F1 over characters, the usual metric for Chinese spans).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import datasets
import numpy as np
import torch

MIN_SENTENCE, MAX_SENTENCE = 8, 64  # tokens of a sentence worth a cloze item (a widget-sized prompt)
MAX_SPAN = 4  # characters hidden behind the one [MASK]
SLACK = 6  # generated tokens beyond the prompt's length: the span is at most 3 longer than [MASK]


@dataclass(frozen=True)
class ClozeItem:
    row: int
    left: tuple[int, ...]  # sentence ids before the gap
    span: tuple[int, ...]  # the hidden characters
    right: tuple[int, ...]  # sentence ids after the gap


def hanzi_ids(tokenizer: Any) -> np.ndarray:
    """True for the ids whose token is one CJK character (not a ``##`` piece): what a span may hide."""
    table = np.zeros(len(tokenizer), dtype=bool)
    for token, i in tokenizer.get_vocab().items():
        table[i] = len(token) == 1 and "\u4e00" <= token <= "\u9fff"
    return table


def sentences(ids: np.ndarray, sentence_ends: np.ndarray, specials: set[int]) -> Iterator[np.ndarray]:
    """The sentences of one packed example, without [CLS]/[SEP]/[PAD]."""
    start = 0
    for end in sentence_ends.tolist():
        yield np.array([t for t in ids[start:end].tolist() if t not in specials], dtype=np.int64)
        start = end


def build_cloze_set(rows: datasets.Dataset, tokenizer: Any, num_items: int, seed: int) -> list[ClozeItem]:
    """Up to ``num_items`` items, one per held-out example (in order) that has a sentence to cut."""
    hanzi = hanzi_ids(tokenizer)
    specials = set(tokenizer.all_special_ids)
    items: list[ClozeItem] = []
    for row in range(len(rows)):
        if len(items) >= num_items:
            break
        example = rows[row]
        rng = np.random.default_rng([seed, len(items), row])
        ids, ends = np.asarray(example["input_ids"]), np.asarray(example["sentence_ends"])
        fits = [s for s in sentences(ids, ends, specials) if MIN_SENTENCE <= len(s) <= MAX_SENTENCE]
        if not fits:
            continue
        sentence = fits[int(rng.integers(len(fits)))]
        for length in range(int(rng.integers(1, MAX_SPAN + 1)), 0, -1):
            ok = np.lib.stride_tricks.sliding_window_view(hanzi[sentence], length).all(axis=1)
            starts = np.flatnonzero(ok)
            if len(starts):
                at = int(starts[int(rng.integers(len(starts)))])
                parts = sentence[:at], sentence[at : at + length], sentence[at + length :]
                items.append(ClozeItem(row, *(tuple(int(t) for t in p) for p in parts)))
                break
    return items


def prompt_ids(item: ClozeItem, tokenizer: Any) -> list[int]:
    return [tokenizer.cls_token_id, *item.left, tokenizer.mask_token_id, *item.right, tokenizer.sep_token_id]


def extract_fill(output: list[int], item: ClozeItem) -> list[int]:
    """What ``output`` (special tokens removed) holds between its copy of the left and right context."""
    start = 0
    while start < min(len(output), len(item.left)) and output[start] == item.left[start]:
        start += 1
    end = len(output)
    right = len(item.right)
    while right and end > start and output[end - 1] == item.right[right - 1]:
        end, right = end - 1, right - 1
    return output[start:end]


def char_f1(predicted: str, truth: str) -> float:
    """F1 of the characters in common (with multiplicity); 1.0 when both are empty."""
    if not predicted or not truth:
        return float(predicted == truth)
    common = sum((Counter(predicted) & Counter(truth)).values())
    if not common:
        return 0.0
    precision, recall = common / len(predicted), common / len(truth)
    return 2 * precision * recall / (precision + recall)


def text_of(tokenizer: Any, ids: list[int] | tuple[int, ...]) -> str:
    """The characters of ``ids`` without spaces or ``##`` (how Chinese text is compared)."""
    return "".join(t.removeprefix("##") for t in tokenizer.convert_ids_to_tokens(list(ids)))


@torch.no_grad()
def generate(model: Any, prompts: list[list[int]], pad_id: int, device: torch.device) -> list[list[int]]:
    """Greedy outputs of a batch of prompts (encoder inputs right-padded, masked)."""
    width = max(len(p) for p in prompts)
    input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    for i, p in enumerate(prompts):
        input_ids[i, : len(p)] = torch.tensor(p)
    limit = min(width + SLACK, model.config.max_position_embeddings)
    out = model.generate(
        input_ids=input_ids.to(device),
        attention_mask=(input_ids != pad_id).long().to(device),
        max_length=limit,
        do_sample=False,
        num_beams=1,
    )
    return out.tolist()


def score_cloze(
    model: Any, tokenizer: Any, items: list[ClozeItem], batch_size: int, device: torch.device
) -> torch.Tensor:
    """``[items, exact matches, summed char F1]`` over ``items`` (summed, so ranks can add them up)."""
    was_training = model.training
    model.eval()
    specials = set(tokenizer.all_special_ids)
    sums = torch.zeros(3, dtype=torch.float64)
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        outputs = generate(model, [prompt_ids(i, tokenizer) for i in chunk], tokenizer.pad_token_id, device)
        for item, output in zip(chunk, outputs, strict=True):
            fill = extract_fill([t for t in output if t not in specials], item)
            truth = text_of(tokenizer, item.span)
            f1 = char_f1(text_of(tokenizer, fill), truth)
            sums += torch.tensor([1.0, float(tuple(fill) == item.span), f1])
    model.train(was_training)
    return sums
