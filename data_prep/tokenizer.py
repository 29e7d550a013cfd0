"""Exact BERT WordPiece tokenization with a CJK fast path.

``load_tokenizer`` opens a BERT-family tokenizer with transformers (main process only). ``FastTokenizer``
(workers; needs only ``tokenizers`` and numpy) gives the ids that tokenizer gives, faster: a character
that BERT always isolates as a word of its own (a CJK ideograph, a punctuation mark) is looked up in a
codepoint -> id table built by running the real tokenizer on it; the runs of other characters (letters,
digits, spaces, emoji, control characters, ``[MASK]``-like strings) go to the Rust tokenizer in one call.
Because every table character is a word boundary on both sides, the two halves cannot interact.
"""

from __future__ import annotations

import functools
import hashlib
import re
import shutil
import socket
import sys
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
from tokenizers import Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import WordPiece

from data_prep.errors import UserError, first_line

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
NEWLINE = 10
SLOW = -1  # table value: tokenize with the Rust tokenizer
_TABLE_CHUNK = 4096
RUST_CHUNK = 1 << 16  # characters per Rust encode call
BREAK = -2  # table value: '\n', a sentence boundary that yields no token
_CJK_RANGES = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)  # the ranges BERT's BasicTokenizer/BertNormalizer pads with spaces (tokenize_chinese_chars)


def is_bert_punctuation(cp: int) -> bool:
    """BERT's definition: ASCII non-alphanumerics and every Unicode P* character."""
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(chr(cp)).startswith("P")


@functools.lru_cache(maxsize=1)
def _candidates() -> tuple[int, ...]:
    cps = [cp for lo, hi in _CJK_RANGES for cp in range(lo, hi + 1)]
    # Planes 2 and up hold ideographs, tags, variation selectors and private use: no punctuation.
    cps += [cp for cp in range(0x20000) if unicodedata.category(chr(cp)).startswith("P")]
    cps += [cp for cp in range(128) if is_bert_punctuation(cp)]
    return tuple(sorted(set(cps)))


def has_bert_pipeline(backend: Tokenizer) -> bool:
    """True when the backend isolates CJK characters and punctuation the way BERT does."""
    norm, pre = backend.normalizer, backend.pre_tokenizer
    return (
        isinstance(norm, normalizers.BertNormalizer)
        and norm.handle_chinese_chars
        and isinstance(pre, pre_tokenizers.BertPreTokenizer)
        and isinstance(backend.model, WordPiece)
    )


def _token_at(backend: Tokenizer, texts: list[str], position: int, expected: int) -> np.ndarray:
    """For each text (all of one length), the id of the token that starts at character ``position``, or
    SLOW when the text does not give exactly ``expected`` tokens; one Rust call for all texts."""
    width = len(texts[0]) + 1
    enc = backend.encode("\n".join(texts), add_special_tokens=False)
    starts = np.fromiter((o[0] for o in enc.offsets), dtype=np.int64, count=len(enc.ids))
    ids = np.asarray(enc.ids, dtype=np.int64)
    which, at = np.divmod(starts, width)
    per_text = np.bincount(which, minlength=len(texts))
    out = np.full(len(texts), SLOW, dtype=np.int64)
    hit = at == position
    out[which[hit]] = ids[hit]
    out[per_text != expected] = SLOW
    return out


def build_table(backend: Tokenizer) -> np.ndarray:
    """A read-only table (cached per tokenizer: building one takes about a second), see ``_build_table``."""
    return _cached_table(backend.to_str())


@functools.lru_cache(maxsize=4)
def _cached_table(backend_json: str) -> np.ndarray:
    table = _build_table(Tokenizer.from_str(backend_json))
    table.flags.writeable = False
    return table


