"""Fixtures of the fuzz tests: the e2e helpers on the path, the case counts written at the end."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
for path in (str(HERE), str(HERE.parent / "e2e"), str(HERE.parents[1])):
    if path not in sys.path:
        sys.path.insert(0, path)

import fuzz_support


def pytest_sessionfinish(session, exitstatus):  # type: ignore[no-untyped-def]
    fuzz_support.write_summary()
