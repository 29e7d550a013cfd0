"""``noise``: print noised examples from prepared shards, as the trainer's data loader makes them.

Example ``i`` of epoch ``e`` is corrupted exactly as the trainer corrupts it with the same seed, so
what this prints is what the model sees. ``--json`` prints one object per line: ``input_ids`` (the
encoder input after noise) and ``labels`` (the original example the decoder must reproduce).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from data_prep.cli import int_at_least
from data_prep.errors import UserError
from data_prep.noise import PRESETS, Denoiser, NoiseConfig
from data_prep.noise.pipeline import KEEP, MASK, RANDOM, Trace
from data_prep.shards import OPTIONAL_COLUMNS, SPLITS, WORD_CONTINUES, ShardDir
from data_prep.tokenizer import readable


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", type=Path, metavar="DIR", help="a directory made by `data_prep prepare`")
    parser.add_argument("--preset", default="uer", choices=sorted(PRESETS), help="noise preset")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a noise parameter, e.g. --set mask_ratio=0.3 (repeatable)",
    )
    parser.add_argument("--seed", type=int_at_least(0), default=7, help="noise seed (= train.seed)")
    parser.add_argument("--epoch", type=int_at_least(0), default=0, help="epoch whose corruption to show")
    parser.add_argument("--split", default="train", choices=SPLITS, help="split to show")
    parser.add_argument("--start", type=int_at_least(0), default=0, help="first example index")
    parser.add_argument("--limit", type=int_at_least(0), default=5, help="examples to print")
    parser.add_argument("--json", action="store_true", help="one JSON object per line with integer lists")


def parse_overrides(items: list[str]) -> dict[str, str]:
    """``["mask_ratio=0.3", ...]`` -> ``{"mask_ratio": "0.3"}`` (typed later by ``NoiseConfig``)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set expects KEY=VALUE, got '{item}'")
        out[key.strip()] = value.strip()
    return out


def run(args: argparse.Namespace) -> int:
    shards = ShardDir.open(args.dir)
    cfg = NoiseConfig.from_preset(args.preset, **parse_overrides(args.set))
    tok = shards.load_tokenizer()
    rows = shards.load_split(args.split)
    split_dir = shards.split_dir(args.split)
    if args.start > len(rows):
        raise UserError(f"--start {args.start} is past the end of {split_dir} ({len(rows)} examples)")
    denoiser = Denoiser.from_tokenizer(cfg, tok, seed=args.seed)
    stop = min(len(rows), args.start + args.limit)
    optional = [c for c in OPTIONAL_COLUMNS if c in rows.column_names]
    batch = rows.select_columns([*shards.columns, *optional])[args.start : stop]
    continues = batch.get(WORD_CONTINUES, [None] * (stop - args.start))  # from prepare --segment
    for offset, (ids, sents, docs, conts) in enumerate(
        zip(batch["input_ids"], batch["sentence_ends"], batch["doc_ends"], continues, strict=True)
    ):
        index = args.start + offset
        trace = denoiser.trace(np.asarray(ids), sents, docs, conts, epoch=args.epoch, index=index)
        src, tgt = trace.src, trace.tgt
        if args.json:
            record = {"index": index, "epoch": args.epoch, "input_ids": src.tolist(), "labels": tgt.tolist()}
            print(json.dumps(record), flush=True)
            continue
        moved = float(np.mean(trace.order != np.arange(len(trace.order)))) if len(trace.order) else 0.0
        print(
            f"── example {index} (epoch {args.epoch}, {len(tgt)} tokens → {len(src)} after noise; "
            f"{moved:.0%} of the tokens moved by sentence permutation/rotation) ──"
        )
        print("target :", readable(tok, tgt))
        print("changes:", marked(tok, trace))
        print("source :", readable(tok, src))
    if not args.json:
        print(f"{stop - args.start} examples from {split_dir}, preset {cfg.preset}", file=sys.stderr)
        print(f"changes: {LEGEND}", file=sys.stderr)
    return 0


MARKS = {MASK: "⟦⟧", RANDOM: "⟪⟫", KEEP: "⟨⟩"}
LEGEND = "⟦masked⟧ ⟪replaced by random tokens⟫ ⟨chosen but kept⟩, on the target after sentences moved"


def marked(tok: Any, trace: Trace) -> str:
    """The target in its noised sentence order, each corrupted piece bracketed by what became of it.

    The text is decoded whole (a piece may start inside a word, with a ``##`` token), and the marks go
    where the decoded prefixes end."""
    ids = trace.tgt[trace.order]
    text = readable(tok, ids)
    out, pos = [], 0
    pieces = zip(trace.starts.tolist(), trace.ends.tolist(), trace.outcomes.tolist(), strict=True)
    for start, end, outcome in pieces:
        for token, mark, skip_space in ((start, MARKS[outcome][0], True), (end, MARKS[outcome][1], False)):
            at = max(pos, _offset(readable(tok, ids[:token]), text, skip_space))
            out += [text[pos:at], mark]
            pos = at
    return "".join([*out, text[pos:]])


def _offset(prefix: str, text: str, skip_space: bool) -> int:
    """Where ``prefix`` (the decoded first tokens) ends in ``text`` (all of them decoded)."""
    at = len(os.path.commonprefix([prefix, text]))
    while skip_space and at < len(text) and text[at] == " ":
        at += 1
    return at
