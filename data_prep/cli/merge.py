"""``merge``: join the directories made by ``prepare --part I/N`` (on N machines) into one dataset.

Each part holds the units of a contiguous share of the input files, so the parts' Arrow files in part
order are exactly the files a one-machine run writes; they are linked (or copied) into place and the
manifest is rebuilt from the parts' counts -- the result equals a one-machine run.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path
from typing import Any

from data_prep.atomic import atomic_dir
from data_prep.errors import UserError
from data_prep.job import finish
from data_prep.lock import contents
from data_prep.manifest import HEADER_KEYS, Repairs, SplitCounts, UnitStats, print_summary
from data_prep.shards import SPLITS, ShardDir, make_layout


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", required=True, type=Path, metavar="DIR", help="empty or new directory")
    parser.add_argument(
        "parts", nargs="+", type=Path, metavar="PART_DIR", help="the outputs of prepare --part I/N"
    )


def _check_parts(parts: list[Path]) -> list[tuple[ShardDir, dict[str, Any]]]:
    """The parts sorted by index, after checking that they are the N parts of one plan."""
    loaded = []
    for path in parts:
        m = ShardDir.open(path).read_manifest()
        if not m.get("part"):
            raise UserError(f"{path} was not made with --part I/N")
        index, count = (int(x) for x in m["part"].split("/"))
        loaded.append((index, count, path, m))
    loaded.sort(key=lambda t: t[0])
    first = loaded[0][3]
    for _index, count, path, m in loaded:
        if count != loaded[0][1] or m["plan_sha256"] != first["plan_sha256"]:
            raise UserError(f"{path} belongs to another job (other inputs, options, tokenizer or N)")
    indices = [t[0] for t in loaded]
    expected = list(range(1, loaded[0][1] + 1))
    if indices != expected:
        missing = sorted(set(expected) - set(indices))
        dup = sorted({i for i in indices if indices.count(i) > 1})
        raise UserError(f"parts missing: {missing}" if missing else f"parts given twice: {dup}")
    return [(ShardDir(path), m) for _i, _n, path, m in loaded]


def _place(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def run(args: argparse.Namespace) -> int:
    parts = _check_parts(args.parts)
    out = ShardDir(args.output)
    with out.lock():  # the output is built aside and moved onto the locked directory (and its lock)
        if contents(out.root):
            raise UserError(f"output {out.root} exists and is not an empty directory")
        return _merge(parts, out)


def _merge(parts: list[tuple[ShardDir, dict[str, Any]]], out: ShardDir) -> int:
    first = parts[0][1]
    header = {k: first[k] for k in HEADER_KEYS} | {"part": None}
    segmented = "segment" in first.get("options", {})
    layout = make_layout(first["vocab_size"], first["seq_length"], word_continues=segmented)
    for part, m in parts:  # a damaged part must not get fresh checksums in the merged manifest
        part.verify(m, hashes=True)
    try:
        with atomic_dir(out.root) as tmp:  # built aside: a failed merge leaves no half-built output
            work = ShardDir(tmp)
            manifest = finish(work, header, layout, *_join(parts, work))
    except OSError as exc:
        raise UserError(f"cannot merge into {out.root}: {exc.strerror or exc}") from None
    print_summary(manifest, out.root)
    return 0


def _join(
    parts: list[tuple[ShardDir, dict[str, Any]]], out: ShardDir
) -> tuple[list[dict[str, str | None]], list[UnitStats], list[dict[str, Any]]]:
    """Place every part's files in ``out`` (hard links where possible); their files, stats and sources."""
    unit_files: list[dict[str, str | None]] = []
    stats: list[UnitStats] = []
    sources: list[dict[str, Any]] = []
    for split in SPLITS:
        out.split_dir(split).mkdir(parents=True, exist_ok=True)
    shutil.copytree(parts[0][0].tokenizer_dir, out.tokenizer_dir)
    for part, m in parts:
        for split in SPLITS:
            for name in part.split_files(split):
                _place(part.split_dir(split) / name, out.split_dir(split) / name)
                unit_files.append({split: name})
        counts = m["counts"]
        stats.append(
            UnitStats(
                m["input"]["chars"],
                "ok",
                SplitCounts(**counts["train"]),
                SplitCounts(**counts["valid"]),
                Repairs(**m["repairs"]),
            )
        )
        sources += m["sources"]
    return unit_files, stats, sources
