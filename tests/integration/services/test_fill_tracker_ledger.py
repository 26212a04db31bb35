"""The ledger follows the stored fills: the Risk replica that owns the account applies
each recorded trade once, nothing the fill tracker refuses, and writes the entries and
positions to the store; a replica that stopped before writing them applies them when it
starts again."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

from svc_harness import LIMITS

from services.domain import LiquiditySide, MarketType, Order, OrderStatus, Side, utcnow
from services.domain.execution import ExecutionReport, Fill
from services.oms.fill_tracker import apply_report
from services.risk.engine import RiskEngine
from services.store import Store

S = OrderStatus
FUTURES = MarketType.FUTURES
D = Decimal


def report(order: Order, status: OrderStatus, quantity: str, price: str, trade_id: str | None = None) -> ExecutionReport:
    return ExecutionReport(
        order_id=order.order_id, client_order_id=order.client_order_id, venue=order.venue, account=order.account,
        symbol=order.symbol, side=order.side, order_status=status, transact_time=utcnow(),
        fill=Fill(trade_id or f"t-{uuid.uuid4().hex[:12]}", D(quantity), D(price), D("0.02"), "USDT",
                  LiquiditySide.TAKER),
    )


def apply(store: Store, *reports: ExecutionReport) -> None:
    for item in reports:
        with store.uow() as uow:
            apply_report(uow, item)
            uow.commit()


def position(store: Store, account: str = "acct-1", symbol: str = "BTCUSDT"):
    with store.uow(read_only=True) as uow:
        return uow.positions.get(account, symbol), uow.positions.entries(account)


def follow(risk: RiskEngine) -> None:
    asyncio.run(risk.sync())


def test_each_recorded_fill_moves_the_position_once_risk_follows_it(db, store, keyring, stored_order):
    order = stored_order(S.ACCEPTED, quantity=D("1"))
    risk = RiskEngine(db, keyring, LIMITS, flush_seconds=0)
    follow(risk)

    apply(store, report(order, S.PARTIALLY_FILLED, "0.4", "65000"), report(order, S.FILLED, "0.6", "65500"))
    follow(risk)

    held, entries = position(store)
    with store.uow(read_only=True) as uow:
        trades = uow.trades.for_order(order.order_id)
    assert (held.quantity, held.cost_basis, held.average_entry_price) == (D("1"), D("65300"), D("65300"))
    assert held.commission == D("0.04")
    assert sorted(e.trade_id for e in entries) == sorted(t.trade_id for t in trades)
    assert risk.book.accounts["acct-1"].positions[FUTURES, "BTCUSDT"].quantity == D("1")


def test_a_duplicate_report_does_not_apply_its_fill_twice(db, store, keyring, stored_order):
    order = stored_order(S.ACCEPTED, quantity=D("1"), side=Side.SELL)
    duplicate = report(order, S.PARTIALLY_FILLED, "0.4", "65000", trade_id="venue-trade-9")
    risk = RiskEngine(db, keyring, LIMITS, flush_seconds=0)
    follow(risk)

    apply(store, duplicate, duplicate)
    follow(risk)
    follow(risk)

    held, entries = position(store)
    assert held.quantity == D("-0.4")
    assert [e.trade_id for e in entries] == ["venue-trade-9"]


def test_a_refused_fill_leaves_the_ledger_alone(db, store, keyring, stored_order):
    order = stored_order(S.ACCEPTED, quantity=D("1"))
    risk = RiskEngine(db, keyring, LIMITS, flush_seconds=0)
    follow(risk)

    apply(store, report(order, S.FILLED, "1.5", "65000"))  # an overfill: recorded as an anomaly
    follow(risk)

    held, entries = position(store)
    assert (held.quantity, held.version, entries) == (0, 0, [])


def test_fills_a_stopped_replica_never_wrote_are_applied_when_it_starts(db, store, keyring, stored_order):
    order = stored_order(S.ACCEPTED, quantity=D("1"))
    apply(store, report(order, S.PARTIALLY_FILLED, "0.25", "64000"), report(order, S.PARTIALLY_FILLED, "0.25", "66000"))

    started = RiskEngine(db, keyring, LIMITS, flush_seconds=0)  # no replica ran while the fills were stored
    follow(started)
    again = RiskEngine(db, keyring, LIMITS, flush_seconds=0)  # and one more start applies nothing twice
    follow(again)

    held, entries = position(store)
    assert (held.quantity, held.average_entry_price) == (D("0.5"), D("65000"))
    assert len(entries) == 2
    assert again.book.accounts["acct-1"].positions[FUTURES, "BTCUSDT"].quantity == D("0.5")


def test_a_fill_reported_after_the_order_was_cancelled_moves_the_position_once_risk_follows_it(
    db, store, keyring, stored_order
):
    order = stored_order(S.ACCEPTED, quantity=D("1"))
    risk = RiskEngine(db, keyring, LIMITS, flush_seconds=0)
    apply(store, report(order, S.PARTIALLY_FILLED, "0.4", "65000"))
    cancelled = report(order, S.CANCELLED, "0", "0")
    cancelled.fill, cancelled.cumulative_quantity = None, D("0.6")  # the venue executed 0.2 more
    apply(store, cancelled)
    follow(risk)
    assert risk.book.accounts["acct-1"].positions[FUTURES, "BTCUSDT"].quantity == D("0.4")

    apply(store, report(order, S.PARTIALLY_FILLED, "0.2", "66500", trade_id="late"))  # the fill, after the close
    follow(risk)
    restarted = RiskEngine(db, keyring, LIMITS, flush_seconds=0)  # a replica starting now applies nothing twice
    follow(restarted)

    held, entries = position(store)
    with store.uow(read_only=True) as uow:
        stored = uow.orders.get(order.order_id)
    assert (stored.status, stored.filled_quantity) == (S.CANCELLED, D("0.6"))
    assert (held.quantity, held.cost_basis, held.average_entry_price) == (D("0.6"), D("39300"), D("65500"))
    assert "late" in {e.trade_id for e in entries} and len(entries) == 2
    for replica in (risk, restarted):
        assert replica.book.accounts["acct-1"].positions[FUTURES, "BTCUSDT"].quantity == D("0.6")


def test_a_fill_whose_decimals_print_with_an_exponent_moves_the_position_once_risk_follows_it(
    db, store, keyring, stored_order
):
    """``str(Decimal)`` writes an exponent for small numbers (``0.00000000`` is ``0E-8``,
    ``0.00000005`` is ``5E-8``): a venue's zero or tiny fee, a tiny quantity. Such a fill
    still moves Risk's book and ledger at once, not only when a replica next starts."""
    order = stored_order(S.ACCEPTED, quantity=D("0.0000003"))
    risk = RiskEngine(db, keyring, LIMITS, flush_seconds=0)
    follow(risk)

    zero_fee, tiny = report(order, S.PARTIALLY_FILLED, "0.0000001", "65000"), report(order, S.FILLED, "0.0000002",
                                                                                    "65000")
    zero_fee.fill.commission, zero_fee.fill.commission_asset = D("0.00000000"), "BNB"
    tiny.fill.commission, tiny.fill.commission_asset = D("0.00000005"), "BNB"
    apply(store, zero_fee, tiny)
    follow(risk)

    held, entries = position(store)
    in_book = risk.book.accounts["acct-1"].positions[FUTURES, "BTCUSDT"]
    assert (in_book.quantity, dict(in_book.fees)) == (D("0.0000003"), {"BNB": D("0.00000005")})
    assert (held.quantity, held.cost_basis, dict(held.fees)) == (D("0.0000003"), D("0.0195"), {"BNB": D("0.00000005")})
    assert len(entries) == 2
