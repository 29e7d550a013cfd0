"""``python -m pretrain.fill_in EXPORT_DIR [TEXT ...]``: load an export the way the seed model's card does
(``BertTokenizer`` + ``BartForConditionalGeneration``) and print greedy fill-ins of ``[MASK]`` prompts."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from data_prep.errors import UserError, run_cli
from pretrain.config import DEFAULT_PROMPTS


def main(argv: list[str] | None = None) -> int:
    def _main() -> int:
        parser = argparse.ArgumentParser(
            prog="python -m pretrain.fill_in", description=__doc__.splitlines()[0]
        )
        parser.add_argument("export_dir", type=Path, help="an hf/step-N or hf/final directory")
        parser.add_argument("texts", nargs="*", help=f"prompts with [MASK] (default: {DEFAULT_PROMPTS})")
        parser.add_argument("--max-new-tokens", type=int, default=64)
        args = parser.parse_args(argv)
        if not (args.export_dir / "config.json").is_file() or not (args.export_dir / "vocab.txt").is_file():
            raise UserError(f"{args.export_dir} is not an export (needs config.json and vocab.txt)")
        from transformers import BartForConditionalGeneration, BertTokenizer

        from pretrain.evaluate import fill_in

        tokenizer = BertTokenizer.from_pretrained(str(args.export_dir))
        model = BartForConditionalGeneration.from_pretrained(str(args.export_dir))
        texts = args.texts or DEFAULT_PROMPTS
        outputs = fill_in(model, tokenizer, [tokenizer(t)["input_ids"] for t in texts], args.max_new_tokens)
        for text, output in zip(texts, outputs, strict=True):
            print(f"{text}\n  -> {output}")
        return 0

    return run_cli(_main, "pretrain.fill_in")


if __name__ == "__main__":
    sys.exit(main())
