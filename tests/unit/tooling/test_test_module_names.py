"""The test command collects every test directory in one pytest run, where test modules
are imported by their base name (the directories are not packages): two test files of
the same name in different directories stop the whole collection ("import file
mismatch"). Each name must be unique across tests/."""

from __future__ import annotations

import collections
from pathlib import Path

TESTS = Path(__file__).resolve().parents[2]


def test_no_two_test_modules_share_a_file_name() -> None:
    by_name: dict[str, list[str]] = collections.defaultdict(list)
    for path in TESTS.rglob("test_*.py"):
        if "node_modules" not in path.parts:
            by_name[path.name].append(str(path.relative_to(TESTS)))
    assert {name: paths for name, paths in by_name.items() if len(paths) > 1} == {}