def _build_table(backend: Tokenizer) -> np.ndarray:
    """Codepoint -> token id for the characters that are always one word, SLOW for the rest, BREAK for '\\n'.

    Candidates are BERT's CJK ranges and punctuation. One is kept only when it occurs in no added token
    (``[MASK]`` is matched in the raw text, so ``[`` and ``]`` stay slow) and the real tokenizer turns it
    into exactly one token both alone and between two letters (``a?a`` -> ``a``, the id, ``a``), which
    also rules out characters that normalize to letters, to nothing, or to several characters.
    """
    table = np.full(sys.maxunicode + 1, SLOW, dtype=np.int32)
    table[NEWLINE] = BREAK
    if not has_bert_pipeline(backend):
        return table
    added = {ord(ch) for tok in backend.get_added_tokens_decoder().values() for ch in tok.content}
    cands = np.array([cp for cp in _candidates() if cp not in added], dtype=np.int64)
    alone = np.full(len(cands), SLOW, dtype=np.int64)
    boxed = alone.copy()
    for lo in range(0, len(cands), _TABLE_CHUNK):  # in chunks: one big encode would peak at ~150 MB
        chunk = cands[lo : lo + _TABLE_CHUNK]
        alone[lo : lo + len(chunk)] = _token_at(backend, [chr(cp) for cp in chunk], 0, 1)
        boxed[lo : lo + len(chunk)] = _token_at(backend, [f"a{chr(cp)}a" for cp in chunk], 1, 3)
    a_id = backend.token_to_id("a")
    letters = backend.encode("a\na", add_special_tokens=False).ids
    if a_id is None or letters != [a_id, a_id]:
        return table
    ok = (alone >= 0) & (alone == boxed)
    table[cands[ok]] = alone[ok]
    return table


@dataclass
class Encoded:
    """Token ids of a text, and for every character the number of tokens before it (``len(text)+1``)."""

    ids: np.ndarray  # int32
    before: np.ndarray  # int64, before[i] = tokens produced by text[:i]; before[-1] == len(ids)


