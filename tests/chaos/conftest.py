"""Fixtures of the chaos tests: the e2e helpers on the path, PostgreSQL required."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
for path in (str(HERE), str(HERE.parent / "e2e"), str(HERE.parents[1])):
    if path not in sys.path:
        sys.path.insert(0, path)
