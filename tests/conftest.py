"""Fixtures shared by the test modules (the plain helpers they use are in helpers.py).

``pytest -m "not slow"`` (``./launch.sh test --fast``) runs the unit tests only: every test that trains,
runs the demo, kills processes or prepares at scale is marked ``slow``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import small_vocab_dir, write_shards


@pytest.fixture(scope="session")
def vocab(tmp_path_factory) -> Path:
    """A small BERT vocab directory (specials, common hanzi, punctuation, letters, a few word pieces)."""
    return small_vocab_dir(tmp_path_factory.mktemp("vocab"))


@pytest.fixture(scope="session")
def hf(vocab):
    """``vocab`` loaded the way users load it: the reference the exact-tokenization tests compare with."""
    from transformers import BertTokenizer

    return BertTokenizer.from_pretrained(str(vocab))


@pytest.fixture(scope="session")
def shards(tmp_path_factory) -> Path:
    """Tiny shards (seq 48, a character vocab) made by the real ``data_prep prepare``, for trainer tests."""
    return write_shards(tmp_path_factory.mktemp("shards"))
