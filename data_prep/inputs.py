"""Which inputs a run has: the files named by paths, directories and globs, and ``hf:`` datasets.

Apart from reading them: ``prepare`` and ``vocab`` find and size all their inputs once, up front, and
what a directory walk must leave out (FIFOs, dangling links, earlier outputs) is decided here alone.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from data_prep.errors import UserError, first_line

HF_PREFIX = "hf:"  # --input hf:NAME[:SPLIT]: a Hugging Face dataset (see hf_inputs)


def expand_inputs(patterns: list[str]) -> list[Path]:
    """Files named by paths, directories (recursively) and globs, in order, without duplicates.

    Inside a directory, what cannot be input is left out and counted in one warning per directory:
    unreadable subdirectories, FIFOs and other non-regular files, dangling links, and the output
    directories of ``prepare`` (finished or not) and ``vocab``, which a run whose output lies inside
    its input directory would otherwise read back as corpus text the next time.
    """
    files: list[Path] = []
    seen: set[Path] = set()
    for pattern in patterns:
        path = Path(pattern)
        if pattern.startswith(HF_PREFIX):
            found = hf_inputs(pattern)
        elif path.is_file():
            found = [path]
        elif path.is_dir():
            found = _walk(path)
        elif glob.has_magic(pattern):
            found = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
            if not found:
                raise UserError(f"no input file matches {pattern}")
        else:
            raise UserError(f"input path does not exist: {pattern}")
        for p in found:
            key = p.resolve()
            if key not in seen:
                seen.add(key)
                files.append(p)
    if not files:
        raise UserError(f"no input files in {' '.join(patterns)}")
    return files


# Files that make a directory the output of `prepare` (finished or not) or of `vocab`, never corpus.
_OUTPUT_MARKERS = ("manifest.json", ".prep", "tokenizer_config.json")
# What a directory walk skips: (singular, plural), in the order the warning lists them.
_UNREADABLE = ("unreadable directory", "unreadable directories")
_SPECIAL = ("FIFO, socket or device file", "FIFOs, sockets or device files")
_DANGLING = ("dangling link", "dangling links")
_OUTPUT = ("output directory of prepare or vocab", "output directories of prepare or vocab")


def _walk(root: Path) -> list[Path]:
    """The regular files under ``root`` (hidden ones left out), sorted; what is skipped is warned about."""
    skipped: Counter[tuple[str, str]] = Counter()
    unreadable: list[OSError] = []
    found = []
    for top, dirs, names in os.walk(root, onerror=unreadable.append):
        here = Path(top)
        keep = []
        for name in sorted(dirs):
            sub = here / name
            if name.startswith("."):
                continue
            if any(os.path.exists(sub / m) for m in _OUTPUT_MARKERS):
                skipped[_OUTPUT] += 1
            else:
                keep.append(name)
        dirs[:] = keep
        for name in names:
            if name.startswith("."):
                continue
            file = here / name
            if file.is_file():
                found.append(file)
            elif file.is_symlink() and not file.exists():
                skipped[_DANGLING] += 1
            elif not file.is_dir():  # a link to a directory is not followed, as for directories
                skipped[_SPECIAL] += 1
    skipped[_UNREADABLE] += len(unreadable)
    kinds = (_UNREADABLE, _SPECIAL, _DANGLING, _OUTPUT)
    if counts := [f"{n:,} {kind[n != 1]}" for kind in kinds if (n := skipped[kind])]:
        print(f"warning: under {root} skipped {', '.join(counts)}", file=sys.stderr)
    return sorted(found)


def hf_inputs(spec: str) -> list[Path]:
    """``hf:NAME[:SPLIT]`` (split ``train`` by default): a directory written by ``datasets``'
    ``save_to_disk`` gives its Arrow files; anything else ``datasets.load_dataset`` opens (a Hub name when
    online, a local directory of data files) is one input, streamed row by row when it is read."""
    name, _, split = spec[len(HF_PREFIX) :].partition(":")
    root = Path(name)
    if (root / "dataset_dict.json").is_file():  # a saved DatasetDict: one directory per split
        splits = json.loads((root / "dataset_dict.json").read_text(encoding="utf-8"))["splits"]
        if (split or "train") not in splits:
            raise UserError(f"{spec}: no split {split or 'train'!r} (it has {', '.join(splits)})")
        root = root / (split or "train")
    elif (root / "state.json").is_file() and split:
        raise UserError(f"{spec}: {root} is one saved split; name it without :{split}")
    if (root / "state.json").is_file():
        state = json.loads((root / "state.json").read_text(encoding="utf-8"))
        return [root / f["filename"] for f in state["_data_files"]]
    open_hf(spec)  # fails here, once, with one line (offline, unknown name or split)
    return [Path(spec)]


def open_hf(spec: str) -> Any:
    """The ``datasets`` streaming dataset of ``hf:NAME[:SPLIT]`` (nothing downloaded yet)."""
    import datasets

    name, _, split = spec[len(HF_PREFIX) :].partition(":")
    hub_log = logging.getLogger("huggingface_hub")  # offline, it logs every retry: the error says it once
    level = hub_log.level
    hub_log.setLevel(logging.ERROR)
    try:
        return datasets.load_dataset(name, split=split or "train", streaming=True)
    except (ConnectionError, FileNotFoundError, ValueError) as exc:
        raise UserError(f"cannot open {spec} with datasets: {first_line(exc)}") from None
    finally:
        hub_log.setLevel(level)


def is_hf(path: Path) -> bool:
    """A dataset that ``datasets`` streams (see ``hf_inputs``), not a file."""
    return str(path).startswith(HF_PREFIX)


def input_size(path: Path) -> int:
    """Bytes of an input file; 0 for a streamed dataset (its size is unknown until it is read)."""
    return 0 if is_hf(path) else path.stat().st_size
