"""One unit of work: read -> tokenize -> split into documents and sentences -> pack -> Arrow files.

A unit's output depends on the unit alone, so any number of worker processes, any order and any
restart give the same bytes. A unit is done when its marker (``ShardDir.marker``) exists; the marker
is written (atomically) after its Arrow files were renamed into place.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import logging
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_prep.atomic import write_json
from data_prep.errors import UserError
from data_prep.formats import file_status
from data_prep.manifest import SplitCounts, UnitStats
from data_prep.pack import Packer
from data_prep.plan_units import Unit
from data_prep.read import UnreadableInput, clue_blocks
from data_prep.shards import SPLITS, Layout, ShardDir, UnitWriter
from data_prep.tokenizer import Encoded, FastTokenizer

TERMINAL = "。！？；!?"
CLOSERS = "”’」』）)》】\"'"
_CUT_WINDOW = 4096
Progress = Callable[[int, int, int], None]  # (input bytes, chars, tokens) since the last call
SEGMENTERS = ("jieba", "rjieba")  # prepare --segment (pip extras: segment, segment-fast)


@dataclass(frozen=True)
class UnitConfig:
    """Everything a worker needs besides the unit (picklable, read once by each worker process)."""

    seq_length: int
    fmt: str
    text_field: str
    valid_ratio: float
    long_line: int  # lines with more tokens are split at terminal punctuation
    split_room: int  # a sentence that does not fit is split when at least this many ids are left
    cls_id: int
    sep_id: int
    backend_json: str
    table: np.ndarray
    layout: Layout
    segment: str | None = None  # a name of SEGMENTERS: store the word continuations of every row
    one_document: bool = False  # --layout uer: an example holds (a piece of) one document


def segmenter_version(name: str) -> str:
    """``"NAME VERSION"`` of an installed segmenter (recorded in the plan), or a UserError saying what to
    install."""
    try:
        importlib.import_module(name)
        return f"{name} {importlib.metadata.version(name)}"
    except ImportError:
        extra = "segment" if name == "jieba" else "segment-fast"
        raise UserError(
            f"--segment {name} needs the {name} package: pip install {name} "
            f"(or pip install 'bart-chinese-pretrain[{extra}]')"
        ) from None


def load_segmenter(name: str) -> Callable[[str], Iterable[str]]:
    """The segmenter's ``cut(text)``: words that concatenate to ``text`` (default mode, HMM on, as
    UER-py's ``--whole_word_masking`` calls jieba)."""
    if name == "jieba":
        import jieba

        jieba.setLogLevel(logging.WARNING)  # no "Building prefix dict" on stderr in every worker
        jieba.initialize()
        return jieba.cut
    if name == "rjieba":
        import rjieba

        return rjieba.cut
    raise ValueError(f"unknown segmenter {name!r}")


def _char_table(chars: str) -> np.ndarray:
    table = np.zeros(sys.maxunicode + 1, dtype=bool)
    table[[ord(c) for c in chars]] = True
    return table


def _space_table() -> np.ndarray:
    return _char_table("".join(chr(c) for c in range(0x3001) if chr(c).isspace()))


def _control_table() -> np.ndarray:
    table = np.zeros(sys.maxunicode + 1, dtype=bool)
    table[:32] = True
    table[127:160] = True
    table[[9, 10, 13]] = False
    return table


