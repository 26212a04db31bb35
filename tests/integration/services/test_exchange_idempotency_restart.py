"""Execution idempotency that survives an Exchange restart.

The Exchange records each order id in the store (``exchange_executions``) before its
provider is called. Here a real Exchange gRPC server (paper venue) executes an order,
stops, and a new one (fresh memory, fresh paper venue, same store) is sent the very same
ExecuteOrder again: the request bytes, the risk token and the OMS credential, all still
within their lifetimes. It refuses the credential (issued before it started), and the
order even with a credential signed afresh (the store's record); the new paper venue
never sees the order.
"""

from __future__ import annotations

import asyncio
import contextlib
from decimal import Decimal
from typing import Any

import grpc
import pytest
from sqlalchemy import func, select

from services.common import convert
from services.common.auth import Authorizer
from services.common.server import add_service
from services.common.tokens import oms_call_metadata
from services.exchange.engine import ExchangeEngine, StoreExecutions
from services.exchange.providers.paper import PaperProvider
from services.exchange.servicer import RAW_REQUESTS, ExchangeServicer
from services.oms.gateway import reason_of
from services.store.database import Database
from services.store.models import exchange_executions_table
from svc_harness import MARKET_PRICE, approved, as_sent
from tessera.common.v1 import types_pb2 as common_pb
from tessera.exchange.v1 import exchange_pb2, exchange_pb2_grpc

PRICES = {"BTCUSDT": MARKET_PRICE, "ETHUSDT": Decimal("3200")}


@contextlib.asynccontextmanager
async def exchange_server(keyring: Any, store: Any):
    """An Exchange service (paper) in this process, recording executions in ``store``."""
    db = Database(store, owns_store=False)
    provider = PaperProvider(PRICES)
    engine = ExchangeEngine(keyring, provider, executions=StoreExecutions(db))
    await engine.accepting_credentials()  # as the service does before it serves
    server = grpc.aio.server()
    add_service(server, ExchangeServicer(engine), exchange_pb2.DESCRIPTOR.services_by_name["ExchangeService"],
                raw_requests=RAW_REQUESTS, authorizer=Authorizer.disabled())  # callers' identities: not this test's
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    await engine.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield exchange_pb2_grpc.ExchangeServiceStub(channel), provider
    finally:
        await channel.close()
        await server.stop(0)
        await engine.close()
        db.close()


def executions(store: Any, order_id: str) -> int:
    with store.engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(exchange_executions_table)
                                  .where(exchange_executions_table.c.order_id == order_id)).scalar_one()


def test_an_execute_order_replayed_after_an_exchange_restart_is_refused_and_fills_nothing(
        risk, store, keyring, make_order):
    async def scenario():
        decision = await approved(risk, make_order())
        order = as_sent(decision.order)
        request = exchange_pb2.ExecuteOrderRequest(order=convert.order_to_proto(order), risk_token=decision.token)
        async with exchange_server(keyring, store) as (exchange, first_venue):
            credential = oms_call_metadata(keyring, "ExecuteOrder", request)
            answer = await exchange.ExecuteOrder(request, metadata=credential)
        async with exchange_server(keyring, store) as (exchange, second_venue):  # restarted: memory gone
            with pytest.raises(grpc.aio.AioRpcError) as replayed:  # the captured credential: from before the start
                await exchange.ExecuteOrder(request, metadata=credential)
            # Even with a credential signed afresh (only the OMS can), the store's record refuses it.
            with pytest.raises(grpc.aio.AioRpcError) as signed_afresh:
                await exchange.ExecuteOrder(request, metadata=oms_call_metadata(keyring, "ExecuteOrder", request))
            batch = exchange_pb2.ExecuteOrdersRequest(orders=[request])
            again = await exchange.ExecuteOrders(batch, metadata=oms_call_metadata(keyring, "ExecuteOrders", batch))
        return order, answer, first_venue, replayed.value, signed_afresh.value, again, second_venue

    order, answer, first_venue, replayed, signed_afresh, again, second_venue = asyncio.run(scenario())

    assert [r.order_status for r in answer.reports] == [common_pb.ORDER_STATUS_FILLED]
    assert order.order_id in first_venue._orders
    assert replayed.code() is grpc.StatusCode.UNAVAILABLE
    assert reason_of(replayed) == "SERVICE_CREDENTIAL_BEFORE_START"
    assert signed_afresh.code() is grpc.StatusCode.PERMISSION_DENIED
    assert reason_of(signed_afresh) == "TOKEN_ALREADY_USED"
    assert again.results[0].error.reason == "TOKEN_ALREADY_USED"
    assert second_venue._orders == {}  # the paper venue after the restart never saw the order: no second fill
    assert executions(store, order.order_id) == 1


def test_executions_of_one_batch_are_recorded_in_one_statement_and_each_only_once(db, store):
    from services.domain import utcnow
    from services.store.executions import EXECUTIONS, Execution

    def item(order_id: str) -> Execution:
        return Execution(order_id, f"cid-{order_id}", "acct", "aster", "BTCUSDT", "PAPER", utcnow())

    async def scenario():
        first = await db.write_many(EXECUTIONS, [item("a"), item("b"), item("a")])
        second = await db.write_many(EXECUTIONS, [item("b"), item("c")])
        return first, second

    first, second = asyncio.run(scenario())

    assert first == [True, True, False]  # the same order id twice in one batch: executed once
    assert second == [False, True]
    assert [executions(store, order_id) for order_id in "abc"] == [1, 1, 1]
