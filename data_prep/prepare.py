"""``prepare``: tokenize and pack a corpus into DIR/train, DIR/valid, DIR/tokenizer and DIR/manifest.json.

The inputs are cut into units (a file, or a byte range of a big uncompressed file); worker processes turn
each unit into its own Arrow files, and the dataset is those files in unit order. A killed run leaves
finished units in place: ``--resume`` does the rest, with the same bytes as an uninterrupted run.
``--part I/N`` does the units of a contiguous share of the files, for ``data_prep merge``.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import hashlib
import json
import multiprocessing
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from data_prep.errors import UserError
from data_prep.manifest import MANIFEST, UnitStats, build_manifest, read_manifest, write_json_atomic
from data_prep.read import FORMATS, Unit, expand_inputs, plan_file
from data_prep.shards import Layout, finish_split, make_layout, remove_temporaries
from data_prep.tokenize import LoadedTokenizer, build_table, load_tokenizer
from data_prep.units import (
    WORK_DIR,
    UnitConfig,
    UnitProcessor,
    init_worker,
    marker_path,
    run_unit,
    save_config,
    warm_up,
)

SPLITS = ("train", "valid")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--input",
        nargs="+",
        required=True,
        metavar="PATH",
        help="files, directories (recursive) and globs; .gz/.bz2/.xz are read transparently",
    )
    parser.add_argument(
        "--tokenizer",
        required=True,
        metavar="NAME_OR_DIR",
        help="a directory with vocab.txt (or tokenizer files), a vocab.txt file, or a hub name",
    )
    parser.add_argument("--output", required=True, type=Path, metavar="DIR", help="empty or new directory")
    parser.add_argument("--seq-length", type=int, default=512, help="ids per example, [CLS]/[SEP] included")
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
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
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


@dataclass(frozen=True)
class Part:
    index: int  # 1-based
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


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


def part_files(sizes: list[int], part: Part | None) -> list[int]:
    """Indices of the files of ``part``: contiguous shares of about equal bytes (all files without part)."""
    if part is None:
        return list(range(len(sizes)))
    total = sum(sizes)
    chosen, before = [], 0
    for k, size in enumerate(sizes):
        middle = (before + size / 2) / total if total else (k + 0.5) / len(sizes)
        if min(int(middle * part.count), part.count - 1) == part.index - 1:
            chosen.append(k)
        before += size
    return chosen


def _check_args(args: argparse.Namespace) -> None:
    if not 8 <= args.seq_length <= 65535:
        raise UserError("--seq-length must be between 8 and 65535")
    if args.workers < 1:
        raise UserError("--workers must be at least 1")
    if not 0 <= args.valid_ratio < 1:
        raise UserError("--valid-ratio must be in [0, 1)")
    if args.long_line < 1:
        raise UserError("--long-line must be at least 1")
    if args.split_room < 1:
        raise UserError("--split-room must be at least 1")
    if args.unit_mb <= 0:
        raise UserError("--unit-mb must be positive")


def _plan_sha(files: list[Path], sizes: list[int], options: dict[str, Any], tok: LoadedTokenizer) -> str:
    """Identifies a job: all input files (not only a part's), options and tokenizer."""
    blob = json.dumps(
        {
            "files": [[str(f), s] for f, s in zip(files, sizes, strict=True)],
            "options": options,
            "vocab_sha256": tok.vocab_sha256,
            "tokenizer_sha256": tok.backend_sha256,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def _check_output(out: Path, resume: bool) -> bool:
    """True when ``out`` already holds a finished run (with --resume); a user error when it cannot be used."""
    if out.exists() and not out.is_dir():
        raise UserError(f"output {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not resume:
            raise UserError(f"output directory {out} is not empty (--resume finishes an interrupted run)")
        if (out / MANIFEST).is_file():
            return True
        if not (out / WORK_DIR / "plan.json").is_file():
            raise UserError(f"--resume: {out} holds no interrupted `prepare` run")
    return False


def _create_output(out: Path) -> None:
    try:
        for sub in (WORK_DIR + "/units", *SPLITS):
            (out / sub).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create output directory {out}: {exc.strerror or exc}") from None


def _check_plan(out: Path, plan: dict[str, Any]) -> None:
    path = out / WORK_DIR / "plan.json"
    if path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        if old != plan:
            raise UserError(
                f"--resume: {out} was started with other inputs or options "
                f"(part {old.get('part')}, plan {old.get('plan_sha256', '')[:12]})"
            )
    else:
        write_json_atomic(path, plan)


@dataclass(frozen=True)
class Job:
    """What one `prepare` call does: the inputs, the options that shape the output, the tokenizer."""

    args: argparse.Namespace
    part: Part | None
    files: list[Path]
    sizes: list[int]
    tok: LoadedTokenizer
    options: dict[str, Any]
    plan_sha256: str

    @property
    def plan(self) -> dict[str, Any]:
        return {"plan_sha256": self.plan_sha256, "part": None if self.part is None else str(self.part)}


def run(args: argparse.Namespace) -> int:
    _check_args(args)
    part = parse_part(args.part)
    files = expand_inputs(args.input)
    try:
        sizes = [f.stat().st_size for f in files]
    except OSError as exc:
        raise UserError(f"cannot read input: {exc}") from None
    out: Path = args.output
    complete = _check_output(out, args.resume)
    with start_workers(1 if complete else args.workers) as workers:
        return _prepare(args, part, files, sizes, complete, workers)


def _prepare(
    args: argparse.Namespace,
    part: Part | None,
    files: list[Path],
    sizes: list[int],
    complete: bool,
    workers: Workers | None,
) -> int:
    out: Path = args.output
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
    plan_sha = _plan_sha(files, sizes, {**options, "seq_length": args.seq_length}, tok)
    job = Job(args, part, files, sizes, tok, options, plan_sha)
    if complete:
        done = read_manifest(out)
        if {"plan_sha256": done.get("plan_sha256"), "part": done.get("part")} != job.plan:
            raise UserError(f"--resume: {out} holds a finished run of other inputs or options")
        print(f"{out} is already complete (manifest.json present); nothing to do")
        return 0
    _create_output(out)
    try:
        manifest, fresh, seconds = _run(job, out, workers)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise UserError(
                f"disk full while writing {out}; free space, then run again with --resume"
            ) from None
        raise UserError(f"cannot write to {out}: {exc.strerror or exc}") from None
    print_summary(manifest, fresh, seconds, args.workers, out)
    return 0


def _run(job: Job, out: Path, workers: Workers | None) -> tuple[dict[str, Any], UnitStats, float]:
    args, tok = job.args, job.tok
    _check_plan(out, job.plan)
    _save_tokenizer(tok, out)
    layout = make_layout(tok.vocab_size, args.seq_length)
    special = tok.special_ids()
    cfg = UnitConfig(
        args.seq_length,
        args.format,
        args.text_field,
        args.valid_ratio,
        args.long_line,
        args.split_room,
        special["[CLS]"],
        special["[SEP]"],
        tok.backend_json(),
        build_table(tok.hf.backend_tokenizer),
        layout,
    )
    mine = part_files(job.sizes, job.part)
    try:
        units = [u for k in mine for u in plan_file(k, job.files[k], args.format, job.options["unit_bytes"])]
    except OSError as exc:
        raise UserError(f"cannot read input: {exc}") from None
    fresh, seconds = _process(units, cfg, out, workers, args.quiet)
    header = {
        "tokenizer": args.tokenizer,
        "vocab_sha256": tok.vocab_sha256,
        "vocab_size": tok.vocab_size,
        "seq_length": args.seq_length,
        "special_ids": special,
        "dtype": layout.id_dtype,
        "options": job.options,
        **job.plan,
    }
    markers = [json.loads(marker_path(out, u).read_text(encoding="utf-8")) for u in units]
    sources = _sources(units, markers, job.files, job.sizes, mine)
    manifest = finish(
        out,
        header,
        layout,
        [m["files"] for m in markers],
        [UnitStats.from_dict(m["stats"]) for m in markers],
        sources,
    )
    return manifest, fresh, seconds


def _save_tokenizer(tok: LoadedTokenizer, out: Path) -> None:
    tmp = out / WORK_DIR / "tokenizer"
    shutil.rmtree(tmp, ignore_errors=True)
    tok.save(tmp)
    shutil.rmtree(out / "tokenizer", ignore_errors=True)
    tmp.rename(out / "tokenizer")


def _sources(
    units: list[Unit], markers: list[dict], files: list[Path], sizes: list[int], mine: list[int]
) -> list[dict[str, Any]]:
    status = {
        u.file_index: m["stats"]["status"] for u, m in zip(units, markers, strict=True) if u.range_index == 0
    }
    return [{"path": str(files[k]), "bytes": sizes[k], "status": status[k]} for k in mine]


class _Bar:
    """tqdm over input bytes, with chars/s and tokens/s, fed by per-block progress."""

    def __init__(self, total: int, initial: int, quiet: bool) -> None:
        self.bar = tqdm(
            total=total,
            initial=initial,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc="prepare",
            disable=quiet,
            file=sys.stderr,
        )
        self.started = time.perf_counter()
        self.seen = [0, 0, 0]  # bytes, chars, tokens

    def add(self, nbytes: int, chars: int, tokens: int) -> None:
        self.seen = [self.seen[0] + nbytes, self.seen[1] + chars, self.seen[2] + tokens]
        self.bar.update(nbytes)
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        self.bar.set_postfix_str(
            f"{self.seen[1] / elapsed / 1e6:.2f}M chars/s, {self.seen[2] / elapsed / 1e6:.2f}M tokens/s",
            refresh=False,
        )

    def sync(self, counters: Any) -> None:
        """Catch up with the shared (bytes, chars, tokens) counters of the worker processes."""
        with counters.get_lock():
            now = list(counters)
        self.add(*(a - b for a, b in zip(now, self.seen, strict=True)))


@dataclass(frozen=True)
class Workers:
    """The worker processes, and the shared (bytes, chars, tokens) counters they report progress in."""

    pool: ProcessPoolExecutor
    counters: Any


@contextlib.contextmanager
def start_workers(count: int) -> Iterator[Workers | None]:
    """``count`` spawned worker processes (None for one: the main process does the work).

    Started before the tokenizer is loaded, so that their start-up (imports) overlaps it. A worker that
    dies (killed, out of memory) fails the run instead of hanging it; what was finished is kept.
    """
    if count == 1:
        yield None
        return
    ctx = multiprocessing.get_context("spawn")
    counters = ctx.Array("q", 3)
    pool = ProcessPoolExecutor(count, ctx, initializer=init_worker, initargs=(counters,))
    try:
        for _ in range(count):
            pool.submit(warm_up)  # spawns the processes now (they are started on demand)
        yield Workers(pool, counters)
    except BrokenProcessPool:
        raise UserError(
            "a worker process died (killed, or out of memory?); run the same command with --resume "
            "to finish (fewer --workers need less memory)"
        ) from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _process(
    units: list[Unit], cfg: UnitConfig, out: Path, workers: Workers | None, quiet: bool
) -> tuple[UnitStats, float]:
    """Run the units that have no marker yet; their summed stats and the seconds taken."""
    pending = [u for u in units if not marker_path(out, u).is_file()]
    fresh = UnitStats()
    total = sum(u.size for u in units)
    bar = _Bar(total, total - sum(u.size for u in pending), quiet)

    def done(unit: Unit, stats: UnitStats) -> None:
        fresh.chars += stats.chars
        fresh.train.add(stats.train)
        fresh.valid.add(stats.valid)
        if stats.status != "ok" and unit.range_index == 0:
            bar.bar.write(f"warning: skipped {stats.status} file {unit.path}", file=sys.stderr)

    with bar.bar:
        if workers is None or len(pending) <= 1:
            processor = UnitProcessor(cfg)
            for unit in pending:
                done(unit, processor.run(unit, out, bar.add))
        else:
            save_config(cfg, out)
            pending.sort(key=lambda u: -u.size)  # big units first: better balance; output order is fixed
            running = {workers.pool.submit(run_unit, (u, str(out))) for u in pending}
            while running:
                finished, running = wait(running, timeout=0.5, return_when=FIRST_COMPLETED)
                for future in finished:
                    done(*future.result())
                bar.sync(workers.counters)
    return fresh, time.perf_counter() - bar.started


def finish(
    out: Path,
    header: dict[str, Any],
    layout: Layout,
    unit_files: list[dict[str, str | None]],
    stats: list[UnitStats],
    sources: list[dict[str, Any]],
) -> dict[str, Any]:
    """Join the units' files into DIR/train and DIR/valid, then write the manifest (last) and clean up."""
    for split in SPLITS:
        remove_temporaries(out / split)
        finish_split(out / split, [f[split] for f in unit_files if f.get(split)], layout)
    totals = UnitStats()
    for s in stats:
        totals.chars += s.chars
        totals.train.add(s.train)
        totals.valid.add(s.valid)
        totals.repairs.add(s.repairs)
    manifest = build_manifest(header, sources, totals, header["seq_length"])
    write_json_atomic(out / MANIFEST, manifest)
    shutil.rmtree(out / WORK_DIR, ignore_errors=True)
    return manifest


def print_summary(
    manifest: dict[str, Any], fresh: UnitStats, seconds: float, workers: int, out: Path
) -> None:
    rows = [("split", "documents", "sentences", "tokens", "examples", "fill", "mean len")]
    for split in SPLITS:
        c, f = manifest["counts"][split], manifest["fill"][split]
        rows.append(
            (
                split,
                f"{c['documents']:,}",
                f"{c['sentences']:,}",
                f"{c['tokens']:,}",
                f"{c['examples']:,}",
                f"{f['fill_ratio']:.1%}",
                f"{f['mean_length']:.1f}",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print(
            "  ".join(
                cell.rjust(w) if i else cell.ljust(w)
                for i, (cell, w) in enumerate(zip(r, widths, strict=True))
            )
        )
    tokens = fresh.train.tokens + fresh.valid.tokens
    inp = manifest["input"]
    print(f"input: {inp['files']:,} files, {inp['bytes']:,} bytes, {inp['chars']:,} chars")
    if fresh.chars:
        rate = 1 / max(seconds, 1e-9) / 1e6
        print(
            f"this run: {fresh.chars:,} chars in {seconds:.1f}s = {fresh.chars * rate:.2f}M chars/s, "
            f"{tokens * rate:.2f}M tokens/s with {workers} worker(s)"
        )
    repairs = {k: v for k, v in manifest["repairs"].items() if v}
    if repairs:
        print("repairs/skips: " + ", ".join(f"{k}={v:,}" for k, v in repairs.items()))
    print(f"output: {out}")
