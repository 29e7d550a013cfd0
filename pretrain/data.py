"""Training data: the opened shards, a noising dataset, and a resumable per-rank batch sampler.

The sampler yields keys ``(epoch, row)``; the dataset noises row ``row`` as a pure function of
``(seed, epoch, row)`` inside the DataLoader workers, so the batches depend only on the position in
the data, never on worker count or timing. The position is ``(epoch, offset)``: how many examples of
that epoch's permutation the whole job (all ranks) has consumed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import datasets
import numpy as np
import torch

from data_prep.errors import UserError
from data_prep.noise import Denoiser
from data_prep.shards import OPTIONAL_COLUMNS, SPLITS, WORD_CONTINUES, ShardDir
from pretrain.preemption import ignore_in_workers

Key = tuple[int, int]  # (epoch, row index)


@dataclass
class Shards:
    """A shard directory opened for training: its layout, manifest, tokenizer and splits."""

    dir: ShardDir
    manifest: dict[str, Any]
    tokenizer: Any
    vocab_sha256: str  # of the tokenizer's vocab.txt, checked against the manifest's
    train: datasets.Dataset
    valid: datasets.Dataset | None

    @property
    def seq_length(self) -> int:
        return int(self.manifest.get("seq_length", 512))

    @property
    def target_tokens_per_example(self) -> float:
        """The mean labels of a training example: a row of n ids gives n - 1 (all but ``[CLS]``)."""
        counts = self.manifest["counts"]["train"]
        return (counts["ids"] - counts["examples"]) / max(counts["examples"], 1)


def load_shards(path: str | None, verify: str = "sizes") -> Shards:
    """Open a shard directory: manifest, tokenizer, train and valid (memory-mapped); clear errors.

    ``verify``: ``sizes`` checks every file's size and the tokenizer files' sha256 against the manifest
    (instant); ``full`` also hashes the shards and checks that every id is inside the vocab."""
    if not path:
        raise UserError(
            "data.path is not set: pass --data.path DIR (a directory made by `data_prep prepare`)"
        )
    try:
        shards = ShardDir.open(path)
    except UserError as exc:
        raise UserError(f"data.path: {exc}") from None
    manifest = shards.read_manifest()
    vocab_sha256 = shards.vocab_sha256()
    if manifest.get("vocab_sha256", vocab_sha256) != vocab_sha256:
        raise UserError(
            f"{shards.vocab_file} is not the vocab the shards were made with "
            "(its sha256 differs from manifest.json's vocab_sha256)"
        )
    shards.verify(manifest, hashes=verify == "full")
    tokenizer = shards.load_tokenizer(manifest)
    if verify == "full":
        shards.check_ids(len(tokenizer))
    train, valid = (_numpy_rows(shards.load_split(s, required=s == "train")) for s in SPLITS)
    if train is None or len(train) == 0:
        raise UserError(f"{shards.split_dir('train')} holds no examples")
    return Shards(
        shards, manifest, tokenizer, vocab_sha256, train, valid if valid is not None and len(valid) else None
    )


def _numpy_rows(split: datasets.Dataset | None) -> datasets.Dataset | None:
    """The columns the noise reads: the required ones, and the optional ones the shards have."""
    if split is None:
        return None
    optional = [c for c in OPTIONAL_COLUMNS if c in split.column_names]
    return split.select_columns([*ShardDir.columns, *optional]).with_format("numpy")


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
        columns = [batch["input_ids"], batch["sentence_ends"], batch["doc_ends"]]
        if WORD_CONTINUES in batch:  # shards made with prepare --segment
            columns.append(batch[WORD_CONTINUES])
        rows = list(zip(*columns, strict=True))
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
        worker_init_fn=ignore_in_workers,  # SIGUSR1 is the main process's (a checkpoint, then exit)
    )
