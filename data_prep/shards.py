"""The shard directory: its layout owner ``ShardDir`` (nobody else spells a path in it) and its Arrow files.

    DIR/manifest.json      tokenizer, vocab sha256, seq_length, counts, sources (written last)
    DIR/tokenizer/         vocab.txt + tokenizer files: BertTokenizer.from_pretrained(DIR/tokenizer)
    DIR/train, DIR/valid   the units' Arrow files (stream format, as ``save_to_disk`` writes them) and a
                           ``state.json`` listing them in unit order: ``datasets.load_from_disk`` maps them
    DIR/.prep/             only while ``prepare`` runs: plan.json, config.pickle, units/NAME.json markers
    DIR/.lock              only while a job writes the directory (``data_prep.lock``)

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
from data_prep.errors import UserError, first_line
from data_prep.lock import DirLock

SPLITS = ("train", "valid")
COLUMNS = ("input_ids", "sentence_ends", "doc_ends")
# written by ``prepare --segment``: offsets of the tokens that continue a word (a ``##`` piece, or a later
# character of a segmenter's word); the continuations rather than the starts because they are the fewer
# (about 4 in 10 Chinese tokens) and an empty list means "every token is a word"
WORD_CONTINUES = "word_continues"
OPTIONAL_COLUMNS = (WORD_CONTINUES,)
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

    def lock(self) -> DirLock:
        """The lock a job writing this directory holds from its first check to its last write."""
        return DirLock(self.root, "output")

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

    def load_tokenizer(self, manifest: dict[str, Any] | None = None) -> Any:
        """The tokenizer the shards were made with (``BertTokenizer``, as the seed card loads it).

        With the ``manifest``, its special-token ids and size must be the ones the shards were made with
        (a swapped tokenizer.json would otherwise train with another [MASK])."""
        from transformers import BertTokenizer

        try:
            tok = BertTokenizer.from_pretrained(str(self.tokenizer_dir))
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot load the tokenizer in {self.tokenizer_dir}: {exc}") from None
        if manifest is not None:
            names = ("pad", "unk", "cls", "sep", "mask")
            special = {getattr(tok, f"{n}_token"): getattr(tok, f"{n}_token_id") for n in names}
            expected = manifest.get("special_ids", special)
            if special != expected or len(tok) != manifest.get("vocab_size", len(tok)):
                raise UserError(
                    f"the tokenizer in {self.tokenizer_dir} is not the one the shards were made with "
                    f"(special ids {special}, {len(tok)} tokens; manifest.json: {expected}, "
                    f"{manifest.get('vocab_size')} tokens)"
                )
        return tok

    def digests(self) -> dict[str, dict[str, Any]]:
        """Size and sha256 of every file that training reads (the splits' and the tokenizer's)."""
        found = {}
        for sub in (*SPLITS, self.tokenizer_dir.name):
            for path in sorted((self.root / sub).iterdir()):
                if path.is_file() and not path.name.startswith("."):
                    found[f"{sub}/{path.name}"] = file_digest(path)
        return found

    def verify(self, manifest: dict[str, Any], hashes: bool) -> int:
        """Check the files against the manifest's ``files``: sizes always, and the sha256 of the tokenizer
        files always, of the shards with ``hashes``. A one-line UserError names the first bad file.
        Returns how many files were checked (0 for a manifest from before checksums were recorded)."""
        files = manifest.get("files")
        if not isinstance(files, dict):
            return 0
        tokenizer = self.tokenizer_dir.name
        for rel, expected in files.items():
            path = self.root / rel
            if Path(rel).is_absolute() or ".." in Path(rel).parts:
                raise UserError(f"{self.manifest_file} names a file outside {self.root}: {rel!r}")
            if not isinstance(expected, dict) or not isinstance(expected.get("bytes"), int):
                raise UserError(f"{self.manifest_file} is damaged: its entry for {rel} is {expected!r}")
            if not path.is_file():
                raise UserError(f"{path} is missing (listed in manifest.json): re-run {PREPARE}")
            size = path.stat().st_size
            if size != expected.get("bytes"):
                raise UserError(
                    f"{path} has {size:,} bytes, manifest.json says {expected.get('bytes'):,}: the file is "
                    f"damaged (truncated or replaced); re-run {PREPARE}"
                )
            if (hashes or rel.startswith(f"{tokenizer}/")) and file_digest(path) != expected:
                raise UserError(f"{path} does not match its sha256 in manifest.json: the file was changed")
        for path in sorted(self.tokenizer_dir.iterdir()):
            if path.is_file() and f"{tokenizer}/{path.name}" not in files:
                raise UserError(f"{path} was added after the shards were made (not in manifest.json)")
        return len(files)

    def check_ids(self, vocab_size: int) -> int:
        """Every id of every split below ``vocab_size``, else a UserError naming the file and its row; the
        rows read (an absent split, as valid may be, has none)."""
        return sum(
            _check_ids(self.split_dir(split) / name, vocab_size)
            for split in SPLITS
            if self.split_dir(split).is_dir()
            for name in self.split_files(split)
        )

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
        except (OSError, ValueError) as exc:  # a missing, truncated or garbled Arrow file
            raise UserError(f"cannot load {path}: {first_line(exc)}") from None
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

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(self.schema.names)


def make_layout(vocab_size: int, seq_length: int, word_continues: bool = False) -> Layout:
    """The columns of ``COLUMNS``, and ``WORD_CONTINUES`` after them when ``word_continues``."""
    import datasets

    id_dtype = "uint16" if vocab_size <= 1 << 16 else "uint32"
    if seq_length >= 1 << 16:
        raise ValueError("seq_length must be below 65536 (offsets are uint16)")
    offset_dtype = "uint16"
    list_type = getattr(datasets, "List", None) or datasets.Sequence
    columns = {
        "input_ids": list_type(datasets.Value(id_dtype)),
        "sentence_ends": list_type(datasets.Value(offset_dtype)),
        "doc_ends": list_type(datasets.Value(offset_dtype)),
    }
    if word_continues:
        columns[WORD_CONTINUES] = list_type(datasets.Value(offset_dtype))
    features = datasets.Features(columns)
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
        self._buf: dict[str, list[np.ndarray]] = {c: [] for c in layout.columns}

    def add(
        self,
        ids: np.ndarray,
        sentence_ends: list[int],
        doc_ends: list[int],
        word_continues: np.ndarray | None = None,
    ) -> None:
        """One row; ``word_continues`` is required when the layout has that column (and ignored if not)."""
        offsets = self.layout.offset_dtype
        self._buf["input_ids"].append(ids.astype(self.layout.id_dtype))
        self._buf["sentence_ends"].append(np.asarray(sentence_ends, dtype=offsets))
        self._buf["doc_ends"].append(np.asarray(doc_ends, dtype=offsets))
        if WORD_CONTINUES in self._buf:
            self._buf[WORD_CONTINUES].append(np.asarray(word_continues, dtype=offsets))
        self.rows += 1
        if len(self._buf["input_ids"]) >= BATCH_ROWS:
            self._write_batch()

    def _write_batch(self) -> None:
        if not self._buf["input_ids"]:
            return
        if self._writer is None:
            self._sink = pa.OSFile(str(self.tmp), "wb")
            self._writer = pa.ipc.new_stream(self._sink, self.layout.schema)
        arrays = [_list_array(self._buf[c]) for c in self.layout.columns]
        self._writer.write_batch(pa.record_batch(arrays, schema=self.layout.schema))
        self._buf = {c: [] for c in self.layout.columns}

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


def file_digest(path: Path) -> dict[str, Any]:
    """``{"bytes": size, "sha256": hex}`` of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):  # hashlib.file_digest needs Python 3.11
            digest.update(chunk)
    return {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def _check_ids(path: Path, vocab_size: int) -> int:
    """The rows of one Arrow file once every id is below ``vocab_size`` (else a UserError naming the row)."""
    import pyarrow.compute as pc

    rows = 0
    try:
        with pa.memory_map(str(path)) as source:
            for batch in pa.ipc.open_stream(source):
                ids = batch.column(COLUMNS.index("input_ids"))
                values = pc.list_flatten(ids).to_numpy()
                bad = np.flatnonzero(values >= vocab_size)
                if bad.size:
                    row = rows + int(np.searchsorted(_row_starts(ids), bad[0], side="right")) - 1
                    raise UserError(
                        f"{path} row {row}: id {int(values[bad[0]])} is outside the vocab "
                        f"({vocab_size} tokens)"
                    )
                rows += batch.num_rows
    except (OSError, pa.ArrowException) as exc:
        raise UserError(f"cannot read {path}: {first_line(exc)}") from None
    return rows


def _row_starts(ids: pa.ListArray) -> np.ndarray:
    offsets = ids.offsets.to_numpy()
    return offsets - offsets[0]


def _list_array(rows: list[np.ndarray]) -> pa.ListArray:
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    offsets = np.zeros(len(rows) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(np.concatenate(rows)))


def write_empty(path: Path, layout: Layout) -> None:
    with atomic_file(path) as tmp, pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_stream(sink, layout.schema):
        pass
