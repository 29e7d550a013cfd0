"""What ``DIR/manifest.json`` says: the counts kept while preparing, and how they are printed."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1
HEADER_KEYS = (
    "tokenizer",
    "vocab_sha256",
    "vocab_size",
    "seq_length",
    "special_ids",
    "dtype",
    "options",
    "plan_sha256",
    "part",
)  # the manifest's first keys, in this order


@dataclass
class SplitCounts:
    """What went into one split (train or valid)."""

    documents: int = 0
    sentences: int = 0  # after splitting over-long lines at terminal punctuation
    tokens: int = 0  # text tokens, without [CLS]/[SEP]
    ids: int = 0  # all ids in the rows, [CLS]/[SEP] included
    examples: int = 0
    sentences_split: int = 0  # sentences that went on in the next example (see data_prep.pack)

    def add(self, other: SplitCounts) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


@dataclass
class Repairs:
    """Every kind of input that was repaired or skipped (all counts)."""

    invalid_utf8_chars: int = 0  # undecodable bytes, replaced by U+FFFD
    control_chars: int = 0  # NUL and other C0/C1 controls (dropped by the tokenizer)
    binary_files_skipped: int = 0
    unreadable_files_skipped: int = 0  # e.g. a truncated .gz
    empty_files: int = 0
    missing_final_newline: int = 0
    long_lines_cut: int = 0  # lines without a newline for too long, cut to bound memory
    long_lines_split: int = 0  # over-long lines split at terminal punctuation into sentences
    long_sentences_split: int = 0  # sentences longer than an example, split across examples
    empty_documents: int = 0  # documents that gave no token
    bad_jsonl_lines: int = 0  # not JSON, or without the text field

    def add(self, other: Repairs) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


@dataclass
class UnitStats:
    """The result of one unit of work (a file or a byte range of one)."""

    chars: int = 0
    status: str = "ok"  # ok | binary | unreadable | empty
    train: SplitCounts = field(default_factory=SplitCounts)
    valid: SplitCounts = field(default_factory=SplitCounts)
    repairs: Repairs = field(default_factory=Repairs)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> UnitStats:
        return cls(
            d["chars"],
            d["status"],
            SplitCounts(**d["train"]),
            SplitCounts(**d["valid"]),
            Repairs(**d["repairs"]),
        )


def fill_stats(counts: SplitCounts, seq_length: int) -> dict[str, float]:
    """Real ids / (examples x seq_length), and the mean example length."""
    if not counts.examples:
        return {"fill_ratio": 0.0, "mean_length": 0.0}
    return {
        "fill_ratio": round(counts.ids / (counts.examples * seq_length), 6),
        "mean_length": round(counts.ids / counts.examples, 3),
    }


def build_manifest(
    header: dict[str, Any], sources: list[dict[str, Any]], totals: UnitStats, seq_length: int
) -> dict[str, Any]:
    """The manifest of a finished run: ``header`` (tokenizer, options, plan) plus counts and sources."""
    return {
        "format_version": FORMAT_VERSION,
        **{k: header[k] for k in HEADER_KEYS},
        "counts": {"train": asdict(totals.train), "valid": asdict(totals.valid)},
        "fill": {
            "train": fill_stats(totals.train, seq_length),
            "valid": fill_stats(totals.valid, seq_length),
        },
        "repairs": asdict(totals.repairs),
        "input": {"files": len(sources), "bytes": sum(s["bytes"] for s in sources), "chars": totals.chars},
        "sources": sources,
    }


def total(stats: list[UnitStats]) -> UnitStats:
    """The units' stats summed (the status of the sum is "ok")."""
    out = UnitStats()
    for s in stats:
        out.chars += s.chars
        out.train.add(s.train)
        out.valid.add(s.valid)
        out.repairs.add(s.repairs)
    return out


def repairs_line(repairs: dict[str, int]) -> str:
    """``"repairs/skips: invalid_utf8_chars=3, empty_files=1"`` (non-zero counts only), or ``... none``."""
    done = {k: v for k, v in repairs.items() if v}
    return "repairs/skips: " + (", ".join(f"{k}={v:,}" for k, v in done.items()) if done else "none")


def print_summary(
    manifest: dict[str, Any],
    out: Path,
    fresh: UnitStats | None = None,
    seconds: float = 0.0,
    workers: int = 1,
) -> None:
    """The end-of-job table: per split documents, sentences, tokens, examples, fill; then this run's rate."""
    rows = [("split", "documents", "sentences", "tokens", "examples", "fill", "mean len")]
    for split in ("train", "valid"):
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
        cells = zip(r, widths, strict=True)
        print("  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(cells)))
    inp = manifest["input"]
    print(f"input: {inp['files']:,} files, {inp['bytes']:,} bytes, {inp['chars']:,} chars")
    if fresh is not None and fresh.chars:
        tokens = fresh.train.tokens + fresh.valid.tokens
        rate = 1 / max(seconds, 1e-9) / 1e6
        print(
            f"this run: {fresh.chars:,} chars in {seconds:.1f}s = {fresh.chars * rate:.2f}M chars/s, "
            f"{tokens * rate:.2f}M tokens/s with {workers} worker(s)"
        )
    if any(manifest["repairs"].values()):
        print(repairs_line(manifest["repairs"]))
    print(f"output: {out}")
