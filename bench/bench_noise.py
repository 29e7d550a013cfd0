"""Benchmark the vectorized noise (``data_prep.noise.Denoiser``) against a per-token pure-Python reference.

    python bench/bench_noise.py [--examples 2000] [--reference-examples 300] [--repeat 3] [--batch-size 8]
                                [--cpu N]

Examples are 512-token rows of the CLUECorpusSmall sample (../shared/corpus) prepared with the BERT-Chinese
vocab (``data_prep prepare`` into a temp dir), or synthetic rows when those files are missing. Everything
runs on ONE core: the process is pinned to one CPU and the BLAS/OpenMP/torch thread pools are set to 1;
rates are examples per CPU second of this process (``time.process_time``), the best of ``--repeat`` passes.
Each row of the table is a preset with every one of its features on (permutation, span masking, random /
kept spans, collapsing or whole words); the ``+all`` rows add rotation, insertion and whole words. The
reference below is the same algorithm written the straightforward way (loops over tokens, Python
``random``); the mean output length and [MASK] share of both are printed to show they agree.
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
import bisect  # noqa: E402
import itertools  # noqa: E402
import math  # noqa: E402
import random  # noqa: E402
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

from data_prep.noise import KEEP, MASK, RANDOM, Denoiser, NoiseConfig, SpecialIds  # noqa: E402

SEQ = 512
Row = tuple[np.ndarray, np.ndarray, np.ndarray]
CONFIGS: list[tuple[str, str, dict[str, Any]]] = [
    ("uer", "uer", {}),
    ("bart", "bart", {}),
    ("uer+all", "uer", {"whole_word": True, "rotate": 0.5, "insert_ratio": 0.05}),
    ("bart+all", "bart", {"rotate": 0.5, "insert_ratio": 0.05}),
]


class Reference:
    """The noise of ``data_prep.noise`` (see its module docstring), one token at a time in pure Python."""

    def __init__(self, cfg: NoiseConfig, special: SpecialIds, seed: int, word_start: list[bool], random_ids):
        self.cfg, self.special, self.seed = cfg, special, seed
        self.fixed = {special.pad, special.cls, special.sep, special.mask}
        self.word_start = word_start
        self.random_ids = [int(i) for i in random_ids]
        self.cdf = list(itertools.accumulate(cfg.span_length_probs().tolist()))
        self.cdf[-1] = 1.0

    def draw(self, rng: random.Random) -> int:
        return bisect.bisect_right(self.cdf, rng.random())

    def __call__(self, input_ids, sentence_ends, doc_ends, *, epoch: int, index: int) -> list[int]:
        cfg, sp = self.cfg, self.special
        rng = random.Random((self.seed * 1_000_003 + epoch) * 1_000_003 + index)
        ids = [int(i) for i in input_ids]
        n = len(ids)
        docs = [int(d) for d in doc_ends]
        doc_set = set(docs)
        first = 1 if n and ids[0] == sp.cls else 0

        # 1. sentences per document, then ceil(p * n) of each document's sentences swap places
        by_doc: list[list[tuple[int, int]]] = [[] for _ in docs]
        start, d = first, 0
        for end in sentence_ends:
            end = int(end)
            by_doc[d].append((start, end))
            if end in doc_set:
                start, d = end + 1, d + 1
            else:
                start = end
        order = list(range(n))
        for sents in by_doc:
            if len(sents) < 2 or cfg.permute_sentences <= 0:
                continue
            chosen = sorted(rng.sample(range(len(sents)), math.ceil(cfg.permute_sentences * len(sents))))
            moved = chosen[:]
            rng.shuffle(moved)
            new = sents[:]
            for slot, src in zip(chosen, moved, strict=True):
                new[slot] = sents[src]
            pos = sents[0][0]
            for s, e in new:
                for t in range(s, e):
                    order[pos] = t
                    pos += 1

        # 2. rotation of each document (its [SEP] stays)
        if cfg.rotate > 0:
            begins, stops = [first] + [d + 1 for d in docs], docs + [n]
            for a, b in zip(begins, stops, strict=True):
                if rng.random() < cfg.rotate and b - a >= 2:
                    cut = rng.randint(1, b - a - 1)
                    order[a:b] = order[a + cut : b] + order[a : a + cut]
        x = [ids[i] for i in order]

        # 3. units (tokens, or words) grouped in regions of consecutive maskable tokens
        unit_starts: list[int] = []
        unit_ends: list[int] = []
        region_of: list[int] = []
        regions = 0
        prev_ok = False
        maskable = 0
        for i, tok in enumerate(x):
            ok = tok not in self.fixed and i not in doc_set
            if ok:
                maskable += 1
                if prev_ok and cfg.whole_word and not self.word_start[tok]:
                    unit_ends[-1] = i + 1
                else:
                    if not prev_ok:
                        regions += 1
                    unit_starts.append(i)
                    unit_ends.append(i + 1)
                    region_of.append(regions - 1)
            prev_ok = ok
        units = len(unit_starts)
        spans: list[list[tuple[int, int]]] = []  # each span: its pieces (a span split at regions), in units
        zeros = 0
        if units and cfg.mask_ratio > 0:
            budget = min(units, max(1, int(cfg.mask_ratio * units + 0.5)))
            if cfg.span_layout == "tiled":
                tiles = []
                u = 0
                while u < units:
                    region_end = u
                    while region_end < units and region_of[region_end] == region_of[u]:
                        region_end += 1
                    while u < region_end:
                        length = max(1, self.draw(rng))
                        tiles.append((u, min(u + length, region_end)))
                        u += length
                    u = region_end
                picks = list(range(len(tiles)))
                rng.shuffle(picks)
                room = budget
                for p in picks:
                    length = tiles[p][1] - tiles[p][0]
                    if length <= room:
                        spans.append([tiles[p]])
                        room -= length
                        if room == 0:
                            break
                spans.sort()
            else:
                lengths, total = [], 0
                while total < budget:
                    length = self.draw(rng)
                    if length == 0:
                        zeros += 1
                        continue
                    length = min(length, budget - total)
                    lengths.append(length)
                    total += length
                k = len(lengths)
                slots = sorted(rng.sample(range(units - budget + k), k))
                used = 0
                for j, (slot, length) in enumerate(zip(slots, lengths, strict=True)):
                    s = slot + used - j
                    pieces, piece_start = [], s
                    for u in range(s + 1, s + length):  # split where a new region starts
                        if region_of[u] != region_of[u - 1]:
                            pieces.append((piece_start, u))
                            piece_start = u
                    pieces.append((piece_start, s + length))
                    spans.append(pieces)
                    used += length

        # 4. per span: KEEP / MASK / RANDOM (the pieces of a split span share it)
        label = [KEEP] * n
        heads = [False] * n
        for pieces in spans:
            r = rng.random()
            outcome = KEEP if r < cfg.keep_ratio else MASK if r < 1 - cfg.random_ratio else RANDOM
            for s, e in pieces:
                a, b = unit_starts[s], unit_ends[e - 1]
                heads[a] = True
                for t in range(a, b):
                    label[t] = outcome
        out: list[int] = []
        out_made: list[bool] = []
        for t, tok in enumerate(x):
            kind = label[t]
            if kind == KEEP:
                out.append(tok)
                out_made.append(False)
            elif cfg.replace_length == -1 or heads[t]:
                if kind == MASK and cfg.replace_length != 0:
                    out.append(sp.mask)
                    out_made.append(True)
                elif kind == RANDOM:
                    out.append(self.random_ids[rng.randrange(len(self.random_ids))])
                    out_made.append(False)

        # 5. collapse runs of [MASK]: a run keeps the input's own [MASK] tokens, else one
        if cfg.collapse_masks:
            collapsed: list[int] = []
            i = 0
            while i < len(out):
                if out[i] != sp.mask:
                    collapsed.append(out[i])
                    i += 1
                    continue
                j = i
                while j < len(out) and out[j] == sp.mask:
                    j += 1
                inherited = [t for t in range(i, j) if not out_made[t]]
                collapsed += [sp.mask] * (len(inherited) or 1)
                i = j
            out = collapsed

        # 6. insertion, never before the first or after the last token, never past the input length
        count = min(zeros + int(cfg.insert_ratio * maskable + 0.5), n - len(out))
        if count > 0 and len(out) >= 2:
            for _ in range(count):
                tok = sp.mask
                if rng.random() < cfg.random_ratio:
                    tok = self.random_ids[rng.randrange(len(self.random_ids))]
                out.insert(rng.randint(1, len(out) - 1), tok)
        return out


def load_rows(corpus: Path, vocab: Path, tmp: Path) -> tuple[list[Row], Any, str]:
    """512-token rows of the prepared corpus and its tokenizer, or synthetic rows (tokenizer None)."""
    if corpus.is_file() and vocab.is_file():
        import datasets
        from transformers import BertTokenizer

        out = prepare(corpus, vocab, tmp / "prepared", "--seq-length", str(SEQ), "--valid-ratio", "0")
        ds = datasets.load_from_disk(str(out / "train")).with_format("numpy")
        rows = [(r["input_ids"], r["sentence_ends"], r["doc_ends"]) for r in ds]
        rows = [r for r in rows if len(r[0]) == SEQ]
        tok = BertTokenizer.from_pretrained(str(out / "tokenizer"))
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
    word_start = fast._word_start
    ws = [True] * fast.special.vocab_size if word_start is None else word_start.tolist()
    return fast, Reference(cfg, fast.special, 1, ws, fast._random_ids)


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