class UnitProcessor:
    """Turns units into Arrow files and stats; one per process."""

    def __init__(self, cfg: UnitConfig) -> None:
        self.cfg = cfg
        self.tok = FastTokenizer(cfg.backend_json, cfg.table)
        self.is_space = _space_table()
        self.is_control = _control_table()
        self.is_term = _char_table(TERMINAL)
        self.is_mark = self.is_term | _char_table(CLOSERS)
        self.cuttable = self.is_space | (cfg.table >= 0)
        self.cut = load_segmenter(cfg.segment) if cfg.segment else None
        if self.cut:
            vocab = self.tok.backend.get_vocab()
            self.is_piece = np.zeros(max(vocab.values(), default=0) + 1, dtype=bool)
            self.is_piece[[i for t, i in vocab.items() if t.startswith("##")]] = True

    def word_continues(self, text: str, enc: Encoded) -> np.ndarray:
        """Per token of ``enc`` (the encoding of ``text``): it continues a word, i.e. it is a ``##`` piece
        or starts inside a word of the segmenter (a later character of a Chinese word)."""
        lengths = np.fromiter(map(len, self.cut(text)), dtype=np.int64)
        if lengths.sum() != len(text):
            raise RuntimeError(f"{self.cfg.segment} lost characters of the text (a segmenter bug)")
        word_start = np.zeros(len(text), dtype=bool)
        word_start[np.cumsum(lengths) - lengths] = True
        token_char = np.repeat(np.arange(len(text)), np.diff(enc.before))  # where each token starts
        return ~word_start[token_char] | self.is_piece[enc.ids]

    def cut_line(self, text: str, limit: int) -> int:
        """Where to cut an over-long line: after its last space or CJK/punctuation char before ``limit``."""
        lo = max(limit - _CUT_WINDOW, 0)
        ok = np.flatnonzero(self.cuttable[self.tok.codepoints(text[lo:limit])])
        return lo + int(ok[-1]) + 1 if len(ok) else limit

    def run(self, unit: Unit, shards: ShardDir, progress: Progress | None = None) -> UnitStats:
        """Process one unit, then write its marker. ``progress(bytes, chars, tokens)`` is called per block;
        the bytes it reports add up to ``unit.size``."""
        stats = UnitStats()
        status = file_status(Path(unit.path))
        reported = [0]

        def report(nbytes: int, chars: int, tokens: int) -> None:
            reported[0] += nbytes
            if progress:
                progress(nbytes, chars, tokens)

        if status == "ok":
            writers = {s: UnitWriter(shards.unit_file(s, unit.name), self.cfg.layout) for s in SPLITS}
            try:
                self._pack_unit(unit, stats, writers, report)
                files = {s: w.close() for s, w in writers.items()}
            except UnreadableInput:
                for w in writers.values():
                    w.abort()
                stats = UnitStats()
                status, files = "unreadable", {}
            except BaseException:
                for w in writers.values():
                    w.abort()
                raise
        else:
            files = {}
        stats.status = status
        if unit.range_index == 0:
            field = {
                "binary": "binary_files_skipped",
                "unreadable": "unreadable_files_skipped",
                "empty": "empty_files",
            }.get(status)
            if field:
                setattr(stats.repairs, field, 1)
        write_json(shards.marker(unit.name), {"unit": unit.name, "files": files, "stats": stats.to_dict()})
        report(max(unit.size - reported[0], 0), 0, 0)
        return stats

    def _pack_unit(
        self, unit: Unit, stats: UnitStats, writers: dict[str, UnitWriter], report: Progress
    ) -> None:
        cfg = self.cfg
        packers = {
            s: Packer(
                cfg.seq_length,
                cfg.cls_id,
                cfg.sep_id,
                writers[s].add,
                getattr(stats, s),
                stats.repairs,
                None if cfg.one_document else cfg.split_room,
                one_document=cfg.one_document,
                word_continues=self.cut is not None,
            )
            for s in SPLITS
        }
        state = _DocState(unit, cfg.valid_ratio)
        for block, nbytes in clue_blocks(unit, cfg.text_field, stats.repairs, self.cut_line):
            tokens = self._block(block, state, packers, stats) if block else 0
            stats.chars += len(block)
            report(nbytes, len(block), tokens)
        state.end(packers, stats)
        for p in packers.values():
            p.flush()

    def _block(self, text: str, state: _DocState, packers: dict[str, Packer], stats: UnitStats) -> int:
        """Tokenize a block of whole lines and feed its documents' sentences to the packers; its tokens."""
        cps = self.tok.codepoints(text)
        enc = self.tok.encode(text, cps)
        cont = self.word_continues(text, enc) if self.cut else None
        stats.repairs.control_chars += int(np.count_nonzero(self.is_control[cps]))
        nl = np.flatnonzero(cps == 10)
        starts = np.r_[0, nl[:-1] + 1]
        nonspace = np.r_[0, np.cumsum(~self.is_space[cps])]
        blank = (nonspace[nl] - nonspace[starts]) == 0
        lo, hi = enc.before[starts], enc.before[nl]
        splits = self._sentence_splits(cps, enc.before, starts, nl, hi - lo)
        one_doc_per_line = state.unit.fmt == "lines"
        ids = enc.ids
        for i, (is_blank, a, b) in enumerate(zip(blank.tolist(), lo.tolist(), hi.tolist(), strict=True)):
            if is_blank:
                state.end(packers, stats)
                continue
            if not state.open:
                state.start(text[starts[i] : nl[i]])
            packer = packers[state.split]
            cuts = splits.get(i)
            if cuts:
                stats.repairs.long_lines_split += 1
                for x, y in zip([a, *cuts], [*cuts, b], strict=True):
                    packer.add_sentence(ids[x:y], None if cont is None else cont[x:y])
            else:
                packer.add_sentence(ids[a:b], None if cont is None else cont[a:b])
            state.tokens += b - a
            if one_doc_per_line:
                state.end(packers, stats)
        return len(ids)

    def _sentence_splits(
        self, cps: np.ndarray, before: np.ndarray, starts: np.ndarray, ends: np.ndarray, lengths: np.ndarray
    ) -> dict[int, list[int]]:
        """For each line longer than ``long_line`` tokens: token offsets after its terminal punctuation
        (a run of 。！？；!? and the closing quotes/brackets that follow it)."""
        long_lines = np.flatnonzero(lengths > self.cfg.long_line)
        if not len(long_lines):
            return {}
        terms = np.flatnonzero(self.is_term[cps])
        unmarked = np.flatnonzero(~self.is_mark[cps])
        out: dict[int, list[int]] = {}
        for i in long_lines.tolist():
            lo, hi = starts[i], ends[i]
            q = terms[np.searchsorted(terms, lo) : np.searchsorted(terms, hi)]
            if not len(q):
                continue
            after = unmarked[np.searchsorted(unmarked, q + 1)]
            cuts = np.unique(before[after])
            cuts = cuts[(cuts > before[lo]) & (cuts < before[hi])]
            if len(cuts):
                out[i] = cuts.tolist()
        return out


class _DocState:
    """The document being read: which split it goes to and how many tokens it had."""

    def __init__(self, unit: Unit, valid_ratio: float) -> None:
        self.unit = unit
        self.threshold = int(valid_ratio * (1 << 64))
        self.force_second = valid_ratio > 0 and unit.file_index == 0 and unit.range_index == 0
        self.index = 0
        self.open = False
        self.split = "train"
        self.tokens = 0

    def start(self, first_line: str) -> None:
        """Route a new document by a hash of its first line (so duplicates share a split); the second
        document of the first file always goes to valid, so even a tiny corpus has a validation split."""
        digest = hashlib.blake2b(first_line.encode("utf-8", "surrogatepass"), digest_size=8).digest()
        valid = int.from_bytes(digest, "big") < self.threshold or (self.force_second and self.index == 1)
        self.split = "valid" if valid else "train"
        self.open = True
        self.tokens = 0
        self.index += 1

    def end(self, packers: dict[str, Packer], stats: UnitStats) -> None:
        if not self.open:
            return
        self.open = False
        if self.tokens:
            packers[self.split].end_document()
            counts: SplitCounts = getattr(stats, self.split)
            counts.documents += 1
        else:
            stats.repairs.empty_documents += 1
