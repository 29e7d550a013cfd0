"""Benchmark the vectorized noise (``data_prep.noise.Denoiser``) against a per-token pure-Python reference.

    python bench/bench_noise.py [--examples 2000] [--reference-examples 300] [--repeat 3] [--batch-size 8]
                                [--cpu N]

Examples are 512-token rows of the CLUECorpusSmall sample (../shared/corpus) prepared with the BERT-Chinese
vocab (``data_prep prepare`` into a temp dir), or synthetic rows when those files are missing. Everything
runs on ONE core: the process is pinned to one CPU and the BLAS/OpenMP/torch thread pools are set to 1;
rates are examples per CPU second of this process (``time.process_time``), the best of ``--repeat`` passes.
Each row of the table is a preset with every one of its features on (permutation, span masking, random /
kept spans, collapsing or whole words); the ``+all`` rows add rotation, insertion and whole words. The
reference (``data_prep.noise.reference``) is the same algorithm written the straightforward way (loops over
tokens, Python ``random``); the mean output length and [MASK] share of both are printed to show they agree.
The vectorized noise is timed as the trainer runs it: ``Denoiser.batch`` on ``--batch-size`` rows per call
(``NoisedDataset.__getitems__`` gets one per-device micro-batch: 8 rows in the bart-* configs); one call
per row (``Denoiser.__call__``, as the preview and the eval set use it) is timed too.
Targets: >= 5,000 examples/s per core for the vectorized noise (batched), and >= 3x the reference.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy is imported
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(ROOT))

from prepared import prepare  # noqa: E402

from data_prep.noise import Denoiser, NoiseConfig, SpecialIds  # noqa: E402
from data_prep.noise.reference import Reference  # noqa: E402
from data_prep.shards import ShardDir  # noqa: E402

SEQ = 512
Row = tuple[np.ndarray, np.ndarray, np.ndarray]
CONFIGS: list[tuple[str, str, dict[str, Any]]] = [
    ("uer", "uer", {}),
    ("bart", "bart", {}),
    ("uer+all", "uer", {"whole_word": True, "rotate": 0.5, "insert_ratio": 0.05}),
    ("bart+all", "bart", {"rotate": 0.5, "insert_ratio": 0.05}),
]


def load_rows(corpus: Path, vocab: Path, tmp: Path) -> tuple[list[Row], Any, str]:
    """512-token rows of the prepared corpus and its tokenizer, or synthetic rows (tokenizer None)."""
    if corpus.is_file() and vocab.is_file():
        shards = ShardDir(
            prepare(corpus, vocab, tmp / "prepared", "--seq-length", str(SEQ), "--valid-ratio", "0")
        )
        ds = shards.load_split("train").with_format("numpy")
        rows = [(r["input_ids"], r["sentence_ends"], r["doc_ends"]) for r in ds]
        rows = [r for r in rows if len(r[0]) == SEQ]
        tok = shards.load_tokenizer()
        return rows, tok, f"{corpus.name} prepared with {vocab.name}"
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(600):  # [CLS] + 1-4 documents of ~25-token sentences, google vocab ids
        docs = sorted(rng.choice(np.arange(20, SEQ - 2), int(rng.integers(0, 4)), replace=False).tolist())
        doc_ends = [d for i, d in enumerate(docs) if not i or d - docs[i - 1] > 2] + [SEQ - 1]
        ids = rng.integers(104, 21128, size=SEQ)
        ids[0], ids[doc_ends] = 101, 102
        cuts = set(rng.choice(np.arange(2, SEQ - 1), 20, replace=False).tolist()) - {d + 1 for d in doc_ends}
        sentence_ends = sorted((cuts - set(doc_ends)) | set(doc_ends))
        rows.append(
            (ids.astype(np.uint16), np.array(sentence_ends, np.uint16), np.array(doc_ends, np.uint16))
        )
    return rows, None, "synthetic rows (../shared/corpus or the vocab missing)"


def build(tok: Any, preset: str, overrides: dict[str, Any]) -> tuple[Denoiser, Reference]:
    cfg = NoiseConfig.from_preset(preset, **overrides)
    if tok is not None:
        fast = Denoiser.from_tokenizer(cfg, tok, seed=1)
    else:
        special = SpecialIds(pad=0, unk=100, cls=101, sep=102, mask=103, vocab_size=21128)
        word_start = np.arange(21128) < 17000  # ids from 17000 play the ## pieces
        fast = Denoiser(cfg, special, seed=1, word_start=word_start)
    return fast, Reference.like(fast)


def rate(fn, rows: list[Row], count: int, repeat: int) -> tuple[float, list]:
    """Best examples per CPU second over ``repeat`` passes of ``count`` calls (rows cycled, a new epoch
    per pass). CPU time of this one-thread process: time other processes take the core does not count."""
    best, outs = 0.0, []
    for r in range(repeat):
        outs = []
        start = time.process_time()
        for i in range(count):
            ids, sents, docs = rows[i % len(rows)]
            outs.append(fn(ids, sents, docs, epoch=r, index=i))
        best = max(best, count / (time.process_time() - start))
    return best, outs


def rate_batched(fast: Denoiser, rows: list[Row], count: int, repeat: int, size: int) -> tuple[float, list]:
    """Like ``rate``, for ``fast.batch`` on ``size`` rows per call."""
    best, outs = 0.0, []
    for r in range(repeat):
        outs = []
        start = time.process_time()
        for i in range(0, count, size):
            indices = range(i, min(i + size, count))
            outs += fast.batch([rows[j % len(rows)] for j in indices], r, indices)
        best = max(best, count / (time.process_time() - start))
    return best, outs


def stats(outs: list, mask_id: int) -> tuple[float, float]:
    """Mean output length and share of [MASK] tokens."""
    lengths = [len(o) for o in outs]
    masks = sum(int(np.count_nonzero(np.asarray(o) == mask_id)) for o in outs)
    return float(np.mean(lengths)), masks / sum(lengths)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=SHARED / "corpus" / "cluecorpussmall_sample.txt")
    parser.add_argument("--vocab", type=Path, default=SHARED / "google_zh_vocab.txt")
    parser.add_argument("--examples", type=int, default=2000, help="calls per timed pass (vectorized)")
    parser.add_argument(
        "--reference-examples", type=int, default=300, help="calls per timed pass (reference)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="timed passes; the best is reported")
    parser.add_argument("--batch-size", type=int, default=8, help="rows per Denoiser.batch call")
    parser.add_argument("--cpu", type=int, default=None, help="CPU to pin to (default: the first allowed)")
    args = parser.parse_args()
    cpu = min(os.sched_getaffinity(0)) if args.cpu is None else args.cpu
    os.sched_setaffinity(0, {cpu})
    with tempfile.TemporaryDirectory() as tmp:
        rows, tok, source = load_rows(args.corpus, args.vocab, Path(tmp))
    import torch

    torch.set_num_threads(1)
    load = os.getloadavg()[0]
    print(f"data: {len(rows)} rows of {SEQ} ids from {source}")
    print(
        f"pinned to CPU {cpu} of {os.cpu_count()}, 1 thread; load average {load:.1f}; "
        f"best of {args.repeat} passes, per CPU second"
    )
    print(f"vectorized: batches of {args.batch_size} rows (Denoiser.batch), and one call per row")
    head = f"{'preset':<9} {'batched ex/s':>12} {'per call ex/s':>13} {'reference ex/s':>15} {'speed-up':>9}"
    print(f"{head}   {'mean src len vec/ref':>20} {'[MASK] share vec/ref':>21}")
    ok = True
    for name, preset, overrides in CONFIGS:
        fast, ref = build(tok, preset, overrides)
        rate_batched(fast, rows, 200, 1, args.batch_size)  # warm-up
        fast_rate, fast_out = rate_batched(fast, rows, args.examples, args.repeat, args.batch_size)
        rate(fast, rows, 200, 1)  # warm-up
        call_rate, _ = rate(fast, rows, args.examples, args.repeat)
        ref_rate, ref_out = rate(ref, rows, args.reference_examples, args.repeat)
        (fl, fm), (rl, rm) = (
            stats([o[0] for o in fast_out], fast.special.mask),
            stats(ref_out, fast.special.mask),
        )
        up = fast_rate / ref_rate
        ok &= fast_rate >= 5000 and up >= 3
        print(
            f"{name:<9} {fast_rate:>12,.0f} {call_rate:>13,.0f} {ref_rate:>15,.0f} {up:>8.1f}x   "
            f"{fl:>9.1f} / {rl:<8.1f} {fm:>10.3f} / {rm:<8.3f}"
        )
    print(f"targets, batched (>= 5,000 ex/s per core, >= 3x the reference): {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
