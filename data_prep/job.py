"""A ``prepare`` job: which files, which options, which tokenizer; its units, run and finish.

The job is identified by ``plan_sha256`` (all input files with their sizes, the options that shape the
output, the tokenizer), written to ``.prep/plan.json`` first, so that ``--resume`` continues only the
same job. ``finish`` joins the units' Arrow files into the splits and writes the manifest last: a
directory with a manifest is complete. ``merge`` finishes the parts of a ``--part I/N`` job the same way.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_prep.atomic import atomic_dir, write_json
from data_prep.errors import UserError
from data_prep.manifest import UnitStats, build_manifest, total
from data_prep.plan_units import Unit, plan_file
from data_prep.shards import SPLITS, Layout, ShardDir, make_layout
from data_prep.tokenizer import LoadedTokenizer, build_table
from data_prep.units import UnitConfig
from data_prep.workers import Workers, process_units


@dataclass(frozen=True)
class Part:
    index: int  # 1-based
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def part_files(sizes: list[int], part: Part | None) -> list[int]:
    """Indices of the files of ``part``: contiguous shares of about equal bytes (all files without part)."""
    if part is None:
        return list(range(len(sizes)))
    size_sum = sum(sizes)
    chosen, before = [], 0
    for k, size in enumerate(sizes):
        middle = (before + size / 2) / size_sum if size_sum else (k + 0.5) / len(sizes)
        if min(int(middle * part.count), part.count - 1) == part.index - 1:
            chosen.append(k)
        before += size
    return chosen


@dataclass(frozen=True)
class Job:
    """What one ``prepare`` call does: the inputs, the options that shape the output, the tokenizer."""

    tokenizer_name: str
    part: Part | None
    files: list[Path]
    sizes: list[int]
    tok: LoadedTokenizer
    seq_length: int
    options: dict[str, Any]  # format, text_field, valid_ratio, long_line, split_room, unit_bytes

    @property
    def plan_sha256(self) -> str:
        """Identifies the job: all input files (not only a part's), options and tokenizer."""
        blob = json.dumps(
            {
                "files": [[_spelled(f), s] for f, s in zip(self.files, self.sizes, strict=True)],
                "options": {**self.options, "seq_length": self.seq_length},
                "vocab_sha256": self.tok.vocab_sha256,
                "tokenizer_sha256": self.tok.backend_sha256,
            },
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()

    @property
    def plan(self) -> dict[str, Any]:
        return {"plan_sha256": self.plan_sha256, "part": None if self.part is None else str(self.part)}


def part_note(files: int, part: Part, has_files: bool) -> str | None:
    """What to tell about a part that is empty, or may leave others empty: parts are whole files."""
    inputs = f"{files:,} input file{'' if files == 1 else 's'}"
    if not has_files:
        return (
            f"--part {part} gets none of the {inputs} (parts are whole files, shared by size): "
            "this part is empty; merge takes it, or use fewer parts"
        )
    if files < part.count:
        return f"{inputs} for {part.count} parts: parts are whole files, so some parts are empty"
    return None


def _spelled(path: Path) -> str:
    """A file by its absolute path, so that a resume does not depend on how it was spelled (an
    ``hf:NAME`` input, which is no file, stays as given)."""
    return str(path.resolve()) if path.exists() else str(path)


def check_plan(shards: ShardDir, plan: dict[str, Any]) -> None:
    """Record the job's plan, or refuse to continue a directory that was started with another one."""
    if shards.plan_file.is_file():
        old = json.loads(shards.plan_file.read_text(encoding="utf-8"))
        if old != plan:
            raise UserError(
                f"--resume: {shards.root} was started with other inputs or options "
                f"(part {old.get('part')}, plan {old.get('plan_sha256', '')[:12]})"
            )
    else:
        write_json(shards.plan_file, plan)


def run_job(
    job: Job, shards: ShardDir, workers: Workers | None, quiet: bool
) -> tuple[dict[str, Any], UnitStats, float]:
    """Process the job's pending units and finish the directory: the manifest, this run's stats, seconds."""
    tok, opts = job.tok, job.options
    check_plan(shards, job.plan)
    _save_tokenizer(tok, shards)
    segment = opts.get("segment")  # "NAME VERSION", only when prepare --segment is given
    layout = make_layout(tok.vocab_size, job.seq_length, word_continues=segment is not None)
    special = tok.special_ids()
    cfg = UnitConfig(
        job.seq_length,
        opts["format"],
        opts["text_field"],
        opts["valid_ratio"],
        opts["long_line"],
        opts["split_room"],
        special["[CLS]"],
        special["[SEP]"],
        tok.backend_json(),
        build_table(tok.hf.backend_tokenizer),
        layout,
        segment=segment.split()[0] if segment else None,
        one_document=opts.get("layout") == "uer",
    )
    mine = part_files(job.sizes, job.part)
    if job.part is not None and (note := part_note(len(job.files), job.part, bool(mine))):
        print(f"warning: {note}", file=sys.stderr)
    try:
        units = [u for k in mine for u in plan_file(k, job.files[k], opts["format"], opts["unit_bytes"])]
    except OSError as exc:
        raise UserError(f"cannot read input: {exc}") from None
    for problem in drop_bad_markers(units, shards):
        print(f"warning: {problem}: redoing that unit", file=sys.stderr)
    fresh, seconds = process_units(units, cfg, shards, workers, quiet)
    header = {
        "tokenizer": job.tokenizer_name,
        "vocab_sha256": tok.vocab_sha256,
        "vocab_size": tok.vocab_size,
        "seq_length": job.seq_length,
        "special_ids": special,
        "dtype": layout.id_dtype,
        "options": opts,
        **job.plan,
    }
    markers = [json.loads(shards.marker(u.name).read_text(encoding="utf-8")) for u in units]
    status = {
        u.file_index: m["stats"]["status"] for u, m in zip(units, markers, strict=True) if u.range_index == 0
    }
    sources = [{"path": str(job.files[k]), "bytes": job.sizes[k], "status": status[k]} for k in mine]
    stats = [UnitStats.from_dict(m["stats"]) for m in markers]
    manifest = finish(shards, header, layout, [m["files"] for m in markers], stats, sources)
    return manifest, fresh, seconds


def drop_bad_markers(units: list[Unit], shards: ShardDir) -> list[str]:
    """Delete the markers a resume cannot trust (garbled, or naming an Arrow file that is gone), so that
    their units are done again; one line per marker dropped."""
    problems = []
    for unit in units:
        path = shards.marker(unit.name)
        if not path.is_file():
            continue
        try:
            marker = json.loads(path.read_text(encoding="utf-8"))
            UnitStats.from_dict(marker["stats"])
            for split, name in marker["files"].items():
                if name is None:
                    continue
                file = shards.unit_file(split, Path(name).stem)
                if split not in SPLITS or file.name != name:
                    raise ValueError(f"names {split}/{name}")
                if not file.is_file():
                    raise ValueError(f"its file {file} is missing")
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            problems.append(f"the marker of unit {unit.name} is unusable ({str(exc) or type(exc).__name__})")
            path.unlink(missing_ok=True)
    return problems


def _save_tokenizer(tok: LoadedTokenizer, shards: ShardDir) -> None:
    with atomic_dir(shards.tokenizer_dir) as tmp:
        tok.save(tmp)


def finish(
    shards: ShardDir,
    header: dict[str, Any],
    layout: Layout,
    unit_files: list[dict[str, str | None]],
    stats: list[UnitStats],
    sources: list[dict[str, Any]],
) -> dict[str, Any]:
    """Join the units' files into DIR/train and DIR/valid, then write the manifest (last) and clean up."""
    for split in SPLITS:
        shards.finish_split(split, [f[split] for f in unit_files if f.get(split)], layout)
    manifest = {
        **build_manifest(header, sources, total(stats), header["seq_length"]),
        "files": shards.digests(),
    }
    write_json(shards.manifest_file, manifest)
    shards.remove_work_dir()
    return manifest
