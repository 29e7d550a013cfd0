"""``python -m pretrain.fill_in EXPORT_OR_RUN_DIR [TEXT ...]``: load an export the way the seed model's card
does (``BertTokenizer`` + ``BartForConditionalGeneration``) and print greedy fill-ins of ``[MASK]`` prompts.

A run directory means its ``hf/final`` (its newest ``hf/step-N`` while it has no final export yet)."""

from __future__ import annotations

import sys
from pathlib import Path

from data_prep.cli import Parser, int_at_least
from data_prep.errors import UserError, run_cli
from pretrain.config import DEFAULT_PROMPTS
from pretrain.resolve import export_of


def main(argv: list[str] | None = None) -> int:
    def _main() -> int:
        parser = Parser(prog="python -m pretrain.fill_in", description=__doc__.splitlines()[0])
        parser.add_argument(
            "export_dir",
            type=Path,
            help="an hf/step-N or hf/final directory, or a run directory (its hf/final)",
        )
        parser.add_argument("texts", nargs="*", help=f"prompts with [MASK] (default: {DEFAULT_PROMPTS})")
        parser.add_argument("--max-new-tokens", type=int_at_least(1), default=64, help="generation limit")
        args = parser.parse_args(argv)
        export_dir, _ = export_of(args.export_dir)
        if not (export_dir / "config.json").is_file() or not (export_dir / "vocab.txt").is_file():
            raise UserError(f"{export_dir} is not an export (needs config.json and vocab.txt)")
        from transformers import BartConfig, BartForConditionalGeneration, BertTokenizer
        from transformers.utils import logging as hf_logging

        from pretrain.heldout import fill_in

        tokenizer = BertTokenizer.from_pretrained(str(export_dir))
        texts = args.texts or DEFAULT_PROMPTS
        prompts = [tokenizer(t)["input_ids"] for t in texts]
        limit = BartConfig.from_pretrained(str(export_dir)).max_position_embeddings
        for text, ids in zip(texts, prompts, strict=True):
            if len(ids) > limit:
                raise UserError(f"the prompt {text[:20]!r}... has {len(ids)} tokens; the model takes {limit}")
        hf_logging.disable_progress_bar()
        model = BartForConditionalGeneration.from_pretrained(str(export_dir))
        outputs = fill_in(model, tokenizer, prompts, min(args.max_new_tokens, limit))
        for text, output in zip(texts, outputs, strict=True):
            print(f"{text}\n  -> {output}")
        return 0

    return run_cli(_main, "pretrain.fill_in")


if __name__ == "__main__":
    sys.exit(main())
