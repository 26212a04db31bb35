"""The npm lock files are complete, so ``npm ci`` installs them as they are and a fresh
clone stays clean after ``make setup``.

npm records an optional dependency of every platform in the lock (``@bufbuild/buf``
has one binary package per operating system and CPU). A lock written on one platform
with the others pruned is what ``npm install`` rewrites; ``npm ci`` installs a complete
lock without touching it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
LOCKS = [ROOT / "package-lock.json", ROOT / "clients" / "node" / "package-lock.json"]


@pytest.mark.parametrize("lock", LOCKS, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_optional_dependency_of_a_locked_package_has_its_own_lock_entry(lock: Path) -> None:
    packages = json.loads(lock.read_text())["packages"]
    missing = [
        f"{name} -> {dependency}"
        for name, entry in packages.items()
        for dependency in entry.get("optionalDependencies", {})
        if f"node_modules/{dependency}" not in packages
    ]
    assert missing == []


def test_the_buf_cli_lock_lists_a_binary_for_linux_macos_and_windows() -> None:
    packages = json.loads((ROOT / "package-lock.json").read_text())["packages"]
    platforms = {tuple(entry.get("os", [])) for name, entry in packages.items()
                 if name.startswith("node_modules/@bufbuild/buf-")}
    assert {("linux",), ("darwin",), ("win32",)} <= platforms
