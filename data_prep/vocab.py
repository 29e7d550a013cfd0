"""Train a BERT-style WordPiece vocab on a corpus with the ``tokenizers`` library, deterministically.

Same normalization as BERT-Chinese (clean text, a space around every CJK character, lowercase, accents
stripped) and the special tokens ``[PAD] [UNK] [CLS] [SEP] [MASK]`` at ids 0-4. The output directory
loads with ``BertTokenizer.from_pretrained`` under transformers 4.x (vocab.txt) and 5.x.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tokenizers import BertWordPieceTokenizer
from tqdm import tqdm

from data_prep.errors import UserError
from data_prep.formats import file_status
from data_prep.inputs import input_size
from data_prep.manifest import Repairs
from data_prep.plan_units import whole_file
from data_prep.read import UnreadableInput, clue_blocks
from data_prep.tokenizer import SPECIAL_TOKENS

PREFIX = "##"
_CODE_POINTS = 0x110000
# Characters that always end a word once normalized: whitespace (Unicode Zs, tab, newline, CR) and the
# CJK ideographs that BERT's normalizer puts spaces around. Runs of anything else may hold longer words.
_WORD_RUN = re.compile(
    "[^\t\n\r \xa0\u1680\u2000-\u200a\u202f\u205f\u3000"
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002a6df]+"
)


def corpus_blocks(
    files: list[Path], fmt: str, text_field: str, repairs: Repairs, quiet: bool, desc: str, warn: bool
) -> Iterator[str]:
    """Every readable file as blocks of clue-layout text; binary and unreadable files are skipped."""
    with tqdm(
        total=sum(input_size(f) for f in files),
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=desc,
        disable=quiet,
        file=sys.stderr,
    ) as bar:
        for index, path in enumerate(files):
            status = file_status(path)
            if status in ("binary", "unreadable") and warn:
                bar.write(f"warning: skipped {status} file {path}", file=sys.stderr)
            if status == "ok":
                try:
                    unit = whole_file(index, path, fmt)
                    yield from (
                        b for b, _ in clue_blocks(unit, text_field, repairs, lambda text, limit: limit)
                    )
                except UnreadableInput:
                    if warn:
                        bar.write(
                            f"warning: {path} is unreadable after some point; its start was used",
                            file=sys.stderr,
                        )
            bar.update(input_size(path))


def corpus_lines(blocks: Iterable[str]) -> Iterator[str]:
    """The non-blank lines of the blocks: what the trainer counts words in."""
    for block in blocks:
        yield from (line for line in block.split("\n") if line.strip())


@dataclass
class Alphabet:
    """What the trainer's starting vocab is made of: its characters and those seen after a word's first.

    Counted over the text the trainer sees (BERT normalization, then BERT pre-tokenization), so that
    the trainer can be handed both up front. Handed nothing, it ranks equal character counts and numbers
    the ``##`` pieces in hash-map order, which differs from run to run (huggingface/tokenizers#1794).
    """

    counts: Counter[str] = field(default_factory=Counter)
    continuing: set[str] = field(default_factory=set)

    def chosen(self, limit: int) -> list[str]:
        """The ``limit`` most frequent characters (ties: by code point), in code-point order."""
        ranked = sorted(self.counts.items(), key=lambda item: (-item[1], item[0]))
        return sorted(char for char, _ in ranked[:limit])


def scan_alphabet(blocks: Iterable[str], tokenizer: BertWordPieceTokenizer) -> Alphabet:
    """Count the normalized characters and find the continuing ones, at ~15 M characters/s.

    Normalization is character by character, so the raw code points are counted with numpy and each
    distinct one is normalized once. A word of two or more characters can only come from a run without
    whitespace or CJK ideographs (each becomes a one-character word), so only those runs are normalized
    and pre-tokenized whole.
    """
    raw = np.zeros(_CODE_POINTS, dtype=np.int64)
    continuing: set[str] = set()
    for block in blocks:
        raw += np.bincount(
            np.frombuffer(block.encode("utf-32-le", "surrogatepass"), dtype=np.uint32), minlength=_CODE_POINTS
        )
        runs = set(_WORD_RUN.findall(block))
        if runs:
            continuing.update(char for word in _words(" ".join(runs), tokenizer) for char in word[1:])
    alphabet = Alphabet(continuing=continuing)
    for code in np.flatnonzero(raw).tolist():
        for word in _words(chr(code), tokenizer):  # "가" is one raw character but a two-jamo word
            alphabet.continuing.update(word[1:])
            for char in word:
                alphabet.counts[char] += int(raw[code])
    return alphabet


def _words(text: str, tokenizer: BertWordPieceTokenizer) -> list[str]:
    """The words the trainer counts in ``text``: BERT-normalized, then pre-tokenized."""
    normalized = tokenizer.normalizer.normalize_str(text)
    return [word for word, _ in tokenizer.pre_tokenizer.pre_tokenize_str(normalized)]


@dataclass
class TrainedVocab:
    """The vocab's tokens in id order, and what went into it."""

    tokens: list[str]
    chars: list[str]  # the alphabet
    continuing: list[str]  # ##characters
    repairs: Repairs
    stray: list[str]  # ## pieces the alphabet scan did not foresee (their ids may vary run to run)
    corpus_chars: int  # distinct characters in the corpus (more than ``chars`` when limit_alphabet cut some)


