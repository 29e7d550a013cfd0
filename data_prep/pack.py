"""Greedy packing of documents' sentences into examples of at most ``seq_length`` ids.

An example is ``[CLS] piece [SEP] piece [SEP] ...``: each piece is a whole document or the part of one
that fits, closed by its own ``[SEP]``. Sentences go in corpus order. A sentence that does not fit in
what is left of the example starts the next one (the document continues there) -- unless at least
``split_room`` ids are left: then it fills them and goes on in the next example, which is what keeps
examples >= 95% full on CLUECorpusSmall (93.6% with whole sentences only, 98.3% with split_room=32).
A sentence longer than a whole example is always split this way, never dropped.

With ``one_document`` (``prepare --layout uer``) an example holds one piece of one document, as UER-py's
``BartDataset`` makes them: a document ends its example, and a long one goes on in the next examples.
With ``word_continues`` each sentence comes with a flag per token (it continues a word), and ``emit``
gets the offsets of the flagged tokens; the first token of every sentence piece is never flagged.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from data_prep.manifest import Repairs, SplitCounts

Emit = Callable[..., None]  # (ids, sentence_ends, doc_ends[, word_continues])


class Packer:
    """Feed ``add_sentence``/``end_document``; complete examples go to ``emit(ids, sentence_ends, doc_ends)``.

    ``sentence_ends`` holds the exclusive end offset of every sentence (the last one of a piece is the
    offset of its ``[SEP]``); ``doc_ends`` the offset of every piece's ``[SEP]``; ``word_continues`` (only
    with ``word_continues=True``) the offsets of the tokens that continue a word.
    """

    def __init__(
        self,
        seq_length: int,
        cls_id: int,
        sep_id: int,
        emit: Emit,
        counts: SplitCounts,
        repairs: Repairs,
        split_room: int | None = None,
        one_document: bool = False,
        word_continues: bool = False,
    ) -> None:
        if seq_length < 4:
            raise ValueError("seq_length must be at least 4")
        self.limit = seq_length
        self.split_room = seq_length if split_room is None else split_room
        self.cls = np.array([cls_id], dtype=np.int32)
        self.sep = np.array([sep_id], dtype=np.int32)
        self.emit = emit
        self.counts = counts
        self.repairs = repairs
        self.one_document = one_document
        self.word_continues = word_continues
        self._no_flag = np.zeros(1, dtype=bool)
        self._reset()

    def _reset(self) -> None:
        self.pieces: list[np.ndarray] = [self.cls]
        self.flags: list[np.ndarray] = [self._no_flag]  # per token of ``pieces``: continues a word
        self.length = 1
        self.sentence_ends: list[int] = []
        self.doc_ends: list[int] = []
        self.open = False  # a document piece is open (has sentences, no [SEP] yet)

    def add_sentence(self, tokens: np.ndarray, continues: np.ndarray | None = None) -> None:
        """A sentence of the open document; ``continues`` (a bool per token) is required with
        ``word_continues``."""
        n = len(tokens)
        if not n:
            return
        self.counts.sentences += 1
        self.counts.tokens += n
        if n > self.limit - 2:
            self.repairs.long_sentences_split += 1
        while n:
            room = self.limit - self.length - 1  # one id stays free for the closing [SEP]
            take = n if n <= room else (room if n > self.limit - 2 or room >= self.split_room else 0)
            if take > 0:
                self.pieces.append(tokens[:take])
                if self.word_continues:
                    flags = continues[:take].copy()
                    flags[0] = False  # a sentence (or the piece of one in an example) starts a word
                    self.flags.append(flags)
                    continues = continues[take:]
                self.length += take
                self.sentence_ends.append(self.length)
                self.open = True
                tokens, n = tokens[take:], n - take
            if n:
                self.counts.sentences_split += take > 0
                self.flush()

    def end_document(self) -> None:
        if self.open:
            self._close_piece()
        if self.one_document:
            self.flush()

    def _close_piece(self) -> None:
        self.pieces.append(self.sep)
        self.flags.append(self._no_flag)
        self.doc_ends.append(self.length)
        self.length += 1
        self.open = False

    def flush(self) -> None:
        """Emit the current example (closing its open piece), if it holds anything."""
        if self.length <= 1:
            return
        if self.open:
            self._close_piece()
        ids = np.concatenate(self.pieces)
        self.counts.examples += 1
        self.counts.ids += len(ids)
        if self.word_continues:
            self.emit(ids, self.sentence_ends, self.doc_ends, np.flatnonzero(np.concatenate(self.flags)))
        else:
            self.emit(ids, self.sentence_ends, self.doc_ends)
        self._reset()
