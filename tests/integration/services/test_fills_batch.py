"""The OMS's fills as a set write (:data:`services.store.order_sets.FILLS`) when one batch
holds more than one write of the same order, on SQLite and PostgreSQL.

Two fills of one order can share a group commit: the later one was computed from the
order as the earlier one leaves it (its expected sequence is the earlier one's result).
Both must be stored, in order; a later write that expected the same stored row as the
earlier one loses its compare-and-set, as it would one after the other.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

from services.domain import LiquiditySide, Order, OrderStatus
from services.domain.errors import StaleOrder
from services.domain.execution import ExecutionReport, Fill as VenueFill
from services.oms.fill_tracker import apply_to_order
from services.reliability.invariants import check_store
from services.store.order_sets import FILLS, Fill, chain

AT = dt.datetime(2026, 3, 4, 5, 6, 7, tzinfo=dt.timezone.utc)


def _report(order: Order, status: OrderStatus, quantity: str, seconds: int) -> ExecutionReport:
    return ExecutionReport(
        order_id=order.order_id, client_order_id=order.client_order_id, venue=order.venue, account=order.account,
        symbol=order.symbol, side=order.side, order_status=status, transact_time=AT + dt.timedelta(seconds=seconds),
        fill=VenueFill(trade_id=f"t-{uuid.uuid4().hex[:12]}", quantity=Decimal(quantity), price=Decimal("65000"),
                       commission=Decimal("0.01"), commission_asset="USDT", liquidity_side=LiquiditySide.TAKER))


def _fill(codec: Any, order: Order, report: ExecutionReport) -> tuple[Fill, Order]:
    """The write of ``report`` applied to ``order`` (left as it was), and the order after it
    as the writer holds it once stored (its events chained, no longer new)."""
    working = copy.deepcopy(order)
    working.new_events = []
    stored_sequence = working.last_sequence
    applied = apply_to_order(working, report)
    assert applied.trade is not None
    after = copy.deepcopy(working)
    _, after.last_event_hash = chain(codec, working)
    after.new_events = []
    return Fill(working, stored_sequence, [applied.trade]), after


def _violations(db: Any) -> list[Any]:
    """What verify-store finds (the chains, each fill once, quantities), but for the
    orders' missing token: they were walked to ACCEPTED by hand, not submitted."""
    report = check_store(db.store.engine, ledger=False)
    return [v for v in report.violations if v.kind != "SUBMITTED_UNAPPROVED"]


def test_two_fills_of_one_order_in_one_batch_are_both_stored_in_order(db, stored_order):
    order = stored_order(OrderStatus.ACCEPTED, quantity=Decimal("0.02"))
    order.new_events = []
    first, after_first = _fill(db.codec, order, _report(order, OrderStatus.PARTIALLY_FILLED, "0.01", 1))
    second, _ = _fill(db.codec, after_first, _report(order, OrderStatus.FILLED, "0.01", 2))

    async def scenario():
        outcomes = await db.write_many(FILLS, [first, second])
        stored = await db.read(lambda uow: (uow.orders.get(order.order_id), uow.orders.events(order.order_id),
                                            uow.trades.for_order(order.order_id)))
        return outcomes, stored

    outcomes, (stored, events, trades) = asyncio.run(scenario())

    assert [type(o) for o in outcomes] == [Order, Order], outcomes
    assert stored.status is OrderStatus.FILLED and stored.filled_quantity == Decimal("0.02")
    assert [e.to_status for e in events][-2:] == [OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED]
    assert len(trades) == 2
    assert _violations(db) == []


def test_two_fills_of_one_order_in_two_concurrent_writes_are_both_stored(db, stored_order):
    order = stored_order(OrderStatus.ACCEPTED, quantity=Decimal("0.02"))
    order.new_events = []
    first, after_first = _fill(db.codec, order, _report(order, OrderStatus.PARTIALLY_FILLED, "0.01", 1))
    second, _ = _fill(db.codec, after_first, _report(order, OrderStatus.FILLED, "0.01", 2))

    async def scenario():
        # Queued together: the writer usually takes both into one batch (either way, both stand).
        outcomes = await asyncio.gather(db.write_many(FILLS, [first]), db.write_many(FILLS, [second]))
        stored = await db.read(lambda uow: uow.orders.get(order.order_id))
        return outcomes, stored

    outcomes, stored = asyncio.run(scenario())

    assert [type(o) for (o,) in outcomes] == [Order, Order], outcomes
    assert stored.status is OrderStatus.FILLED and stored.filled_quantity == Decimal("0.02")
    assert _violations(db) == []


def test_a_second_fill_that_expected_the_same_stored_row_loses_its_compare_and_set(db, stored_order):
    order = stored_order(OrderStatus.ACCEPTED, quantity=Decimal("0.02"))
    order.new_events = []
    first, _ = _fill(db.codec, order, _report(order, OrderStatus.PARTIALLY_FILLED, "0.01", 1))
    rival, _ = _fill(db.codec, order, _report(order, OrderStatus.PARTIALLY_FILLED, "0.01", 2))

    async def scenario():
        outcomes = await db.write_many(FILLS, [first, rival])
        stored = await db.read(lambda uow: (uow.orders.get(order.order_id), uow.trades.for_order(order.order_id)))
        return outcomes, stored

    outcomes, (stored, trades) = asyncio.run(scenario())

    assert isinstance(outcomes[0], Order) and isinstance(outcomes[1], StaleOrder)
    assert stored.filled_quantity == Decimal("0.01") and len(trades) == 1
    assert _violations(db) == []
