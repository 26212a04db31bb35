"""Statements per order on the order path, counted by an engine event listener.

Risk, the OMS and the Exchange run as gRPC servers in the test's process
(:mod:`inprocess_stack`) with their background loops (Risk following the OMS's events
and writing the ledger, the OMS's report stream and expiry sweep), on SQLite and on
PostgreSQL. Every statement the store runs while the orders go through counts: the
decisions, the claims, the fills and whatever the loops ran meanwhile, until Risk's
book has every fill and the ledger is written.

The bounds are the issue's: at most 8 statements per order one order at a time, at
most 0.2 per order in a batch of 1,000 (ValidateOrders, then SubmitOrders), for Risk and
the OMS. The Exchange's durable record of each execution (``exchange_executions``,
written before the venue is called, so an order is never executed twice whatever a
restart forgot) comes on top and is counted apart: one statement per order one at a
time (its own process, its own commit: nothing to share it with), one per ExecuteOrders
call of up to 1,000 orders in a batch.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import uuid
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import event

from inprocess_stack import inprocess_stack
from svc_harness import LIMITS, MARKET_PRICE
from tessera.common.v1 import types_pb2 as pb
from tessera.oms.v1 import oms_pb2
from tessera.risk.v1 import risk_pb2

SINGLE_BOUND = 8
BATCH_BOUND = 0.2
EXCHANGE_RECORD = "INSERT INTO exchange_executions"
UNLIMITED = dataclasses.replace(LIMITS, max_open_orders=None, order_rate_limit=None)


def _intent(run: str, index: int) -> pb.OrderIntent:
    return pb.OrderIntent(account=f"stmt-{run}-{index % 8}", venue="aster", market_type=pb.MARKET_TYPE_FUTURES,
                          symbol="BTCUSDT", side=pb.SIDE_BUY if index // 8 % 2 == 0 else pb.SIDE_SELL,
                          order_type=pb.ORDER_TYPE_MARKET, quantity="0.01", time_in_force=pb.TIME_IN_FORCE_GTC)


class Counter:
    def __init__(self, engine: Any) -> None:
        self.by_kind: collections.Counter[str] = collections.Counter()
        event.listen(engine, "before_cursor_execute", self)

    def __call__(self, conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        self.by_kind[" ".join(statement.split()[:3])[:48]] += 1

    def reset(self) -> None:
        self.by_kind.clear()

    @property
    def total(self) -> int:
        return sum(self.by_kind.values())


async def _settled(stack: Any) -> None:
    """Until Risk's book has followed every order to its end and owes the store no ledger."""
    book = stack.risk_engine.book
    working = -1
    for _ in range(500):
        working = sum(len(account.working) for account in book.accounts.values())
        if working == 0 and book.pending_entries == 0:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"Risk's book still has {working} working orders, {book.pending_entries} ledger entries")


def _run(store: Any, keyring: Any, scenario: Any) -> Any:
    async def main() -> Any:
        async with inprocess_stack(store, keyring, UNLIMITED, {"BTCUSDT": MARKET_PRICE}) as stack:
            return await scenario(stack, Counter(store.engine))
    return asyncio.run(main())


def test_one_order_at_a_time_costs_at_most_8_statements_each_and_the_exchange_records_it_in_one(
        store, keyring) -> None:
    run = uuid.uuid4().hex[:8]

    async def scenario(stack: Any, counter: Counter) -> tuple[float, Any]:
        async def one(index: int) -> None:
            decision = await stack.risk.ValidateOrder(risk_pb2.ValidateOrderRequest(order=_intent(run, index)))
            assert decision.order.status == pb.ORDER_STATUS_APPROVED, decision.violations
            answer = await stack.oms.SubmitOrder(oms_pb2.SubmitOrderRequest(order=decision.order,
                                                                            risk_token=decision.risk_token))
            assert answer.order.status == pb.ORDER_STATUS_FILLED

        for index in range(10):  # warm: the book loaded, statements prepared
            await one(index)
        await _settled(stack)
        counter.reset()
        orders = 200
        for index in range(orders):
            await one(10 + index)
        await _settled(stack)
        return counter.total, dict(counter.by_kind)

    total, kinds = _run(store, keyring, scenario)
    orders = 200
    assert kinds.get(EXCHANGE_RECORD) == orders, kinds
    assert (total - kinds[EXCHANGE_RECORD]) / orders <= SINGLE_BOUND, kinds


def test_a_batch_of_1000_costs_at_most_0_2_statements_per_order_and_the_exchange_records_it_in_one(
        store, keyring) -> None:
    run = uuid.uuid4().hex[:8]

    async def scenario(stack: Any, counter: Counter) -> tuple[float, Any]:
        async def batch(start: int, size: int) -> None:
            decisions = await stack.risk.ValidateOrders(risk_pb2.ValidateOrdersRequest(
                orders=[_intent(run, start + i) for i in range(size)]))
            assert all(r.order.status == pb.ORDER_STATUS_APPROVED for r in decisions.results)
            answers = await stack.oms.SubmitOrders(oms_pb2.SubmitOrdersRequest(orders=[
                oms_pb2.SubmitOrderRequest(order=r.order, risk_token=r.risk_token) for r in decisions.results]))
            assert all(r.order.status == pb.ORDER_STATUS_FILLED for r in answers.results)

        await batch(0, 10)
        await _settled(stack)
        counter.reset()
        await batch(10, 1000)
        await _settled(stack)
        return counter.total, dict(counter.by_kind)

    total, kinds = _run(store, keyring, scenario)
    assert kinds.get(EXCHANGE_RECORD) == 1, kinds
    assert (total - kinds[EXCHANGE_RECORD]) / 1000 <= BATCH_BOUND, kinds
