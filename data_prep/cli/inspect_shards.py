"""``inspect``: what a prepared directory holds: manifest, length histogram, fill ratio, examples.

(Not named ``inspect.py``: that would shadow the standard library's module.)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc

from data_prep.cli import int_at_least
from data_prep.errors import UserError
from data_prep.manifest import repairs_line
from data_prep.shards import SPLITS, ShardDir
from data_prep.tokenizer import readable

BAR_WIDTH = 40


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", type=Path, metavar="DIR", help="a directory made by `data_prep prepare`")
    parser.add_argument("--examples", type=int_at_least(0), default=3, help="decoded examples to print")
    parser.add_argument("--bins", type=int_at_least(1), default=8, help="bars in the length histogram")
    parser.add_argument("--json", action="store_true", help="print the manifest and histogram as JSON only")
    parser.add_argument(
        "--verify",
        action="store_true",
        help="first check every file against the manifest's sha256 and every id against the vocab",
    )


def load_lengths(shards: ShardDir, split: str) -> tuple[np.ndarray, Any]:
    """The example lengths of a split (from the Arrow list offsets, no decoding) and the dataset."""
    ds = shards.load_split(split)
    column = ds.data.column("input_ids")
    return np.asarray(pc.list_value_length(column).to_numpy(zero_copy_only=False), dtype=np.int64), ds


def histogram(lens: np.ndarray, seq_length: int, bins: int) -> list[dict[str, Any]]:
    edges = np.linspace(0, seq_length, bins + 1).round().astype(int)
    counts, _ = np.histogram(lens, bins=edges)
    return [
        {"from": int(a) + (i > 0), "to": int(b), "examples": int(c)}
        for i, (a, b, c) in enumerate(zip(edges[:-1], edges[1:], counts, strict=True))
    ]


def run(args: argparse.Namespace) -> int:
    shards = ShardDir.open(args.dir)
    manifest = shards.read_manifest()
    if args.verify:
        verify(shards, manifest)
    else:
        shards.verify(manifest, hashes=False)  # sizes: a truncated file is named, not a pyarrow traceback
    seq = int(manifest["seq_length"])
    report: dict[str, Any] = {}
    loaded = {}
    for split in SPLITS:
        lens, ds = load_lengths(shards, split)
        loaded[split] = ds
        report[split] = {
            "examples": int(len(lens)),
            "fill_ratio": float(lens.sum() / (len(lens) * seq)) if len(lens) else 0.0,
            "mean_length": float(lens.mean()) if len(lens) else 0.0,
            "histogram": histogram(lens, seq, args.bins),
        }
    if args.json:
        print(json.dumps({"manifest": manifest, "splits": report}, ensure_ascii=False, indent=2))
        return 0
    _print_manifest(manifest)
    for split, rep in report.items():
        print(
            f"\n{split}: {rep['examples']:,} examples, fill {rep['fill_ratio']:.1%} of {seq} "
            f"(mean length {rep['mean_length']:.1f})"
        )
        top = max((b["examples"] for b in rep["histogram"]), default=0) or 1
        for b in rep["histogram"]:
            bar = "#" * round(BAR_WIDTH * b["examples"] / top)
            print(f"  {b['from']:>5}-{b['to']:<5} {b['examples']:>9,} {bar}")
    _print_examples(shards, loaded["train"], args.examples)
    return 0


def verify(shards: ShardDir, manifest: dict[str, Any]) -> None:
    """Every file against its sha256, the tokenizer's special ids, every id inside the vocab (UserError)."""
    files = shards.verify(manifest, hashes=True)
    if not files:
        raise UserError(f"{shards.manifest_file} records no checksums (made by an older prepare): re-run it")
    vocab_size = len(shards.load_tokenizer(manifest))
    rows = shards.check_ids(vocab_size)
    print(f"verified: {files} files match their sha256, {rows:,} rows hold only ids below {vocab_size:,}")


def _print_manifest(m: dict[str, Any]) -> None:
    print(f"tokenizer: {m['tokenizer']} (vocab {m['vocab_size']:,}, sha256 {m['vocab_sha256'][:16]}...)")
    print(f"seq_length: {m['seq_length']}, dtype: {m['dtype']}, special ids: {m['special_ids']}")
    print(f"options: {m['options']}" + (f", part {m['part']}" if m.get("part") else ""))
    inp = m["input"]
    print(f"input: {inp['files']:,} files, {inp['bytes']:,} bytes, {inp['chars']:,} characters")
    for split, c in m["counts"].items():
        print(f"{split}: " + ", ".join(f"{k} {v:,}" for k, v in c.items()))
    print(repairs_line(m["repairs"]))


def _print_examples(shards: ShardDir, ds: Any, n: int) -> None:
    if not n or not len(ds):
        return
    tok = shards.load_tokenizer()
    for i in np.linspace(0, len(ds) - 1, min(n, len(ds))).round().astype(int).tolist():
        row = ds[i]
        text = readable(tok, row["input_ids"])
        print(
            f"\nexample {i} ({len(row['input_ids'])} ids, {len(row['sentence_ends'])} sentences, "
            f"{len(row['doc_ends'])} documents):\n{text[:400]}{'...' if len(text) > 400 else ''}"
        )
