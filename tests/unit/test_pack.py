"""Packing invariants: lengths, [CLS]/[SEP] layout, sentence/doc offsets, every token once and in order."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from data_prep.manifest import Repairs, SplitCounts
from data_prep.pack import Packer

CLS, SEP = 1, 2

DOCS = st.lists(st.lists(st.integers(0, 140), min_size=1, max_size=8), min_size=1, max_size=25)


def pack(docs: list[list[int]], seq: int, split_room: int | None):
    """Pack documents whose sentences have the given lengths; token values are unique and increasing."""
    rows, counts, repairs = [], SplitCounts(), Repairs()
    packer = Packer(
        seq,
        CLS,
        SEP,
        lambda ids, s, d: rows.append((ids.copy(), list(s), list(d))),
        counts,
        repairs,
        split_room,
    )
    next_id, sentences = 10, []
    for doc in docs:
        for n in doc:
            tokens = np.arange(next_id, next_id + n, dtype=np.int32)
            next_id += n
            packer.add_sentence(tokens)
            if n:
                sentences.append(tokens)
        packer.end_document()
    packer.flush()
    return rows, counts, repairs, next_id


@settings(max_examples=400, deadline=None)
@given(docs=DOCS, seq=st.sampled_from([8, 16, 64, 128]), split_room=st.sampled_from([None, 1, 4, 32]))
def test_packing_invariants(docs, seq, split_room):
    rows, counts, repairs, next_id = pack(docs, seq, split_room)
    stream = []
    for ids, sentence_ends, doc_ends in rows:
        assert 3 <= len(ids) <= seq
        assert ids[0] == CLS and ids[-1] == SEP
        assert doc_ends and doc_ends[-1] == len(ids) - 1
        assert [i for i, t in enumerate(ids) if t == SEP] == doc_ends
        assert sentence_ends == sorted(set(sentence_ends)) and sentence_ends[0] > 1
        assert set(doc_ends) <= set(sentence_ends)  # each piece's last sentence ends at its [SEP]
        assert all(e < len(ids) for e in sentence_ends)
        assert not set(sentence_ends) & {d + 1 for d in doc_ends}  # no empty sentence after a [SEP]
        body = [t for t in ids.tolist() if t not in (CLS, SEP)]
        stream += body
    assert stream == list(range(10, next_id))  # every token exactly once, in order
    assert counts.examples == len(rows) and counts.ids == sum(len(r[0]) for r in rows)
    assert counts.tokens == next_id - 10
    assert counts.sentences == sum(1 for d in docs for n in d if n)


@settings(max_examples=200, deadline=None)
@given(docs=DOCS, seq=st.sampled_from([16, 64]))
def test_documents_end_at_a_sep_and_sentences_stay_whole_without_split_room(docs, seq):
    rows, counts, repairs, _ = pack(docs, seq, None)
    ends_in_stream, sentence_bounds, base = set(), set(), 0
    for ids, sentence_ends, doc_ends in rows:
        body_before = np.r_[0, np.cumsum([t not in (CLS, SEP) for t in ids.tolist()])]  # text ids in ids[:i]
        sentence_bounds |= {base + int(body_before[e]) for e in sentence_ends}
        ends_in_stream |= {base + int(body_before[d]) for d in doc_ends}
        base += int(body_before[-1])
    doc_end_positions = set(np.cumsum([sum(d) for d in docs]).tolist()) - {0}
    assert doc_end_positions <= ends_in_stream
    # without split_room only sentences longer than an example are cut: every sentence end is a bound
    sentence_end_positions = set(np.cumsum([n for d in docs for n in d if n]).tolist())
    long_ones = sum(1 for d in docs for n in d if n > seq - 2)
    assert repairs.long_sentences_split == long_ones
    if not long_ones:
        assert sentence_end_positions <= sentence_bounds
        assert counts.sentences_split == 0


def test_long_sentence_is_split_not_dropped():
    rows, counts, repairs, next_id = pack([[5, 1000, 3]], 64, None)
    assert repairs.long_sentences_split == 1
    assert sum(len(r[0]) - 2 for r in rows) == 1008
    assert all(len(r[0]) <= 64 for r in rows)


def test_short_documents_share_an_example():
    rows, *_ = pack([[5], [6], [7]], 64, None)
    assert len(rows) == 1
    ids, sentence_ends, doc_ends = rows[0]
    assert doc_ends == [6, 13, 21] and sentence_ends == doc_ends and len(ids) == 22


def pack_flagged(docs: list[list[int]], seq: int, one_document: bool):
    """``pack`` with a word-continuation flag per token (token id % 3 == 0) and the rows' offsets of the
    flagged tokens; the UER layout (``one_document``) packs without ``split_room`` (as ``prepare``)."""
    rows, counts, repairs = [], SplitCounts(), Repairs()

    def emit(ids, s, d, cont):
        rows.append((ids.copy(), list(s), list(d), cont.tolist()))

    packer = Packer(seq, CLS, SEP, emit, counts, repairs, None, one_document, word_continues=True)
    next_id = 10
    for doc in docs:
        for n in doc:
            tokens = np.arange(next_id, next_id + n, dtype=np.int32)
            next_id += n
            packer.add_sentence(tokens, tokens % 3 == 0)
        packer.end_document()
    packer.flush()
    return rows, next_id


@settings(max_examples=300, deadline=None)
@given(docs=DOCS, seq=st.sampled_from([8, 16, 64]))
def test_the_uer_layout_holds_one_document_per_example_with_whole_sentences(docs, seq):
    rows, next_id = pack_flagged(docs, seq, one_document=True)
    assert all(len(doc_ends) == 1 for _, _, doc_ends, _ in rows)  # never two documents in one example
    assert len(rows) >= sum(1 for d in docs if sum(d))  # each document starts its own example
    flat, row_of = [], []
    for r, (ids, *_) in enumerate(rows):
        body = [t for t in ids.tolist() if t not in (CLS, SEP)]
        flat += body
        row_of += [r] * len(body)
    assert flat == list(range(10, next_id))  # every token once, in order: a long document continues
    start = 0
    for n in (n for d in docs for n in d if n):
        if n <= seq - 2:  # a sentence that fits an example is never cut (UER-py's instances)
            assert len(set(row_of[start : start + n])) == 1
        start += n


@settings(max_examples=300, deadline=None)
@given(docs=DOCS, seq=st.sampled_from([8, 16, 64]), one_document=st.booleans())
def test_word_flags_travel_with_their_tokens_and_never_start_a_sentence(docs, seq, one_document):
    rows, _ = pack_flagged(docs, seq, one_document)
    for ids, sentence_ends, doc_ends, cont in rows:
        starts = {1} | set(sentence_ends) | {d + 1 for d in doc_ends}
        flagged = {i for i, t in enumerate(ids.tolist()) if t not in (CLS, SEP) and t % 3 == 0}
        assert cont == sorted(flagged - starts)
