"""Training data: the prepared shards, a noising dataset, and a resumable per-rank batch sampler.

The sampler yields keys ``(epoch, row)``; the dataset noises row ``row`` as a pure function of
``(seed, epoch, row)`` inside the DataLoader workers, so the batches depend only on the position in
the data, never on worker count or timing. The position is ``(epoch, offset)``: how many examples of
that epoch's permutation the whole job (all ranks) has consumed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from transformers import BertTokenizer

from data_prep.errors import UserError
from data_prep.noise import Denoiser

Key = tuple[int, int]  # (epoch, row index)


@dataclass
class Shards:
    """A directory written by ``python -m data_prep prepare``."""

    path: Path
    manifest: dict[str, Any]
    tokenizer: Any
    vocab_sha256: str  # of DIR/tokenizer/vocab.txt, checked against the manifest's
    train: datasets.Dataset
    valid: datasets.Dataset | None


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_shards(path: str | None) -> Shards:
    """Open DIR/manifest.json, DIR/tokenizer, DIR/train and DIR/valid (memory-mapped); clear errors."""
    if not path:
        raise UserError(
            "data.path is not set: pass --data.path DIR (a directory made by `data_prep prepare`)"
        )
    root = Path(path)
    if not root.is_dir():
        raise UserError(f"data.path {root} does not exist or is not a directory")
    manifest_file = root / "manifest.json"
    if not manifest_file.is_file():
        raise UserError(f"{root} holds no manifest.json: prepare it with `python -m data_prep prepare`")
    try:
        manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read {manifest_file}: {exc}") from None
    if not (root / "tokenizer" / "vocab.txt").is_file():
        raise UserError(f"{root / 'tokenizer'} holds no vocab.txt")
    vocab_sha256 = file_sha256(root / "tokenizer" / "vocab.txt")
    if manifest.get("vocab_sha256", vocab_sha256) != vocab_sha256:
        raise UserError(
            f"{root / 'tokenizer' / 'vocab.txt'} is not the vocab the shards were made with "
            "(its sha256 differs from manifest.json's vocab_sha256)"
        )
    tokenizer = BertTokenizer.from_pretrained(str(root / "tokenizer"))
    train = _load_split(root / "train", required=True)
    valid = _load_split(root / "valid", required=False)
    if train is None or len(train) == 0:
        raise UserError(f"{root / 'train'} holds no examples")
    return Shards(
        root, manifest, tokenizer, vocab_sha256, train, valid if valid is not None and len(valid) else None
    )


def _load_split(path: Path, required: bool) -> datasets.Dataset | None:
    if not path.is_dir():
        if required:
            raise UserError(f"{path} does not exist: is data.path a directory made by `data_prep prepare`?")
        return None
    try:
        split = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as exc:
        raise UserError(f"cannot load {path}: {exc}") from None
    missing = {"input_ids", "sentence_ends", "doc_ends"} - set(split.column_names)
    if missing:
        raise UserError(f"{path} lacks the columns {sorted(missing)}: re-run `data_prep prepare`")
    return split.select_columns(["input_ids", "sentence_ends", "doc_ends"]).with_format("numpy")


class NoisedDataset(torch.utils.data.Dataset):
    """Map-style dataset over keys ``(epoch, row)``: row ``row`` noised for ``epoch`` -> src/labels."""

    def __init__(self, rows: datasets.Dataset, denoiser: Denoiser):
        self.rows = rows
        self.denoiser = denoiser

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key: Key) -> dict[str, np.ndarray]:
        return self.__getitems__([key])[0]

    def __getitems__(self, keys: list[Key]) -> list[dict[str, np.ndarray]]:
        indices = [row for _, row in keys]
        batch = self.rows[indices]
        rows = list(zip(batch["input_ids"], batch["sentence_ends"], batch["doc_ends"], strict=True))
        noised = self.denoiser.batch(rows, [epoch for epoch, _ in keys], indices)
        return [{"input_ids": src, "labels": tgt} for src, tgt in noised]


class EpochBatchSampler:
    """This rank's micro-batches of keys, forever, starting at a saved ``(epoch, offset)``.

    Epoch ``e`` is the permutation ``default_rng((seed, e))`` of all rows, cut into global batches of
    ``batch_size * world`` (the incomplete tail is dropped); rank ``r`` takes slice ``r`` of each. So
    ranks never share an example, and 1 rank with grad_accum ``k`` sees the same examples per
    optimizer step as ``k`` ranks. Resuming starts at the offset directly, nothing is replayed.
    """

    def __init__(
        self,
        num_rows: int,
        batch_size: int,
        rank: int,
        world: int,
        seed: int,
        epoch: int = 0,
        offset: int = 0,
    ):
        self.num_rows, self.batch_size, self.rank, self.world, self.seed = (
            num_rows,
            batch_size,
            rank,
            world,
            seed,
        )
        self.chunk = batch_size * world
        if num_rows < self.chunk:
            raise UserError(
                f"{num_rows} training examples are fewer than one batch across all processes "
                f"({batch_size} per device x {world} processes)"
            )
        self.start = (epoch, offset)

    def permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng((self.seed, epoch)).permutation(self.num_rows)

    def advance(self, epoch: int, offset: int) -> tuple[int, int]:
        """The position after one global micro-batch taken at ``(epoch, offset)``."""
        if offset + self.chunk > self.num_rows:  # the tail of an epoch is skipped
            epoch, offset = epoch + 1, 0
        return epoch, offset + self.chunk

    def __iter__(self) -> Iterator[list[Key]]:
        epoch, offset = self.start
        perm = self.permutation(epoch)
        while True:
            if offset + self.chunk > self.num_rows:
                epoch, offset = epoch + 1, 0
                perm = self.permutation(epoch)
            lo = offset + self.rank * self.batch_size
            yield [(epoch, int(row)) for row in perm[lo : lo + self.batch_size]]
            offset += self.chunk


def make_loader(
    dataset: NoisedDataset, sampler: EpochBatchSampler, collate: Callable, num_workers: int, pin_memory: bool
) -> torch.utils.data.DataLoader:
    """An endless loader; its own generator keeps worker seeding from drawing on the global RNG."""
    return torch.utils.data.DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=collate,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
        prefetch_factor=4 if num_workers > 0 else None,
        generator=torch.Generator().manual_seed(sampler.seed),
    )
