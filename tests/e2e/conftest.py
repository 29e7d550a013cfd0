"""The end-to-end tree: every test under tests/e2e is marked ``slow`` (it trains, runs the demo, kills
processes, uses 2 ranks or prepares at scale), so ``pytest -m "not slow"`` still leaves them out."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items) -> None:
    for item in items:
        if HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.slow)
