"""The happy path and a token refusal on PostgreSQL: a fresh database per module.

Skipped when PostgreSQL is unreachable, except with CI=true, where that is a failure.
The server is TESSERA_E2E_PG_ADMIN_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/postgres).
"""

from __future__ import annotations

import time
from typing import Iterator

import grpc
import pytest

from services.cli.stack import Stack
from tessera.oms.v1 import oms_pb2

import tessera_e2e as e2e

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with e2e.fresh_postgres_database("tessera_e2e") as url:
        yield url


@pytest.fixture(scope="module")
def pg_stack(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = e2e.start_stack(pg_url, tmp_path_factory.mktemp("pg-logs"))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def pg_store(pg_stack: Stack, pg_url: str) -> Iterator[e2e.StoreView]:
    view = e2e.StoreView(pg_url)
    try:
        yield view
    finally:
        view.close()


def test_happy_path_on_postgres(pg_stack, pg_store):
    e2e.check_happy_path(pg_stack, pg_store)


def test_expired_token_on_postgres(pg_stack, pg_store):
    approved = e2e.approve(pg_stack)
    request = oms_pb2.SubmitOrderRequest(order=approved.order, risk_token=e2e.sign(approved.order, int(time.time()) - 400))
    e2e.expect_error(lambda: pg_stack.oms.SubmitOrder(request, timeout=e2e.RPC_TIMEOUT),
                     grpc.StatusCode.UNAUTHENTICATED, "TOKEN_EXPIRED")
    pg_store.assert_untouched(approved.order.order_id)


def test_replay_on_postgres(pg_stack, pg_store):
    approved = e2e.approve(pg_stack)
    first = pg_stack.oms.SubmitOrder(approved.request(), timeout=e2e.RPC_TIMEOUT)
    again = pg_stack.oms.SubmitOrder(approved.request(), timeout=e2e.RPC_TIMEOUT)
    assert again.replayed and again.order == first.order  # answered, not sent again
    assert pg_store.status(approved.order.order_id) == "FILLED"
    assert len(pg_store.trades(approved.order.order_id)) == 1
