"""What a MODEL argument of ``bart-eval`` and ``bart-finetune`` names, loaded: one rule for both commands.

RUN_DIR          a training run: its ``hf/final``, else its newest ``hf/step-N``
EXPORT_DIR       any Hugging Face BART directory (ours, or the seed model downloaded)
MODEL.bin        a UER-py / TencentPretrain BART state dict, converted in memory (``convert uer-to-hf``)
random           the architecture of the other models named, freshly initialised: the baseline
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import BartForConditionalGeneration, BertTokenizer

from data_prep.errors import UserError, first_line
from pretrain.config import ModelConfig
from pretrain.model import UER_SUFFIXES, generation_config, special_ids, uer_model
from pretrain.rundir import RunDir
from pretrain.uer import check_uer, load_uer

RANDOM = "random"


@dataclass
class Resolved:
    """A loaded model, where it came from, and the tokenizer that came with it (None: none did)."""

    name: str  # as the user wrote it: the column heading of the tables
    path: Path | None  # the export directory or UER file actually loaded (None for random)
    kind: str  # run | export | uer | random
    model: BartForConditionalGeneration
    tokenizer: Any | None
    vocab_sha256: str | None  # of the vocab.txt beside the weights, when there is one

    @property
    def parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


@dataclass(frozen=True)
class UerOptions:
    """What the tensors of a UER file do not record (as ``convert uer-to-hf`` takes them)."""

    heads: int = 12
    encoder_layers: int | None = None
    decoder_layers: int | None = None


def export_of(path: Path) -> tuple[Path, str]:
    """The export a directory stands for: itself (a model directory), or a run directory's ``hf/final``
    (its newest ``hf/step-N``, said on stderr, while it has no final export yet)."""
    if (path / "config.json").is_file():
        return path, "export"
    run = RunDir(path)
    exports = run.exports()  # oldest first, hf/final last
    if not exports:
        raise UserError(
            f"{path} is neither an export (config.json, vocab.txt) nor a run directory with hf/ exports"
        )
    if exports[-1] != run.final_export:
        print(f"note: {path} has no hf/final yet; using its newest export {exports[-1]}", file=sys.stderr)
    return exports[-1], "run"


def load_one(name: str, vocab: Any | None, uer: UerOptions) -> Resolved:
    """Load MODEL ``name`` (not ``random``); ``vocab`` is the tokenizer a UER file is read with."""
    path = Path(name)
    if path.is_file() or (path.suffix in UER_SUFFIXES and not path.exists()):
        return _load_uer(name, path, vocab, uer)
    if not path.exists():
        raise UserError(f"no such model: {name} (a run directory, an export, a UER-py model.bin or 'random')")
    export, kind = export_of(path)
    try:
        model = BartForConditionalGeneration.from_pretrained(str(export))
    except Exception as exc:  # noqa: BLE001 - a bad weights file raises OSError, SafetensorError, ...
        raise UserError(f"cannot load {export}: {first_line(exc)}") from None
    if model.config.model_type != "bart":
        raise UserError(f"{export} holds a {model.config.model_type} model, not BART")
    tokenizer, sha = None, None
    if (export / "vocab.txt").is_file():
        tokenizer = BertTokenizer.from_pretrained(str(export))
        sha = hashlib.sha256((export / "vocab.txt").read_bytes()).hexdigest()
    return Resolved(name, export, kind, model, tokenizer, sha)


def _load_uer(name: str, path: Path, vocab: Any | None, uer: UerOptions) -> Resolved:
    if vocab is None:
        raise UserError(f"{name} is a UER-py model file, which holds no vocab: pass --vocab PATH")
    state = load_uer(path)
    enc, dec = check_uer(state, name, uer.encoder_layers, uer.decoder_layers)
    base = ModelConfig(encoder_attention_heads=uer.heads, decoder_attention_heads=uer.heads)
    model = uer_model(state, enc, dec, base, special_ids(vocab))
    model.generation_config = generation_config(special_ids(vocab), model.config.max_position_embeddings)
    return Resolved(name, path, "uer", model, None, None)


def random_like(other: Resolved, seed: int) -> Resolved:
    """``other``'s architecture and tokenizer, freshly initialised with ``seed`` (a tied head and a zero
    output bias, as a fresh BART starts)."""
    torch.manual_seed(seed)
    config = other.model.config.__class__.from_dict(other.model.config.to_dict())
    model = BartForConditionalGeneration._from_config(config)
    model.generation_config = other.model.generation_config
    return Resolved(RANDOM, None, RANDOM, model, other.tokenizer, other.vocab_sha256)


def resolve(
    names: list[str], vocab: Any | None = None, uer: UerOptions | None = None, seed: int = 0
) -> list[Resolved]:
    """Every MODEL in ``names``, in order; ``random`` takes the shape of the first other model named."""
    uer = uer or UerOptions()
    loaded = {n: load_one(n, vocab, uer) for n in dict.fromkeys(names) if n != RANDOM}
    if RANDOM in names and not loaded:
        raise UserError("'random' copies the shape of another model: name one beside it")
    first = next(iter(loaded.values()), None)
    return [random_like(first, seed) if n == RANDOM else loaded[n] for n in names]  # type: ignore[arg-type]


def check_vocab(resolved: Resolved, vocab_size: int, vocab_sha256: str | None, what: str) -> None:
    """A model whose vocab is not the data's is an error naming both: nothing is retokenized silently."""
    size = resolved.model.config.vocab_size
    if size != vocab_size:
        raise UserError(
            f"{resolved.name} has a vocab of {size:,} tokens but {what} has {vocab_size:,}: "
            "score a model on data made with its own tokenizer"
        )
    if vocab_sha256 and resolved.vocab_sha256 and resolved.vocab_sha256 != vocab_sha256:
        raise UserError(
            f"{resolved.name} has a different vocab.txt than {what} (both {size:,} tokens): "
            "score a model on data made with its own tokenizer"
        )
