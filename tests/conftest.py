"""Fixtures shared by the test modules (the plain helpers they use are in helpers.py).

The tree mirrors the code:

    tests/unit/      one file per module (test_checkpoint.py tests pretrain/checkpoint.py, test_workers.py
                     data_prep/workers.py, ...), with fakes where a module touches disk or processes;
                     nothing in it trains: tests/unit/conftest.py fails any training step loudly.
                     ``./launch.sh test --fast`` runs this tree (``pytest tests/unit``), in under a minute.
    tests/e2e/       whatever trains a model, runs the demo, kills processes, uses 2 ranks or prepares at
                     scale; every test in it is marked ``slow`` (tests/e2e/conftest.py).
    tests/*.py       helpers.py (plain helpers), killpoints.py (the SIGKILL harness of the fault suite),
                     uer_states.py (UER-py state dicts for the conversion tests), export_compat_4x.py
                     (run by launch.sh under transformers 4.x).

The tests of the fault suite (damaged files, full disks, hostile input, planted code, SIGKILLs) are
marked ``faults`` wherever they live: ``pytest tests -m faults`` runs them (bench/faults.py counts them).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import small_vocab_dir, synthetic_task, tiny_export, write_shards


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "faults: the fault suite (bench/faults.py counts these tests)")


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


@pytest.fixture(scope="session")
def export(vocab, tmp_path_factory) -> Path:
    """A tiny untrained BART export with ``vocab``, as `pretrain` writes one (for the downstream probe)."""
    return tiny_export(vocab, tmp_path_factory.mktemp("export") / "tiny")


@pytest.fixture(scope="session")
def task_files(tmp_path_factory) -> dict[str, Path]:
    """A synthetic classification task (``train/dev/test.tsv``) a model can learn."""
    return synthetic_task(tmp_path_factory.mktemp("task") / "synth")
