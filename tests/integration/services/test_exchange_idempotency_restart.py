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

import grpc
import pytest

from services.common import convert
from services.common.tokens import oms_call_metadata
from services.oms.gateway import reason_of
from svc_harness import approved, as_sent, exchange_server, executions
from tessera.common.v1 import types_pb2 as common_pb
from tessera.exchange.v1 import exchange_pb2


def test_an_execute_order_replayed_after_an_exchange_restart_is_refused_and_fills_nothing(
        risk, store, keyring, make_order):
    async def scenario():
        decision = await approved(risk, make_order())
        order = as_sent(decision.order)
        request = exchange_pb2.ExecuteOrderRequest(order=convert.order_to_proto(order), risk_token=decision.token)
        async with exchange_server(keyring, store) as (exchange, first_venue, _):
            credential = oms_call_metadata(keyring, "ExecuteOrder", request)
            answer = await exchange.ExecuteOrder(request, metadata=credential)
        async with exchange_server(keyring, store) as (exchange, second_venue, _):  # restarted: memory gone
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
