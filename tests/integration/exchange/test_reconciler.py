"""The OMS reconciler on a real store (SQLite) with a scripted Exchange answering QueryOrder."""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal

import pytest

import core_ext
from services.common import convert
from services.store.database import Database
from services.domain import LiquiditySide, OrderStatus, utcnow
from services.domain.execution import ExecutionReport, Fill
from services.oms.reconciler import Reconciler
from tessera.common.v1 import types_pb2 as common_pb
from tessera.exchange.v1 import exchange_pb2

from venue_sim_support import build_order

KEYRING = core_ext.KeyRing("rec1", b"reconciler-test-secret-0123456789abcdef")
PATHS = {
    OrderStatus.SUBMITTED: (OrderStatus.APPROVED, OrderStatus.SUBMITTED),
    OrderStatus.ACCEPTED: (OrderStatus.APPROVED, OrderStatus.SUBMITTED, OrderStatus.ACCEPTED),
}


class ScriptedExchange:
    def __init__(self) -> None:
        self.answers: dict[str, exchange_pb2.QueryOrderResponse] = {}
        self.asked: list[str] = []

    async def QueryOrder(self, request, timeout=None, metadata=None):
        self.asked.append(request.client_order_id)
        return self.answers.get(request.client_order_id, exchange_pb2.QueryOrderResponse(found=False,
                                                                                         mode=common_pb.EXECUTION_MODE_LIVE))


@pytest.fixture
def db(tmp_path):
    database = Database.from_url(f"sqlite:///{tmp_path / 'rec.db'}")
    yield database
    database.close()


def stored(db, status, *, age_seconds=60, **overrides):
    order = build_order(**overrides)
    order.record_creation()
    at = utcnow() - dt.timedelta(seconds=age_seconds)
    for step in PATHS[status]:
        order.transition(step, at=at)
    db.run_sync(lambda uow: uow.orders.add(order))
    return order


def fill_report(order, trade_id, quantity, price="65000"):
    return convert.report_to_proto(ExecutionReport(
        order_id=order.order_id, client_order_id=order.client_order_id, venue=order.venue, account=order.account,
        symbol=order.symbol, side=order.side, order_status=OrderStatus.PARTIALLY_FILLED, transact_time=utcnow(),
        fill=Fill(trade_id, Decimal(quantity), Decimal(price), Decimal("0.1"), "USDT", LiquiditySide.TAKER),
    ))


def reconcile(db, exchange, grace=30.0):
    return asyncio.run(Reconciler(db, KEYRING, exchange, grace_seconds=grace).reconcile_once())


def test_a_submitted_order_unknown_to_the_venue_waits_for_the_grace_period_then_is_rejected(db):
    young = stored(db, OrderStatus.SUBMITTED, age_seconds=1)
    old = stored(db, OrderStatus.SUBMITTED, age_seconds=60)

    summary = reconcile(db, ScriptedExchange())

    assert (summary.waiting, summary.not_at_venue) == (1, 1)
    assert db.run_sync(lambda uow: uow.orders.get(young.order_id)).status is OrderStatus.SUBMITTED
    rejected = db.run_sync(lambda uow: uow.orders.get(old.order_id))
    assert rejected.status is OrderStatus.REJECTED and rejected.reject_reasons == ["NOT_AT_VENUE"]


def test_venue_fills_and_end_are_applied_once_however_often_it_runs(db):
    order = stored(db, OrderStatus.SUBMITTED, quantity=Decimal("1"))
    exchange = ScriptedExchange()
    exchange.answers[order.client_order_id] = exchange_pb2.QueryOrderResponse(
        found=True, venue_status=common_pb.ORDER_STATUS_CANCELLED, executed_quantity="0.4", original_quantity="1",
        remote_order_id="77", fills=[fill_report(order, "t1", "0.4")], mode=common_pb.EXECUTION_MODE_LIVE,
    )

    reconcile(db, exchange)
    reconcile(db, exchange)

    final = db.run_sync(lambda uow: uow.orders.get(order.order_id))
    assert final.status is OrderStatus.CANCELLED and final.filled_quantity == Decimal("0.4")
    assert [t.trade_id for t in db.run_sync(lambda uow: uow.trades.for_order(order.order_id))] == ["t1"]


def test_more_executed_at_the_venue_than_ordered_quarantines_the_symbol_and_invents_nothing(db):
    order = stored(db, OrderStatus.ACCEPTED, quantity=Decimal("1"), symbol="ETHUSDT")
    exchange = ScriptedExchange()
    exchange.answers[order.client_order_id] = exchange_pb2.QueryOrderResponse(
        found=True, venue_status=common_pb.ORDER_STATUS_FILLED, executed_quantity="1.5",
        fills=[fill_report(order, "t9", "1.5")], mode=common_pb.EXECUTION_MODE_LIVE,
    )

    first = reconcile(db, exchange)
    second = reconcile(db, exchange)

    def read(uow):
        return (uow.orders.get(order.order_id), uow.orders.events(order.order_id), uow.trades.for_order(order.order_id),
                uow.trading_state.get("symbol:ETHUSDT"), uow.anomalies.list(order_id=order.order_id))

    current, events, trades, state, anomalies = db.run_sync(read)
    assert first.quarantined == 1 and second.quarantined == 1
    assert current.status is OrderStatus.ACCEPTED and trades == []
    assert state.state.value == "HALTED" and state.operator == "reconciler"
    assert [a.kind for a in anomalies] == ["RECONCILE_DISCREPANCY"]  # said once
    assert events[-1].from_status is events[-1].to_status is OrderStatus.ACCEPTED
    assert "ETHUSDT quarantined" in events[-1].reason


