"""The shard directory: its layout owner ``ShardDir`` (nobody else spells a path in it) and its Arrow files.

    DIR/manifest.json      tokenizer, vocab sha256, seq_length, counts, sources (written last)
    DIR/tokenizer/         vocab.txt + tokenizer files: BertTokenizer.from_pretrained(DIR/tokenizer)
    DIR/train, DIR/valid   the units' Arrow files (stream format, as ``save_to_disk`` writes them) and a
                           ``state.json`` listing them in unit order: ``datasets.load_from_disk`` maps them
    DIR/.prep/             only while ``prepare`` runs: plan.json, config.pickle, units/NAME.json markers

Every file is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from data_prep.atomic import atomic_file, fsync_file, temp_file, write_json
from data_prep.errors import UserError

SPLITS = ("train", "valid")
COLUMNS = ("input_ids", "sentence_ends", "doc_ends")
BATCH_ROWS = 1024
EMPTY_FILE = "empty.arrow"
PREPARE = "`python -m data_prep prepare`"


@dataclass(frozen=True)
class ShardDir:
    """A directory written by ``data_prep prepare`` (or being written): every path in it, and its loaders."""

    root: Path
    columns: ClassVar[tuple[str, ...]] = COLUMNS

    @classmethod
    def open(cls, path: str | Path) -> ShardDir:
        """A finished shard directory, or a one-line UserError saying what is wrong with ``path``."""
        root = Path(path)
        if not root.is_dir():
            raise UserError(f"{root} does not exist or is not a directory")
        shards = cls(root)
        if not shards.manifest_file.is_file():
            raise shards._not_prepared()
        return shards

    @property
    def manifest_file(self) -> Path:
        return self.root / "manifest.json"

    @property
    def tokenizer_dir(self) -> Path:
        return self.root / "tokenizer"

    @property
    def vocab_file(self) -> Path:
        return self.tokenizer_dir / "vocab.txt"

    @property
    def work_dir(self) -> Path:
        """Exists only while ``prepare`` runs (or was interrupted)."""
        return self.root / ".prep"

    @property
    def plan_file(self) -> Path:
        """Identifies the job, so that ``--resume`` refuses other inputs or options."""
        return self.work_dir / "plan.json"

    @property
    def worker_config_file(self) -> Path:
        """Where the worker processes read the job's configuration from."""
        return self.work_dir / "config.pickle"

    def _not_prepared(self) -> UserError:
        return UserError(f"{self.root} holds no manifest.json: is it a directory made by {PREPARE}?")

    def split_dir(self, split: str) -> Path:
        return self.root / split

    def unit_file(self, split: str, unit: str) -> Path:
        return self.split_dir(split) / f"{unit}.arrow"

    def marker(self, unit: str) -> Path:
        """Exists once unit ``unit`` is done (its Arrow files are in place)."""
        return self.work_dir / "units" / f"{unit}.json"

    def create(self) -> None:
        """The directories ``prepare`` writes into."""
        for sub in (self.work_dir / "units", *(self.split_dir(s) for s in SPLITS)):
            sub.mkdir(parents=True, exist_ok=True)

    def read_manifest(self) -> dict[str, Any]:
        try:
            return json.loads(self.manifest_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise self._not_prepared() from None
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot read {self.manifest_file}: {exc}") from None

    def vocab_sha256(self) -> str:
        if not self.vocab_file.is_file():
            raise UserError(f"{self.tokenizer_dir} holds no vocab.txt")
        return hashlib.sha256(self.vocab_file.read_bytes()).hexdigest()

    def load_tokenizer(self) -> Any:
        """The tokenizer the shards were made with (``BertTokenizer``, as the seed card loads it)."""
        from transformers import BertTokenizer

        try:
            return BertTokenizer.from_pretrained(str(self.tokenizer_dir))
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot load the tokenizer in {self.tokenizer_dir}: {exc}") from None

    def load_split(self, split: str, required: bool = True) -> Any:
        """``DIR/split`` as a memory-mapped ``datasets.Dataset`` (None if absent and not ``required``)."""
        import datasets

        path = self.split_dir(split)
        if not path.is_dir():
            if required:
                raise UserError(f"{path} does not exist: is {self.root} a directory made by {PREPARE}?")
            return None
        try:
            rows = datasets.load_from_disk(str(path))
        except (FileNotFoundError, ValueError) as exc:
            raise UserError(f"cannot load {path}: {exc}") from None
        missing = set(COLUMNS) - set(rows.column_names)
        if missing:
            raise UserError(f"{path} lacks the columns {sorted(missing)}: re-run {PREPARE}")
        return rows

    def split_files(self, split: str) -> list[str]:
        """The Arrow files of a finished split, in order (without the placeholder of an empty split)."""
        state_file = self.split_dir(split) / "state.json"
        names = [
            entry["filename"] for entry in json.loads(state_file.read_text(encoding="utf-8"))["_data_files"]
        ]
        for name in names:  # a data file never names a path outside its own directory
            if not isinstance(name, str) or Path(name).name != name or name.startswith("."):
                raise UserError(f"{state_file} names a file outside its directory: {name!r}")
        return [name for name in names if name != EMPTY_FILE]

    def finish_split(self, split: str, files: list[str], layout: Layout) -> None:
        """Write ``state.json`` and ``dataset_info.json`` so that the split loads as one dataset."""
        split_dir = self.split_dir(split)
        for tmp in split_dir.glob(".*.tmp"):  # left by a killed writer
            tmp.unlink(missing_ok=True)
        if not files:
            write_empty(split_dir / EMPTY_FILE, layout)
            files = [EMPTY_FILE]
        fingerprint = hashlib.sha256("\n".join(files).encode()).hexdigest()[:16]
        for name in files:
            size = (split_dir / name).stat().st_size
            fingerprint = hashlib.sha256(f"{fingerprint}{size}".encode()).hexdigest()[:16]
        info = {"citation": "", "description": "", "features": layout.features, "homepage": "", "license": ""}
        write_json(split_dir / "dataset_info.json", info)
        write_json(
            split_dir / "state.json",
            {
                "_data_files": [{"filename": name} for name in files],
                "_fingerprint": fingerprint,
                "_format_columns": None,
                "_format_kwargs": {},
                "_format_type": None,
                "_output_all_columns": False,
                "_split": None,
            },
        )

    def remove_work_dir(self) -> None:
        shutil.rmtree(self.work_dir, ignore_errors=True)


@dataclass(frozen=True)
class Layout:
    """Column dtypes and the Arrow schema (with the ``datasets`` features in its metadata)."""

    id_dtype: str  # "uint16" or "uint32"
    offset_dtype: str  # "uint16": seq_length is at most 65535
    schema: pa.Schema
    features: dict  # datasets.Features.to_dict()


def make_layout(vocab_size: int, seq_length: int) -> Layout:
    import datasets

    id_dtype = "uint16" if vocab_size <= 1 << 16 else "uint32"
    if seq_length >= 1 << 16:
        raise ValueError("seq_length must be below 65536 (offsets are uint16)")
    offset_dtype = "uint16"
    list_type = getattr(datasets, "List", None) or datasets.Sequence
    features = datasets.Features(
        {
            "input_ids": list_type(datasets.Value(id_dtype)),
            "sentence_ends": list_type(datasets.Value(offset_dtype)),
            "doc_ends": list_type(datasets.Value(offset_dtype)),
        }
    )
    return Layout(id_dtype, offset_dtype, features.arrow_schema, features.to_dict())


class UnitWriter:
    """Rows of one unit and split, written in batches to ``path`` (created only if a row is added)."""

    def __init__(self, path: Path, layout: Layout) -> None:
        self.path = path
        self.tmp = temp_file(path)
        self.layout = layout
        self.rows = 0
        self._writer: pa.RecordBatchStreamWriter | None = None
        self._sink: pa.NativeFile | None = None
        self._buf: dict[str, list[np.ndarray]] = {c: [] for c in COLUMNS}

    def add(self, ids: np.ndarray, sentence_ends: list[int], doc_ends: list[int]) -> None:
        self._buf["input_ids"].append(ids.astype(self.layout.id_dtype))
        self._buf["sentence_ends"].append(np.asarray(sentence_ends, dtype=self.layout.offset_dtype))
        self._buf["doc_ends"].append(np.asarray(doc_ends, dtype=self.layout.offset_dtype))
        self.rows += 1
        if len(self._buf["input_ids"]) >= BATCH_ROWS:
            self._write_batch()

    def _write_batch(self) -> None:
        if not self._buf["input_ids"]:
            return
        if self._writer is None:
            self._sink = pa.OSFile(str(self.tmp), "wb")
            self._writer = pa.ipc.new_stream(self._sink, self.layout.schema)
        arrays = [_list_array(self._buf[c]) for c in COLUMNS]
        self._writer.write_batch(pa.record_batch(arrays, schema=self.layout.schema))
        self._buf = {c: [] for c in COLUMNS}

    def close(self) -> str | None:
        """Finish the file and give it its final name; the file name, or None when no row was added."""
        self._write_batch()
        if self._writer is None:
            return None
        self._writer.close()
        self._sink.close()
        fsync_file(self.tmp)
        os.replace(self.tmp, self.path)
        return self.path.name

    def abort(self) -> None:
        if self._writer is not None:
            self._sink.close()
            self.tmp.unlink(missing_ok=True)
            self._writer = None


def _list_array(rows: list[np.ndarray]) -> pa.ListArray:
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    offsets = np.zeros(len(rows) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(np.concatenate(rows)))


def write_empty(path: Path, layout: Layout) -> None:
    with atomic_file(path) as tmp, pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_stream(sink, layout.schema):
        pass