def train_vocab(
    files: list[Path],
    fmt: str,
    text_field: str,
    vocab_size: int,
    min_frequency: int,
    limit_alphabet: int | None,
    quiet: bool,
) -> TrainedVocab:
    """Two passes over the corpus: the alphabet scan, then the WordPiece trainer handed its result."""
    tokenizer = BertWordPieceTokenizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True
    )
    repairs = Repairs()
    alphabet = scan_alphabet(
        corpus_blocks(files, fmt, text_field, repairs, quiet, "vocab 1/2", True), tokenizer
    )
    if not alphabet.counts:
        raise UserError(f"no text found in the {len(files):,} input files")
    chars = alphabet.chosen(limit_alphabet or vocab_size // 2)
    continuing = sorted(PREFIX + char for char in alphabet.continuing.intersection(chars))
    tokenizer.train_from_iterator(
        corpus_lines(corpus_blocks(files, fmt, text_field, Repairs(), quiet, "vocab 2/2", False)),
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        limit_alphabet=len(chars),
        initial_alphabet=chars,
        special_tokens=[*SPECIAL_TOKENS, *continuing],  # numbered up front, in this order
        show_progress=False,
    )
    tokens = _ordered(tokenizer.get_vocab(), set(chars), set(continuing))
    stray = [t for t in tokens if t.startswith(PREFIX) and len(t) == len(PREFIX) + 1 and t not in continuing]
    return TrainedVocab(tokens, chars, continuing, repairs, stray, len(alphabet.counts))


def _ordered(vocab: dict[str, int], chars: set[str], continuing: set[str]) -> list[str]:
    """Special tokens, characters, ##characters, then the merged pieces in the order they were learnt."""

    def group(token: str) -> int:
        if token in SPECIAL_TOKENS:
            return 0
        return 1 if token in chars else 2 if token in continuing else 3

    return sorted(vocab, key=lambda token: (group(token), vocab[token]))


def write_config(directory: Path) -> None:
    """tokenizer_config.json and special_tokens_map.json for BertTokenizer (4.x and 5.x)."""
    names = dict(
        zip(("pad_token", "unk_token", "cls_token", "sep_token", "mask_token"), SPECIAL_TOKENS, strict=True)
    )
    config = {
        "tokenizer_class": "BertTokenizer",
        "do_lower_case": True,
        "tokenize_chinese_chars": True,
        "strip_accents": None,
        **names,
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    (directory / "special_tokens_map.json").write_text(json.dumps(names, indent=2) + "\n", encoding="utf-8")
