"""Parquet and Arrow files and ``hf:`` datasets: their row counts, and their text column in batches.

One place for what ``pyarrow`` and ``datasets`` are asked, shared by the format check (is a table empty,
can it be read) and the decoder (its rows as documents).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from data_prep.inputs import is_hf, open_hf

TABLE_BATCH_ROWS = 1024
TABLE_ERRORS = (OSError, pa.ArrowException)


def table_rows(path: Path) -> int:
    """The rows of a parquet or Arrow file (from its metadata, for parquet)."""
    if path.suffix.lower() == ".parquet":
        return pq.ParquetFile(path).metadata.num_rows
    with pa.memory_map(str(path)) as source:
        return _read_arrow(source).num_rows


def _read_arrow(source: pa.MemoryMappedFile) -> pa.Table:
    """An Arrow IPC file (Feather v2) or stream (what ``datasets`` writes), memory-mapped: no copy."""
    try:
        return pa.ipc.open_file(source).read_all()
    except pa.ArrowInvalid:
        source.seek(0)
        return pa.ipc.open_stream(source).read_all()


def table_batches(path: Path, text_field: str) -> Iterator[tuple[list[object] | None, int]]:
    """(the ``text_field`` cells, or None when the table has no such column; rows) per batch of rows."""
    if is_hf(path):
        for batch in open_hf(str(path)).iter(batch_size=TABLE_BATCH_ROWS):
            rows = len(next(iter(batch.values()), []))
            yield batch.get(text_field), rows
        return
    if path.suffix.lower() == ".parquet":
        table = pq.ParquetFile(path)
        if text_field not in table.schema_arrow.names:
            yield None, table.metadata.num_rows
            return
        for batch in table.iter_batches(batch_size=TABLE_BATCH_ROWS, columns=[text_field]):
            yield batch.column(0).to_pylist(), batch.num_rows
        return
    with pa.memory_map(str(path)) as source:
        table = _read_arrow(source)
        if text_field not in table.column_names:
            yield None, table.num_rows
            return
        for batch in table.select([text_field]).to_batches(max_chunksize=TABLE_BATCH_ROWS):
            yield batch.column(0).to_pylist(), batch.num_rows