def test_an_acknowledged_order_a_simulated_venue_lost_expires(db):
    order = stored(db, OrderStatus.ACCEPTED)
    exchange = ScriptedExchange()
    exchange.answers[order.client_order_id] = exchange_pb2.QueryOrderResponse(
        found=False, mode=common_pb.EXECUTION_MODE_PAPER
    )

    reconcile(db, exchange)

    assert db.run_sync(lambda uow: uow.orders.get(order.order_id)).status is OrderStatus.EXPIRED


def closed_owing(db, executed, *, closed_seconds_ago=60):
    """An ACCEPTED order of 1 the venue cancelled saying it executed ``executed``, none of
    it recorded here: it owes ``executed``."""
    order = stored(db, OrderStatus.ACCEPTED, quantity=Decimal("1"))
    at = utcnow() - dt.timedelta(seconds=closed_seconds_ago)

    def close(uow):
        current = uow.orders.get(order.order_id)
        current.close_at_venue(OrderStatus.CANCELLED, reason="venue: cancelled", at=at, venue_executed=Decimal(executed))
        uow.orders.save(current)

    db.run_sync(close)
    return order


def test_fewer_fills_than_the_venue_executed_are_recorded_and_the_rest_stays_owed_then_a_fills_owed_anomaly(db):
    order = closed_owing(db, "0.6")
    exchange = ScriptedExchange()
    exchange.answers[order.client_order_id] = exchange_pb2.QueryOrderResponse(
        found=True, venue_status=common_pb.ORDER_STATUS_CANCELLED, executed_quantity="0.6", original_quantity="1",
        fills=[fill_report(order, "t1", "0.4")], mode=common_pb.EXECUTION_MODE_LIVE,
    )

    summary = asyncio.run(Reconciler(db, KEYRING, exchange, fills_owed_seconds=0).reconcile_once())

    current = db.run_sync(lambda uow: uow.orders.get(order.order_id))
    (anomaly,) = db.run_sync(lambda uow: uow.anomalies.list(order_id=order.order_id))
    assert (summary.owing, summary.fills_owed) == (1, 1)
    assert (current.status, current.filled_quantity, current.fills_owed) == (OrderStatus.CANCELLED, Decimal("0.4"),
                                                                             Decimal("0.2"))
    assert anomaly.kind == "FILLS_OWED" and "the venue gave 1 fill(s) of the 0.6 it executed" in anomaly.detail


def test_a_closed_order_owing_fills_beyond_the_horizon_is_no_longer_asked_about(db):
    old = closed_owing(db, "0.5", closed_seconds_ago=7200)
    recent = closed_owing(db, "0.5", closed_seconds_ago=10)
    exchange = ScriptedExchange()

    summary = asyncio.run(Reconciler(db, KEYRING, exchange, fills_owed_horizon_seconds=3600).reconcile_once())

    assert exchange.asked == [recent.client_order_id] and summary.owing == 1
    owing = db.run_sync(lambda uow: (uow.orders.count_owing_fills(), uow.orders.owing_fills()))
    assert owing[0] == 2 and [o.order_id for o in owing[1]] == [old.order_id, recent.order_id]  # still counted
def test_an_order_the_venue_sized_is_reconciled_filled_on_the_venues_word_after_its_fills(db):
    from services.domain import OrderType, Side

    order = stored(db, OrderStatus.ACCEPTED, order_type=OrderType.TAKE_PROFIT_MARKET, side=Side.SELL, price=None,
                   stop_price=Decimal("66000"), quantity=None, close_position=True)
    exchange = ScriptedExchange()
    exchange.answers[order.client_order_id] = exchange_pb2.QueryOrderResponse(
        found=True, venue_status=common_pb.ORDER_STATUS_FILLED, executed_quantity="0.7", original_quantity="0",
        remote_order_id="78", fills=[fill_report(order, "t1", "0.5"), fill_report(order, "t2", "0.2")],
        mode=common_pb.EXECUTION_MODE_LIVE,
    )

    reconcile(db, exchange)
    reconcile(db, exchange)

    done = db.run_sync(lambda uow: uow.orders.get(order.order_id))
    assert (done.status, done.filled_quantity, done.quantity) == (OrderStatus.FILLED, Decimal("0.7"), None)
    trades = db.run_sync(lambda uow: uow.trades.for_order(order.order_id))
    assert sorted(t.trade_id for t in trades) == ["t1", "t2"]
    anomalies = db.run_sync(lambda uow: uow.anomalies.list(order_id=order.order_id))
    assert anomalies == []