class FastTokenizer:
    """Encodes a whole block of text at once; ids identical to the backend's ``encode(text)``."""

    def __init__(self, backend_json: str, table: np.ndarray) -> None:
        self.backend = Tokenizer.from_str(backend_json)
        self.backend.no_truncation()
        self.backend.no_padding()
        self.table = table

    def _encode_runs(self, compact: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rust-encode the slow runs (codepoints, runs separated by '\\n'); ids and start offsets.

        The text goes in pieces of about ``RUST_CHUNK`` characters cut at a separator, because the Rust
        tokenizer keeps tens of bytes per character while it works.
        """
        seps = np.flatnonzero(compact == NEWLINE)
        first_after = np.searchsorted(seps, np.arange(RUST_CHUNK, len(compact), RUST_CHUNK))
        cuts = np.unique(seps[first_after[first_after < len(seps)]] + 1)
        bounds = [0, *cuts[cuts < len(compact)].tolist(), len(compact)]
        ids, starts = [], []
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            enc = self.backend.encode(compact[lo:hi].tobytes().decode("utf-32-le"), add_special_tokens=False)
            ids.append(np.asarray(enc.ids, dtype=np.int32))
            starts.append(np.fromiter((o[0] for o in enc.offsets), dtype=np.int64, count=len(enc.ids)) + lo)
        return np.concatenate(ids), np.concatenate(starts)

    def codepoints(self, text: str) -> np.ndarray:
        return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)

    def encode(self, text: str, cps: np.ndarray | None = None) -> Encoded:
        cps = self.codepoints(text) if cps is None else cps
        n = len(cps)
        tid = self.table[cps]
        slow = tid == SLOW
        edges = np.diff(slow.astype(np.int8), prepend=np.int8(0), append=np.int8(0))
        run_ends = np.flatnonzero(edges == -1)
        counts = (tid >= 0).astype(np.int64)
        slow_ids = np.empty(0, dtype=np.int32)
        slow_anchor = np.empty(0, dtype=np.int64)
        if len(run_ends):
            # The slow runs, each followed by '\n' (a word boundary), go to Rust together.
            keep = slow.copy()
            inner = run_ends[run_ends < n]
            keep[inner] = True
            joined = cps.copy()
            joined[inner] = NEWLINE
            src = np.flatnonzero(keep)
            slow_ids, starts = self._encode_runs(joined[keep])
            if len(slow_ids):
                slow_anchor = src[np.minimum(starts, len(src) - 1)]
                counts += np.bincount(slow_anchor, minlength=n)
        before = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(counts, out=before[1:])
        ids = np.empty(int(before[-1]), dtype=np.int32)
        fast = np.flatnonzero(tid >= 0)
        ids[before[fast]] = tid[fast]
        if len(slow_ids):
            first = np.flatnonzero(np.r_[True, slow_anchor[1:] != slow_anchor[:-1]])
            rank = np.arange(len(slow_ids)) - np.repeat(first, np.diff(np.r_[first, len(slow_ids)]))
            ids[before[slow_anchor] + rank] = slow_ids
        return Encoded(ids, before)


@dataclass
class LoadedTokenizer:
    """A tokenizer opened with transformers, plus what the shards need to record about it."""

    hf: Any  # transformers BertTokenizer(Fast)
    vocab_bytes: bytes

    @property
    def vocab_sha256(self) -> str:
        return hashlib.sha256(self.vocab_bytes).hexdigest()

    @property
    def vocab_size(self) -> int:
        return len(self.hf)

    def special_ids(self) -> dict[str, int]:
        return {tok: self.hf.convert_tokens_to_ids(tok) for tok in SPECIAL_TOKENS}

    def backend_json(self) -> str:
        return self.hf.backend_tokenizer.to_str()

    @property
    def backend_sha256(self) -> str:
        """Identifies the whole tokenization pipeline (vocab, normalizer options, special tokens)."""
        return hashlib.sha256(self.backend_json().encode()).hexdigest()

    def save(self, directory: Path) -> None:
        """Write a directory BertTokenizer.from_pretrained loads under transformers 4.x and 5.x."""
        directory.mkdir(parents=True, exist_ok=True)
        self.hf.save_pretrained(str(directory))
        (directory / "vocab.txt").write_bytes(self.vocab_bytes)


def _try_load(cls: Any, name: str, local_files_only: bool, raise_error: bool = False) -> Any:
    try:
        return cls.from_pretrained(name, local_files_only=local_files_only)
    except Exception as exc:  # noqa: BLE001 - transformers raises many types; all mean "cannot load"
        if not raise_error:
            return None
        reason = first_line(exc)
        raise UserError(
            f"cannot load tokenizer {name!r} ({reason}); pass a local directory holding vocab.txt"
        ) from None


def _bert_class() -> Any:
    import transformers

    return getattr(transformers, "BertTokenizerFast", None) or transformers.BertTokenizer


def _hub_reachable() -> str | None:
    """None when the Hugging Face Hub can be reached, else why not (checked fast, without retries)."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=5).close()
    except OSError as exc:
        return f"{url.hostname} is unreachable: {exc.strerror or exc}"
    return None


def load_tokenizer(name_or_path: str, scratch: Path) -> LoadedTokenizer:
    """Open a local directory (vocab.txt or tokenizer files), a vocab.txt file, or a hub name.

    ``scratch`` is an empty directory used to turn a bare vocab.txt file into a loadable directory.
    transformers 5 returns a 5-token tokenizer instead of failing when nothing can be found or
    downloaded, so a hub name is tried from the local cache first, then online only if the hub answers.
    """
    path = Path(name_or_path)
    cls = _bert_class()
    if path.is_file():
        scratch.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, scratch / "vocab.txt")
        path = scratch
    elif path.is_dir() and not any((path / f).is_file() for f in ("vocab.txt", "tokenizer.json")):
        raise UserError(f"tokenizer directory {path} holds no vocab.txt")
    elif not path.exists() and (name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1):
        raise UserError(f"tokenizer path does not exist: {name_or_path}")
    hf = None
    if not path.exists():
        hf = _try_load(cls, name_or_path, local_files_only=True)
        if hf is None or len(hf) <= len(SPECIAL_TOKENS):
            why = _hub_reachable()
            if why:
                raise UserError(
                    f"tokenizer {name_or_path!r} is not a local path and cannot be downloaded ({why}); "
                    "pass a local directory holding vocab.txt"
                )
            hf = None
    if hf is None:
        hf = _try_load(cls, str(path), local_files_only=False, raise_error=True)
    if not getattr(hf, "is_fast", False):
        raise UserError(f"tokenizer {name_or_path!r} has no fast (Rust) backend")
    vocab_file = path / "vocab.txt" if path.is_dir() else Path(getattr(hf, "vocab_file", "") or "")
    if vocab_file.is_file():
        vocab_bytes = vocab_file.read_bytes()
    else:
        vocab = sorted(hf.get_vocab().items(), key=lambda kv: kv[1])
        vocab_bytes = "".join(f"{tok}\n" for tok, _ in vocab).encode("utf-8")
    if len(hf) <= len(SPECIAL_TOKENS):
        raise UserError(f"tokenizer {name_or_path!r} has only {len(hf)} tokens: is vocab.txt empty?")
    return LoadedTokenizer(hf, vocab_bytes)


_SPACE_NEAR_CJK = re.compile(r"(?<=[^\x00-\x7f]) | (?=[^\x00-\x7f])")  # decode() spaces every token


def readable(tok: Any, ids: Any) -> str:
    """``tok.decode(ids)`` without the spaces it puts between Chinese characters (kept between words)."""
    return _SPACE_NEAR_CJK.sub("", tok.decode(list(ids)))
