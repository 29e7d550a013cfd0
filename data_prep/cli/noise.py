"""``noise``: print noised examples from prepared shards, as the trainer's data loader makes them.

Example ``i`` of epoch ``e`` is corrupted exactly as the trainer corrupts it with the same seed, so
what this prints is what the model sees. ``--json`` prints one object per line: ``input_ids`` (the
encoder input after noise) and ``labels`` (the original example the decoder must reproduce).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from data_prep.errors import UserError
from data_prep.noise import PRESETS, Denoiser, NoiseConfig
from data_prep.shards import SPLITS, ShardDir


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
    parser.add_argument("--seed", type=int, default=7, help="noise seed (= train.seed)")
    parser.add_argument("--epoch", type=int, default=0, help="epoch whose corruption to show")
    parser.add_argument("--split", default="train", choices=SPLITS, help="split to show")
    parser.add_argument("--start", type=int, default=0, help="first example index")
    parser.add_argument("--limit", type=int, default=5, help="examples to print")
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
    if args.limit < 0 or args.start < 0 or args.epoch < 0:
        raise UserError("--limit, --start and --epoch must be >= 0")
    shards = ShardDir.open(args.dir)
    cfg = NoiseConfig.from_preset(args.preset, **parse_overrides(args.set))
    tok = shards.load_tokenizer()
    rows = shards.load_split(args.split)
    split_dir = shards.split_dir(args.split)
    if args.start > len(rows):
        raise UserError(f"--start {args.start} is past the end of {split_dir} ({len(rows)} examples)")
    denoiser = Denoiser.from_tokenizer(cfg, tok, seed=args.seed)
    stop = min(len(rows), args.start + args.limit)
    batch = rows.select_columns(list(shards.columns))[args.start : stop]
    for offset, (ids, sents, docs) in enumerate(
        zip(batch["input_ids"], batch["sentence_ends"], batch["doc_ends"], strict=True)
    ):
        index = args.start + offset
        src, tgt = denoiser(np.asarray(ids), sents, docs, epoch=args.epoch, index=index)
        if args.json:
            record = {"index": index, "epoch": args.epoch, "input_ids": src.tolist(), "labels": tgt.tolist()}
            print(json.dumps(record), flush=True)
        else:
            changed = int(len(src) != len(tgt) or (src != tgt).sum())
            print(f"── example {index} (epoch {args.epoch}, {len(tgt)} tokens → {len(src)} after noise) ──")
            print("source:", tok.decode(src.tolist()))
            print("target:", tok.decode(tgt.tolist()))
            if not changed:
                print("(unchanged)")
    if not args.json:
        print(f"{stop - args.start} examples from {split_dir}, preset {cfg.preset}", file=sys.stderr)
    return 0
