"""Fixtures of the end-to-end suite: the three services as real processes.

``stack`` (session scope) runs Risk, OMS and Exchange on free ports against a fresh
SQLite file; ``store`` reads that database through the repository layer, read-only.
A failing test that used a stack gets the services' log tails in its report.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
for path in (str(HERE), str(ROOT)):
    if path not in sys.path:
        sys.path.insert(0, path)

import tessera_e2e  # noqa: E402
from services.cli.stack import Stack  # noqa: E402


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if report.failed and report.when in ("setup", "call"):
        for name, value in getattr(item, "funcargs", {}).items():
            if isinstance(value, Stack):
                report.sections.append((f"tessera service logs ({name})", value.logs(lines=40)))


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return tessera_e2e.sqlite_url(tmp_path_factory.mktemp("db") / "tessera.db")


@pytest.fixture(scope="session")
def stack(sqlite_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = tessera_e2e.start_stack(sqlite_url, tmp_path_factory.mktemp("logs"))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def store(stack: Stack, sqlite_url: str) -> Iterator[tessera_e2e.StoreView]:
    view = tessera_e2e.StoreView(sqlite_url)
    try:
        yield view
    finally:
        view.close()
