"""Fixtures of the store's integration tests: a ``store`` on SQLite and on PostgreSQL.

PostgreSQL (tests marked ``postgres``): one fresh database ``tessera_it_<hex>`` per test session, created through
``TESSERA_TEST_POSTGRES_ADMIN_URL`` (default: the local ``postgres`` database),
migrated once, truncated before each test and dropped at the end. Unreachable, the
PostgreSQL tests are skipped, except with ``CI=true``, where they fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool
from store_rows import new_order, new_trade

from services.domain import Order, Trade
from services.store import Store
from services.store.engine import normalize_url, safe_url
from services.store.models import Base

ADMIN_URL_ENV = "TESSERA_TEST_POSTGRES_ADMIN_URL"
DEFAULT_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def _admin_engine() -> Engine:
    url = normalize_url(os.environ.get(ADMIN_URL_ENV, DEFAULT_ADMIN_URL))
    return create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)


@pytest.fixture(scope="session")
def postgres_admin() -> Iterator[Engine]:
    admin = _admin_engine()
    try:
        with admin.connect() as connection:
            connection.execute(text("SELECT 1"))
        unreachable = None
    except OperationalError as error:
        unreachable = f"PostgreSQL unreachable at {safe_url(admin.url)}: {error.orig}"
    if unreachable:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(
                f"{unreachable}\nCI=true: the PostgreSQL store tests must run (set {ADMIN_URL_ENV})",
                pytrace=False,
            )
        pytest.skip(unreachable)
    yield admin
    admin.dispose()


@pytest.fixture(scope="session")
def create_postgres_database(postgres_admin: Engine) -> Iterator[Callable[[], URL]]:
    """Creates fresh, empty databases; all are dropped at the end of the session."""
    created: list[str] = []

    def create() -> URL:
        name = f"tessera_it_{uuid.uuid4().hex[:16]}"
        with postgres_admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        created.append(name)
        return postgres_admin.url.set(database=name)

    yield create
    with postgres_admin.connect() as connection:
        for name in created:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def postgres_session_store(create_postgres_database: Callable[[], URL]) -> Iterator[Store]:
    store = Store.from_url(create_postgres_database())
    yield store
    store.dispose()


def _truncate(store: Store) -> None:
    tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
    with store.engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture
def pg_store(postgres_session_store: Store) -> Store:
    _truncate(postgres_session_store)
    return postgres_session_store


@pytest.fixture
def sqlite_store(tmp_path: Any) -> Iterator[Store]:
    store = Store.from_url(f"sqlite:///{tmp_path}/tessera.db")
    yield store
    store.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest) -> Store:
    return request.getfixturevalue("sqlite_store" if request.param == "sqlite" else "pg_store")


def add_committed(store: Store, *orders: Order) -> None:
    """Add the orders in one committed unit of work."""
    with store.uow() as uow:
        for order in orders:
            uow.orders.add(order)
        uow.commit()


@pytest.fixture
def add_orders() -> Callable[..., None]:
    return add_committed


@pytest.fixture
def make_order() -> Callable[..., Order]:
    return new_order


@pytest.fixture
def make_trade() -> Callable[..., Trade]:
    return new_trade
