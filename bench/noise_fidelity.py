"""Our side of the noise fidelity tables (``docs/noise_fidelity.md``): statistics of the noise on real shards.

    python bench/noise_fidelity.py [--corpus FILE] [--vocab FILE] [--seed S] [--epoch E]

The shards are the CLUECorpusSmall sample (../shared/corpus) prepared with the BERT-Chinese vocab at 512
ids (``data_prep prepare`` into a temp dir, as ``bench/bench_noise.py`` does). Every row gets the noise of
each configuration below once (``Denoiser.trace``: the choices behind each source), and the statistics are
the ones the reference harnesses compute from UER-py's and fairseq's own code on the same rows (the
harness steps are in ``docs/noise_fidelity.md``):

- chosen share: text tokens (not ``[CLS] [SEP] [PAD] [MASK]``) inside chosen spans (kept ones included),
  over all text tokens; a token in several overlapping spans counts once;
- outcome shares of the chosen tokens ([MASK] / unchanged / random), per token;
- the source: mean length, share of [MASK], share of random tokens; inserts per row and their random share;
- runs: maximal runs of chosen text tokens (adjacent spans make one run): length histogram, mean, per row;
- and how often a row's sentence order is the same in two epochs (UER-py permutes once, at preprocessing).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(ROOT))

from prepared import prepare  # noqa: E402

from data_prep.noise import KEEP, MASK, RANDOM, Denoiser, NoiseConfig, Trace  # noqa: E402
from data_prep.shards import ShardDir  # noqa: E402

SEQ, TOP = 512, 10  # run lengths >= TOP share the last bin
CONFIGS: list[tuple[str, str, dict[str, Any]]] = [
    ("uer", "uer", {}),
    ("bart", "bart", {}),
    ("bart, no overlap", "bart", {"span_overlap": False, "insert_random": "per_token"}),
]


def row_stats(t: Trace, d: Denoiser) -> dict[str, float]:
    """The counts behind the statistics, for one trace."""
    sp, cfg = d.special, d.cfg
    x = t.tgt[t.order]
    text = ~np.isin(x, [sp.cls, sp.sep, sp.pad, sp.mask])
    chosen = np.zeros(len(x), dtype=bool)
    lengths = t.ends - t.starts
    for s, e in zip(t.starts.tolist(), t.ends.tolist(), strict=True):
        chosen[s:e] = True
    by = {o: int(lengths[t.outcomes == o].sum()) for o in (KEEP, MASK, RANDOM)}
    kept_original = len(x) - by[MASK] - by[RANDOM]
    made_masks = int(np.count_nonzero(t.src == sp.mask)) - int(np.count_nonzero(x == sp.mask))
    randoms = len(t.src) - kept_original - made_masks
    from_spans = by[RANDOM] if cfg.replace_length == -1 else int(np.count_nonzero(t.outcomes == RANDOM))
    flags = chosen[text]
    edges = np.diff(np.concatenate(([0], flags.astype(np.int8), [0])))
    runs = (edges == -1).nonzero()[0] - (edges == 1).nonzero()[0]
    return {
        "text": int(text.sum()),
        "chosen": int(flags.sum()),
        "keep": by[KEEP],
        "mask": by[MASK],
        "random": by[RANDOM],
        "src": len(t.src),
        "src_mask": made_masks,
        "src_random": randoms,
        "inserted": t.inserted,
        "random_inserts": randoms - from_spans,
        "runs": runs,
    }


def measure(d: Denoiser, rows: list, epoch: int) -> dict[str, Any]:
    per_row = [row_stats(d.trace(*row, epoch=epoch, index=i), d) for i, row in enumerate(rows)]
    total = {k: sum(r[k] for r in per_row) for k in per_row[0] if k != "runs"}
    runs = np.concatenate([r["runs"] for r in per_row])
    chosen_tokens = total["keep"] + total["mask"] + total["random"]
    hist = np.bincount(np.minimum(runs, TOP), minlength=TOP + 1)[1:] / len(runs)
    return {
        "chosen share": total["chosen"] / total["text"],
        "[MASK] / unchanged / random of chosen": "/".join(
            f"{total[k] / chosen_tokens:.3f}" for k in ("mask", "keep", "random")
        ),
        "source mean length": total["src"] / len(rows),
        "[MASK] share of source": total["src_mask"] / total["src"],
        "random share of source": total["src_random"] / total["src"],
        "inserts per row": total["inserted"] / len(rows),
        "random share of inserts": total["random_inserts"] / max(1, total["inserted"]),
        "runs per row": len(runs) / len(rows),
        "mean run length": float(runs.mean()),
        f"run length 1..{TOP}+": " ".join(f"{h:.3f}" for h in hist),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=SHARED / "corpus" / "cluecorpussmall_sample.txt")
    parser.add_argument("--vocab", type=Path, default=SHARED / "google_zh_vocab.txt")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--epoch", type=int, default=0)
    args = parser.parse_args()
    if not (args.corpus.is_file() and args.vocab.is_file()):
        print(f"needs {args.corpus} and {args.vocab}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        out = prepare(
            args.corpus, args.vocab, Path(tmp) / "prepared", "--seq-length", str(SEQ), "--valid-ratio", "0"
        )
        shards = ShardDir(out)
        ds = shards.load_split("train").with_format("numpy")
        rows = [(r["input_ids"], r["sentence_ends"], r["doc_ends"]) for r in ds]
        tok = shards.load_tokenizer()
    lengths = np.array([len(r[0]) for r in rows])
    print(
        f"{len(rows)} rows from {args.corpus.name} ({args.vocab.name}, {SEQ} ids), "
        f"mean length {lengths.mean():.1f}"
    )
    print(f"rows shorter than {SEQ}: {np.mean(lengths < SEQ):.4f}; seed {args.seed}, epoch {args.epoch}")
    results = {
        name: measure(
            Denoiser.from_tokenizer(NoiseConfig.from_preset(preset, **over), tok, args.seed), rows, args.epoch
        )
        for name, preset, over in CONFIGS
    }
    names = list(results)
    fixed = Denoiser.from_tokenizer(NoiseConfig.from_preset("uer", mask_ratio=0.0), tok, args.seed)
    movable = [i for i, r in enumerate(rows) if len(r[1]) > len(r[2])]  # a document with 2+ sentences
    again = sum(
        np.array_equal(
            fixed.trace(*rows[i], epoch=args.epoch, index=i).order,
            fixed.trace(*rows[i], epoch=args.epoch + 1, index=i).order,
        )
        for i in movable
    )
    print(
        f"rows with a sentence order to permute: {len(movable) / len(rows):.4f}; of them, the same order "
        f"in epochs {args.epoch} and {args.epoch + 1}: {again / len(movable):.4f}"
    )
    print("| statistic | " + " | ".join(f"ours: {n}" for n in names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for key in results[names[0]]:
        cells = [
            v if isinstance(v := results[n][key], str) else f"{v:.4f}" if v < 10 else f"{v:.1f}"
            for n in names
        ]
        print(f"| {key} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
