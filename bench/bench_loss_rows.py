"""Seconds per training step with the LM head on every decoder row vs on the labelled rows only (issue 21).

    python bench/bench_loss_rows.py [--steps 40] [--warmup 10] [--before DIR] [--work DIR]

Prepares the shared CLUECorpusSmall sample with the real 21,128-entry BERT-Chinese vocab at sequence 256
twice: packed (the default) and ``--layout uer`` (one document per example, as UER-py's BART), then
trains ``python -m pretrain`` (a config of its own: 2+2 layers, d_model 128, 4 heads, FFN 512, the tied
head; batch 16, fp32, the fused loss) for ``--steps`` steps on each, in this tree and, with ``--before``,
in another checkout (e.g. ``git archive`` of the commit before the change), and prints seconds per
step from the TensorBoard wall times after ``--warmup`` steps, and the share of padded decoder rows
(1 - fill ratio). Run it on a quiet machine: each row is one run, not a best of several.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
CORPUS, VOCAB = SHARED / "corpus" / "cluecorpussmall_sample.txt", SHARED / "google_zh_vocab.txt"
sys.path.insert(0, str(ROOT))

from prepared import prepare  # noqa: E402

from pretrain.runlog import read_scalars  # noqa: E402

LAYOUTS = {"packed": (), "uer (one document per example)": ("--layout", "uer")}
# The same model and loop in both trees: every setting given here, none taken from a tree's configs/.
CONFIG = {
    "model": {
        "vocab_size": 21128, "d_model": 128, "encoder_layers": 2, "decoder_layers": 2,
        "encoder_attention_heads": 4, "decoder_attention_heads": 4, "encoder_ffn_dim": 512,
        "decoder_ffn_dim": 512, "max_position_embeddings": 512, "tie_word_embeddings": True,
    },
    "data": {"num_workers": 1},
    "train": {
        "batch_size": 16, "lr": 5.0e-4, "log_every": 5, "eval_every": 10**9, "save_every": 10**9,
        "loss_chunks": 8, "mixed_precision": "no",
    },
}  # fmt: skip


def seconds_per_step(
    tree: Path, config: Path, shards: Path, out: Path, steps: int, warmup: int
) -> tuple[float, float]:
    """One ``python -m pretrain`` run from ``tree``: its s/step after ``warmup``, and its padded row share."""
    shutil.rmtree(out, ignore_errors=True)  # a run of an earlier invocation would be refused
    argv = [sys.executable, "-m", "pretrain", "--config", str(config), "--data.path", str(shards)]
    argv += ["--train.output_dir", str(out), "--train.max_steps", str(steps)]
    subprocess.run(argv, cwd=tree, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    scalars = read_scalars(out)
    loss = scalars["train/loss"]
    (t0, s0, _), (t1, s1, _) = next(p for p in loss if p[1] >= warmup), loss[-1]
    fill = [v for _, s, v in scalars["train/fill_ratio"] if s > warmup]
    return (t1 - t0) / (s1 - s0), 1 - sum(fill) / len(fill)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--before", type=Path, help="a checkout to compare with (its configs/ and pretrain/)")
    parser.add_argument("--work", type=Path, help="keep the shards and runs here (default: a temporary dir)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_loss_rows-"))
    (work / "tok").mkdir(parents=True, exist_ok=True)
    (work / "tok" / "vocab.txt").write_bytes(VOCAB.read_bytes())
    config = work / "bench.yaml"
    config.write_text(yaml.safe_dump(CONFIG), encoding="utf-8")
    trees = {"before": args.before, "after": ROOT} if args.before else {"this tree": ROOT}
    print(f"| layout | padded decoder rows | {' | '.join(f'{n} s/step' for n in trees)} |")
    print("|---|---|" + "---|" * len(trees))
    for i, (layout, options) in enumerate(LAYOUTS.items()):
        shards = work / f"shards-{i}"
        if not shards.exists():
            prepare(CORPUS, work / "tok", shards, "--seq-length", "256", "--valid-ratio", "0.02", *options)
        cells, padded = [], 0.0
        for name, tree in trees.items():
            rate, padded = seconds_per_step(
                tree, config, shards, work / f"run-{i}-{name}", args.steps, args.warmup
            )
            cells.append(f"{rate:.3f}")
        print(f"| {layout} | {padded:.0%} | {' | '.join(cells)} |", flush=True)


if __name__ == "__main__":
    main()
