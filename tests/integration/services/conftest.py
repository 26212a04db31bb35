"""Fixtures of the services' integration tests: a real ``store`` on SQLite and on PostgreSQL.

SQLite: a fresh file per test. PostgreSQL: one fresh database ``tessera_svc_<hex>`` per
test session, created through ``TESSERA_TEST_POSTGRES_ADMIN_URL`` (default: the local
``postgres`` database), migrated once, emptied before each test and dropped at the end.
Unreachable, the PostgreSQL cases are skipped, except with ``CI=true``, where they fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import order_factory
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

import core_ext
from services.store.database import Database
from services.domain import Order, OrderStatus
from services.store import Store
from services.store.engine import normalize_url, safe_url
from services.store.models import Base

ADMIN_URL_ENV = "TESSERA_TEST_POSTGRES_ADMIN_URL"
DEFAULT_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"

SECRET = b"services-integration-secret-0123456789"
KEY_ID = "it1"

#: A legal path from PENDING to each status the tests start orders in.
PATHS: dict[OrderStatus, tuple[OrderStatus, ...]] = {
    OrderStatus.PENDING: (),
    OrderStatus.APPROVED: (OrderStatus.APPROVED,),
    OrderStatus.SUBMITTED: (OrderStatus.APPROVED, OrderStatus.SUBMITTED),
    OrderStatus.ACCEPTED: (OrderStatus.APPROVED, OrderStatus.SUBMITTED, OrderStatus.ACCEPTED),
    OrderStatus.PENDING_CANCEL: (
        OrderStatus.APPROVED,
        OrderStatus.SUBMITTED,
        OrderStatus.ACCEPTED,
        OrderStatus.PENDING_CANCEL,
    ),
    OrderStatus.CANCELLED: (
        OrderStatus.APPROVED,
        OrderStatus.SUBMITTED,
        OrderStatus.ACCEPTED,
        OrderStatus.CANCELLED,
    ),
    OrderStatus.EXPIRED: (
        OrderStatus.APPROVED,
        OrderStatus.SUBMITTED,
        OrderStatus.ACCEPTED,
        OrderStatus.EXPIRED,
    ),
    OrderStatus.REJECTED: (OrderStatus.APPROVED, OrderStatus.SUBMITTED, OrderStatus.REJECTED),
}


# -- PostgreSQL --------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def postgres_database_url() -> Iterator[Any]:
    """A fresh, empty database for this session; dropped at the end."""
    admin: Engine = create_engine(
        normalize_url(os.environ.get(ADMIN_URL_ENV, DEFAULT_ADMIN_URL)),
        isolation_level="AUTOCOMMIT",
        poolclass=NullPool,
    )
    try:
        with admin.connect() as connection:
            connection.execute(text("SELECT 1"))
    except OperationalError as error:
        admin.dispose()
        message = f"PostgreSQL unreachable at {safe_url(admin.url)}: {error.orig}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message}\nCI=true: the PostgreSQL service tests must run (set {ADMIN_URL_ENV})")
        pytest.skip(message)
    name = f"tessera_svc_{uuid.uuid4().hex[:16]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin.url.set(database=name)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_session_store(postgres_database_url: Any) -> Iterator[Store]:
    store = Store.from_url(postgres_database_url, migrate=True)
    yield store
    store.dispose()


@pytest.fixture
def postgres_store(postgres_session_store: Store) -> Store:
    tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
    with postgres_session_store.engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    return postgres_session_store


# -- SQLite ----------------------------------------------------------------------------------------
@pytest.fixture
def sqlite_store(tmp_path: Any) -> Iterator[Store]:
    store = Store.from_url(f"sqlite:///{tmp_path}/tessera.db", migrate=True)
    yield store
    store.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest) -> Store:
    return request.getfixturevalue("sqlite_store" if request.param == "sqlite" else "postgres_store")


@pytest.fixture
def db(store: Store) -> Iterator[Database]:
    """The services' async bridge on ``store`` (its default worker count per backend)."""
    database = Database(store)
    yield database
    database.close()  # waits for its threads; disposing the pool is harmless to the store fixtures


@pytest.fixture
def keyring() -> "core_ext.KeyRing":
    return core_ext.KeyRing(KEY_ID, SECRET)


# -- orders ----------------------------------------------------------------------------------------
def build_order(**overrides: Any) -> Order:
    """A LIMIT BUY of 0.01 BTCUSDT @ 65000 on FUTURES, PENDING, no events."""
    return order_factory.build_order(**{"quantity": Decimal("0.01"), "price": Decimal("65000"), **overrides})


@pytest.fixture
def make_order() -> Callable[..., Order]:
    return build_order


@pytest.fixture
def stored_order(store: Store) -> Callable[..., Order]:
    """``stored_order(status, **overrides)``: an order walked to ``status`` and committed."""

    def make(status: OrderStatus, **overrides: Any) -> Order:
        order = build_order(**overrides)
        order.record_creation()
        for step in PATHS[status]:
            order.transition(step)
        with store.uow() as uow:
            uow.orders.add(order)
            uow.commit()
        return order

    return make


# -- the engines, with a fake Exchange stub ----------------------------------------------------
from svc_harness import LIMITS, MARKET_PRICE, FakeExchange  # noqa: E402

from services.exchange.engine import ExchangeEngine  # noqa: E402
from services.exchange.providers.books import BookShape  # noqa: E402
from services.exchange.providers.paper import PaperProvider  # noqa: E402

from services.oms.engine import OrderManagement  # noqa: E402
from services.risk.engine import RiskEngine  # noqa: E402


@pytest.fixture
def exchange(keyring) -> FakeExchange:
    return FakeExchange(keyring)


@pytest.fixture
def shallow_exchange(keyring) -> FakeExchange:
    """A paper venue whose book holds 0.004 per level: a marketable 0.01 fills in part."""
    exchange = FakeExchange(keyring)
    exchange.provider = PaperProvider({"BTCUSDT": MARKET_PRICE}, shape=BookShape(level_quantity=Decimal("0.004")))
    exchange.engine = ExchangeEngine(keyring, exchange.provider, ttl_seconds=300,
                                     credentials_since=exchange.engine.credentials_since)
    return exchange


@pytest.fixture
def risk(db, keyring) -> RiskEngine:
    return RiskEngine(db, keyring, LIMITS)


@pytest.fixture
def oms(db, keyring, exchange) -> OrderManagement:
    return OrderManagement(db, keyring, exchange, ttl_seconds=300, exchange_timeout=2.0)


