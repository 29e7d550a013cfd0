"""Arrow output: one file per unit and split, joined into ``datasets.save_to_disk`` layout without copying.

``DIR/train`` holds the units' Arrow files (stream format, the layout ``save_to_disk`` writes) and a
``state.json`` listing them in unit order, so ``datasets.load_from_disk`` memory-maps them as one dataset.
Every file is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from data_prep.manifest import write_json_atomic

COLUMNS = ("input_ids", "sentence_ends", "doc_ends")
BATCH_ROWS = 1024
EMPTY_FILE = "empty.arrow"


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
        self.tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
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
        _fsync(self.tmp)
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


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_empty(path: Path, layout: Layout) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_stream(sink, layout.schema):
        pass
    os.replace(tmp, path)


def finish_split(split_dir: Path, files: list[str], layout: Layout) -> None:
    """Write ``state.json`` and ``dataset_info.json`` so that ``split_dir`` loads as one dataset."""
    if not files:
        write_empty(split_dir / EMPTY_FILE, layout)
        files = [EMPTY_FILE]
    fingerprint = hashlib.sha256("\n".join(files).encode()).hexdigest()[:16]
    for name in files:
        fingerprint = hashlib.sha256(
            f"{fingerprint}{(split_dir / name).stat().st_size}".encode()
        ).hexdigest()[:16]
    write_json_atomic(
        split_dir / "dataset_info.json",
        {
            "citation": "",
            "description": "",
            "features": layout.features,
            "homepage": "",
            "license": "",
        },
    )
    write_json_atomic(
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


def remove_temporaries(directory: Path) -> None:
    for tmp in directory.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)
