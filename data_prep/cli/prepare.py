"""``prepare``: tokenize and pack a corpus into a shard directory (``data_prep.shards.ShardDir``).

The inputs are cut into units (a file, or a byte range of a big uncompressed file); worker processes turn
each unit into its own Arrow files, and the dataset is those files in unit order. A killed run leaves
finished units in place: ``--resume`` does the rest, with the same bytes as an uninterrupted run.
``--part I/N`` does the units of a contiguous share of the files, for ``data_prep merge``.
"""

from __future__ import annotations

import argparse
import errno
import math
import os
import shutil
import tempfile
from pathlib import Path

from data_prep.cli import add_input_argument
from data_prep.errors import UserError
from data_prep.formats import FORMATS
from data_prep.inputs import expand_inputs, input_size
from data_prep.job import Job, Part, run_job
from data_prep.lock import contents
from data_prep.manifest import print_summary
from data_prep.shards import SPLITS, ShardDir
from data_prep.tokenizer import load_tokenizer
from data_prep.units import SEGMENTERS, segmenter_version
from data_prep.workers import Workers, start_workers


def configure(parser: argparse.ArgumentParser) -> None:
    add_input_argument(parser)
    parser.add_argument(
        "--tokenizer",
        required=True,
        metavar="NAME_OR_DIR",
        help="a directory with vocab.txt (or tokenizer files), a vocab.txt file, or a hub name",
    )
    parser.add_argument("--output", required=True, type=Path, metavar="DIR", help="empty or new directory")
    parser.add_argument("--seq-length", type=int, default=512, help="ids per example, [CLS]/[SEP] included")
    parser.add_argument(
        "--workers",
        default="auto",
        help="worker processes; auto: the usable CPU cores, at most one per unit of input (--unit-mb)",
    )
    parser.add_argument(
        "--valid-ratio",
        type=float,
        default=0.01,
        help="share of documents held out for validation (by a hash of their first line)",
    )
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="clue",
        help="clue: a line per sentence, blank line between documents; lines: a document "
        "per line; jsonl: a JSON object per line",
    )
    parser.add_argument("--text-field", default="text", help="the JSON field holding the text (jsonl)")
    parser.add_argument("--part", metavar="I/N", help="only the I-th of N shares of the input files")
    parser.add_argument("--resume", action="store_true", help="finish an interrupted run in DIR")
    parser.add_argument(
        "--long-line",
        type=int,
        default=128,
        metavar="TOKENS",
        help="lines with more tokens are split into sentences after 。！？；!?",
    )
    parser.add_argument(
        "--split-room",
        type=int,
        default=32,
        metavar="TOKENS",
        help="a sentence that does not fit in an example is split when at least this many ids "
        "are left (packs fuller); else it starts the next example",
    )
    parser.add_argument(
        "--unit-mb",
        type=float,
        default=16.0,
        help="uncompressed files bigger than this are cut into units of about this size",
    )
    parser.add_argument(
        "--segment",
        choices=("none", *SEGMENTERS),
        default="none",
        help="store Chinese word boundaries from this segmenter with the shards (column word_continues) "
        "for whole-word noise; jieba is what UER-py uses, rjieba the same in Rust (prep ~10x faster)",
    )
    parser.add_argument(
        "--layout",
        choices=("packed", "uer"),
        default="packed",
        help="packed: several documents per example (~98%% real tokens); uer: one document per example, "
        "as UER-py's BartDataset (a long one continues in the next examples), ~41%% real tokens",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def parse_part(text: str | None) -> Part | None:
    if text is None:
        return None
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise UserError(f"--part must look like I/N (e.g. 2/8), not {text!r}") from None
    if not 1 <= i <= n:
        raise UserError(f"--part {text}: I must be between 1 and N")
    return Part(i, n)


def _check_args(args: argparse.Namespace) -> None:
    if not 8 <= args.seq_length <= 65535:
        raise UserError("--seq-length must be between 8 and 65535")
    if args.workers != "auto" and not (args.workers.isdigit() and int(args.workers) >= 1):
        raise UserError(f"--workers must be auto or a number of at least 1, not {args.workers!r}")
    if not 0 <= args.valid_ratio < 1:
        raise UserError("--valid-ratio must be in [0, 1)")
    if args.long_line < 1:
        raise UserError("--long-line must be at least 1")
    if args.split_room < 1:
        raise UserError("--split-room must be at least 1")
    if not 0 < args.unit_mb < math.inf:
        raise UserError(f"--unit-mb must be a positive finite number, not {args.unit_mb}")


def _check_output(shards: ShardDir, resume: bool) -> bool:
    """True when the output holds a finished run (with --resume); a user error when it cannot be used.
    Called with the output's lock held (its lock file is no content)."""
    out = shards.root
    if _only_a_skeleton(shards):
        for path in contents(out):  # killed before its plan was written: nothing in it to keep
            shutil.rmtree(path)
    if contents(out):
        if not resume:
            raise UserError(f"output directory {out} is not empty (--resume finishes an interrupted run)")
        if shards.manifest_file.is_file():
            return True
        if not shards.plan_file.is_file():
            raise UserError(f"--resume: {out} holds no interrupted `prepare` run")
    return False


def worker_count(requested: str, sizes: list[int], unit_mb: float) -> int:
    """``--workers``: a number, or ``auto``: the usable cores, but no more than the input has units
    (a small corpus is done by the main process alone, without starting any)."""
    if requested != "auto":
        return int(requested)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    units = sum(max(1, math.ceil(size / (unit_mb * 2**20))) for size in sizes)
    return max(1, min(cores, units))


def _only_a_skeleton(shards: ShardDir) -> bool:
    """The empty directories ``prepare`` creates before it writes its plan, and nothing else."""
    names = {p.name for p in contents(shards.root)}
    if not names or not names <= {shards.work_dir.name, *SPLITS} or shards.plan_file.exists():
        return False
    return not any(p.is_file() and not p.name.startswith(".") for p in shards.root.rglob("*"))


def run(args: argparse.Namespace) -> int:
    _check_args(args)
    part = parse_part(args.part)
    files = expand_inputs(args.input)
    try:
        sizes = [input_size(f) for f in files]
    except OSError as exc:
        raise UserError(f"cannot read input: {exc}") from None
    shards = ShardDir(args.output)
    with shards.lock():  # one job per output, from its first check to its last write
        complete = _check_output(shards, args.resume)
        args.workers = 1 if complete else worker_count(args.workers, sizes, args.unit_mb)
        with start_workers(args.workers) as workers:
            return _prepare(args, shards, part, files, sizes, complete, workers)


def _prepare(
    args: argparse.Namespace,
    shards: ShardDir,
    part: Part | None,
    files: list[Path],
    sizes: list[int],
    complete: bool,
    workers: Workers | None,
) -> int:
    out = shards.root
    with tempfile.TemporaryDirectory() as scratch:
        tok = load_tokenizer(args.tokenizer, Path(scratch))
    options = {
        "format": args.format,
        "text_field": args.text_field,
        "valid_ratio": args.valid_ratio,
        "long_line": args.long_line,
        "split_room": args.split_room,
        "unit_bytes": int(args.unit_mb * 2**20),
    }
    # only when not the default, so that the plan of a default run is the one it had before these options
    if args.segment != "none":
        options["segment"] = segmenter_version(args.segment)
    if args.layout != "packed":
        options["layout"] = args.layout
    job = Job(args.tokenizer, part, files, sizes, tok, args.seq_length, options)
    if complete:
        done = shards.read_manifest()
        if {"plan_sha256": done.get("plan_sha256"), "part": done.get("part")} != job.plan:
            raise UserError(f"--resume: {out} holds a finished run of other inputs or options")
        if shards.work_dir.exists():  # killed between writing the manifest and cleaning up
            shards.remove_work_dir()
        print(f"{out} is already complete (manifest.json present); nothing to do")
        return 0
    try:
        shards.create()
    except OSError as exc:
        raise UserError(f"cannot create output directory {out}: {exc.strerror or exc}") from None
    try:
        manifest, fresh, seconds = run_job(job, shards, workers, args.quiet)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise UserError(
                f"disk full while writing {out}; free space, then run again with --resume"
            ) from None
        raise UserError(f"cannot write to {out}: {exc.strerror or exc}") from None
    print_summary(manifest, out, fresh, seconds, args.workers)
    return 0
