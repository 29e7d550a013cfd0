"""``python -m pretrain.convert`` (``bart-convert``): UER-py / TencentPretrain BART checkpoints <-> Hugging
Face BART, tensor for tensor as UER-py's own scripts (``pretrain.uer`` holds the mapping).

usage: python -m pretrain.convert uer-to-hf --input MODEL.bin --output DIR [--vocab PATH]
                                            [--encoder-layers N --decoder-layers M] [--heads H] [--force]
       python -m pretrain.convert hf-to-uer --input HF_DIR --output MODEL.bin [--force]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
from transformers import BartForConditionalGeneration

from data_prep.atomic import atomic_file
from data_prep.cli import Parser
from data_prep.errors import UserError, run_cli
from data_prep.tokenizer import load_tokenizer
from pretrain.config import ModelConfig
from pretrain.export import export_model
from pretrain.model import generation_config, special_ids, uer_model
from pretrain.uer import (
    BERT_CHINESE_IDS,
    BERT_CHINESE_SIZE,
    check_uer,
    hf_to_uer_state_dict,
    load_hf,
    load_uer,
    uer_shape,
)


def _refuse_overwrite(out: Path, force: bool) -> None:
    if force or not out.exists():
        return
    if (out.is_file() and out.stat().st_size) or (out.is_dir() and any(out.iterdir())):
        raise UserError(f"output {out} exists and is not empty (pass --force to replace it)")


def conversion_card(model: BartForConditionalGeneration, source: Path, out: Path) -> str:
    """A converted model's card: its architecture and where it came from (its training is not known)."""
    from pretrain import card

    facts = card.Facts(
        name=out.name,
        config=model.config,
        parameters=sum(p.numel() for p in model.parameters()),
        head=card.head_of(model),
        source=f"converted from the UER-py file `{source.name}` by `bart-convert uer-to-hf`",
    )
    return card.render(facts)


def uer_to_hf(args: argparse.Namespace) -> int:
    out: Path = args.output
    if out.exists() and not out.is_dir():
        raise UserError(f"output {out} is a file, not a directory")
    _refuse_overwrite(out, args.force)
    state = load_uer(args.input)
    enc, dec = check_uer(state, str(args.input), args.encoder_layers, args.decoder_layers)
    shape = uer_shape(state, enc, dec)
    print(f"{args.input}: UER-py BART, {shape.describe(args.heads)}")
    with tempfile.TemporaryDirectory() as scratch:
        tokenizer_dir = Path(scratch) / "tokenizer"
        tokenizer_dir.mkdir()
        if args.vocab is not None:
            if not args.vocab.exists():
                raise UserError(f"no such vocab: {args.vocab}")
            loaded = load_tokenizer(str(args.vocab), Path(scratch) / "vocab")
            if loaded.vocab_size != shape.vocab_size:
                raise UserError(
                    f"vocab {args.vocab} has {loaded.vocab_size} tokens but the model's embeddings "
                    f"have {shape.vocab_size} rows"
                )
            ids = special_ids(loaded.hf)
            loaded.save(tokenizer_dir)
        elif shape.vocab_size == BERT_CHINESE_SIZE:
            ids = dict(BERT_CHINESE_IDS)
        else:
            raise UserError(
                f"the embeddings have {shape.vocab_size} rows, not BERT-Chinese's {BERT_CHINESE_SIZE}: "
                "pass --vocab PATH so that the special-token ids come from it"
            )
        base = ModelConfig(encoder_attention_heads=args.heads, decoder_attention_heads=args.heads)
        model = uer_model(state, enc, dec, base, ids)
        model.generation_config = generation_config(ids, shape.max_position_embeddings)
        try:
            export_model(model, None, tokenizer_dir, out, conversion_card(model, args.input, out))
        except OSError as exc:
            raise UserError(f"cannot write {out}: {exc.strerror or exc}") from None
    tokenizer = "with its tokenizer" if args.vocab is not None else "without a tokenizer (no --vocab)"
    print(f"wrote {out} {tokenizer}")
    return 0


def hf_to_uer(args: argparse.Namespace) -> int:
    out: Path = args.output
    if out.is_dir():
        raise UserError(f"output {out} is a directory, not a file")
    _refuse_overwrite(out, args.force)
    model = load_hf(args.input)
    c = model.config
    state = hf_to_uer_state_dict(model.state_dict(), c.encoder_layers, c.decoder_layers)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(out) as tmp:
            torch.save(state, tmp)
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror or exc}") from None
    heads, ffn = c.encoder_attention_heads, c.encoder_ffn_dim
    if (c.decoder_attention_heads, c.decoder_ffn_dim) != (heads, ffn):  # UER-py configs have one of each
        print(f"note: the decoder has {c.decoder_attention_heads} heads and FFN {c.decoder_ffn_dim}")
    print(
        f"wrote {out}: UER-py config layers_num {c.encoder_layers}, decoder_layers_num {c.decoder_layers}, "
        f"emb_size/hidden_size {c.d_model}, heads_num {heads}, feedforward_size {ffn}, "
        f"max_seq_length {c.max_position_embeddings}, hidden_act {c.activation_function}"
    )
    return 0


def positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="bart-convert", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    a = sub.add_parser("uer-to-hf", help="a UER-py BART model.bin -> a Hugging Face directory")
    a.add_argument("--input", required=True, type=Path, metavar="MODEL.bin", help="a torch.save'd state dict")
    a.add_argument("--output", required=True, type=Path, metavar="DIR")
    a.add_argument(
        "--vocab", type=Path, metavar="PATH", help="vocab.txt (or a tokenizer dir) to write beside"
    )
    a.add_argument("--encoder-layers", type=positive, metavar="N", help="default: inferred from the keys")
    a.add_argument("--decoder-layers", type=positive, metavar="M", help="default: inferred from the keys")
    a.add_argument(
        "--heads", type=positive, default=12, help="attention heads (not in the tensors; default 12)"
    )
    a.add_argument("--force", action="store_true", help="replace a non-empty output")
    a.set_defaults(run=uer_to_hf)
    b = sub.add_parser("hf-to-uer", help="a Hugging Face BART directory -> a UER-py model.bin")
    b.add_argument("--input", required=True, type=Path, metavar="HF_DIR")
    b.add_argument("--output", required=True, type=Path, metavar="MODEL.bin")
    b.add_argument("--force", action="store_true", help="replace an existing output")
    b.set_defaults(run=hf_to_uer)
    return parser


def main(argv: list[str] | None = None) -> int:
    def _main() -> int:
        args = build_parser().parse_args(argv)
        return args.run(args)

    return run_cli(_main, "bart-convert")


if __name__ == "__main__":
    sys.exit(main())
