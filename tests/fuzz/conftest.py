"""Fixtures of the fuzz tests: the e2e helpers on the path, one stack for all of them,
and the case counts written at the end (``TESSERA_FUZZ_SUMMARY``)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
for path in (str(HERE), str(HERE.parent / "e2e"), str(HERE.parents[1])):
    if path not in sys.path:
        sys.path.insert(0, path)

import fuzz_support
import tessera_e2e as e2e

from services.cli.stack import Stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Risk, OMS and Exchange (paper) as processes on a fresh SQLite file."""
    url = e2e.sqlite_url(tmp_path_factory.mktemp("fuzz-db") / "tessera.db")
    running = e2e.start_stack(url, tmp_path_factory.mktemp("fuzz-logs"), TESSERA_SQLITE_SYNCHRONOUS="OFF")
    yield running
    running.stop()


def pytest_sessionfinish(session, exitstatus):  # type: ignore[no-untyped-def]
    fuzz_support.write_summary()
