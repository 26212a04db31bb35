"""Fixtures of the reliability tests: stores with a realistic order history, on SQLite and PostgreSQL.

PostgreSQL (tests marked ``postgres``): a fresh database per test, through
``TESSERA_TEST_POSTGRES_ADMIN_URL`` (default: the local ``postgres`` database); skipped
when unreachable, except with ``CI=true``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from reliability_history import build_history
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from services.store import Store
from services.store.engine import normalize_url

ADMIN_URL = os.environ.get("TESSERA_TEST_POSTGRES_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="session")
def create_postgres_database() -> Iterator[Callable[[], URL]]:
    admin = create_engine(normalize_url(ADMIN_URL), isolation_level="AUTOCOMMIT", poolclass=NullPool)
    created: list[str] = []

    def create() -> URL:
        name = f"tessera_rel_{uuid.uuid4().hex[:16]}"
        try:
            with admin.connect() as connection:
                connection.execute(text(f'CREATE DATABASE "{name}"'))
        except OperationalError as error:
            message = f"PostgreSQL unreachable: {str(error).splitlines()[0]}"
            if os.environ.get("CI", "").lower() == "true":
                pytest.fail(message)
            pytest.skip(message)
        created.append(name)
        return admin.url.set(database=name)

    yield create
    with admin.connect() as connection:
        for name in created:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/tessera.db"
    return request.getfixturevalue("create_postgres_database")().render_as_string(hide_password=False)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    store = Store.from_url(store_url)
    yield store
    store.dispose()


@pytest.fixture
def history(store: Store) -> dict[str, str]:
    return build_history(store)
