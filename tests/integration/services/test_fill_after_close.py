"""A fill the venue made before a cancel took effect, reported after the cancel's answer:
the OMS records it in full on the closed order, Risk's book and ledger apply it, and
``tessera verify-store`` stays clean. The race, deterministic: a paper venue fills a
resting order and puts the fill on its report stream, the OMS cancels the order before it
reads that stream, and the cancel's answer (CANCELLED, with the quantity the venue
executed) reaches the OMS first. Real stores, SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from services.domain import MarketType, Side
from services.oms.engine import OrderManagement
from services.reliability import check_store
from services.risk.engine import RiskEngine
from svc_harness import (LIMITS, S, anomalies, cannot_query, follow_until_drained, long_then_resting_sell,
                         statuses)

D = Decimal


@pytest.fixture
def risk(db, keyring) -> RiskEngine:
    return RiskEngine(db, keyring, LIMITS, flush_seconds=0)


def test_a_fill_reported_after_the_cancels_answer_is_recorded_on_the_cancelled_order_and_in_the_ledger(
    db, store, keyring, risk, shallow_exchange, make_order
):
    exchange = shallow_exchange  # a resting 0.01 fills in part
    oms = OrderManagement(db, keyring, exchange, ttl_seconds=300, exchange_timeout=2.0)
    cannot_query(exchange)

    async def scenario():
        sell = await long_then_resting_sell(risk, oms, exchange, make_order)
        cancelled = await oms.cancel(sell.order_id)  # the answer: CANCELLED, 0.004 executed at the venue
        await risk.sync()
        working_after_cancel = dict(risk.book.accounts["acct-1"].working)
        await follow_until_drained(oms, exchange)  # then the stream's fill arrives
        await follow_until_drained(oms, exchange)  # and again, after a reconnect: nothing twice
        await risk.sync()
        await risk.flush()
        return cancelled, working_after_cancel, await oms.order_details(sell.order_id), await anomalies(db)

    cancelled, working_after_cancel, (ended, events, trades), found = asyncio.run(scenario())

    # The cancel's answer: closed, the venue's executed quantity on its event, the fill not yet in.
    assert (cancelled.status, cancelled.filled_quantity) == (S.CANCELLED, D(0))
    assert ended.order_id not in working_after_cancel  # Risk no longer counts it as working
    close = next(e for e in events if e.to_status is S.CANCELLED and e.from_status is S.PENDING_CANCEL)
    assert close.payload == {"venue_executed_quantity": "0.004"}
    # The fill, once it arrived: recorded in full, the order still CANCELLED.
    assert (ended.status, ended.filled_quantity, ended.average_fill_price) == (S.CANCELLED, D("0.004"), D("66000"))
    assert [(t.quantity, t.price, t.side) for t in trades] == [(D("0.004"), D("66000"), Side.SELL)]
    assert statuses(events)[-3:] == [S.PENDING_CANCEL, S.CANCELLED, S.CANCELLED]
    late = events[-1]
    assert (late.from_status, late.reason, late.payload["trade_id"]) == (S.CANCELLED, "fill after close",
                                                                         trades[0].trade_id)
    assert ended.last_sequence == late.sequence
    assert found == []  # not an anomaly
    # Risk's book and the ledger: the long closed by the late sell, its profit realised.
    account = risk.book.accounts["acct-1"]
    assert account.positions[MarketType.FUTURES, "BTCUSDT"].quantity == 0
    assert ended.order_id not in account.working
    with store.uow(read_only=True) as uow:
        entries = {e.trade_id: e for e in uow.positions.entries("acct-1")}
        held = uow.positions.get("acct-1", "BTCUSDT")
    late_entry = entries[trades[0].trade_id]
    assert (late_entry.quantity, late_entry.realised_pnl) == (D("0.004"), D("4"))  # 0.004 x (66000 - 65000)
    assert (held.quantity, held.realised_pnl) == (0, D("4"))
    assert len(entries) == 2 and account.realised_today == sum(e.realised_pnl - e.commission for e in entries.values())
    report = check_store(store.engine, require_ledger=True, require_terminal=True)
    assert report.violations == [] and report.ledger_pending == 0


def test_a_cancel_whose_answer_says_more_was_executed_records_the_venues_fills_before_the_close(
    db, store, keyring, risk, shallow_exchange, make_order
):
    exchange = shallow_exchange  # a resting 0.01 fills in part
    oms = OrderManagement(db, keyring, exchange, ttl_seconds=300, exchange_timeout=2.0)

    async def scenario():
        sell = await long_then_resting_sell(risk, oms, exchange, make_order)
        cancelled = await oms.cancel(sell.order_id)  # the OMS asks the venue for the fills it owes
        await follow_until_drained(oms, exchange)  # the stream's copy of the fill: already recorded
        await risk.sync()
        await risk.flush()
        return cancelled, await oms.order_details(sell.order_id), await anomalies(db)

    cancelled, (ended, events, trades), found = asyncio.run(scenario())

    assert (cancelled.status, cancelled.filled_quantity) == (S.CANCELLED, D("0.004"))  # the answer is complete
    assert statuses(events)[-3:] == [S.PENDING_CANCEL, S.PARTIALLY_FILLED, S.CANCELLED]
    assert events[-1].payload == {} and ended.version == cancelled.version  # nothing arrived after the close
    assert len(trades) == 1 and found == []
    assert check_store(store.engine, require_ledger=True, require_terminal=True).violations == []
