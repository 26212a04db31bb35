"""The fills a closed order still owes, brought in by the reconciler when the report
stream never delivers them.

The race of test_fill_after_close, with the fill lost on its way: a paper venue fills
part of a resting sell, the OMS cancels it while the Exchange cannot answer QueryOrder,
so the cancel's answer (CANCELLED, 0.004 executed at the venue, nothing filled here)
closes the order owing 0.004; then the report stream drops the fill (an Exchange that
crashed before publishing it) or delivers it late. The reconciler asks the venue for the
order's fills and records them once, whichever of the two comes first; when the venue
cannot give them within the bound, a FILLS_OWED anomaly says so, once. Real stores,
SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal

import pytest

from services.domain import MarketType, utcnow
from services.oms.engine import OrderManagement
from services.oms.reconciler import Reconciler
from services.reliability import check_store
from services.risk.engine import RiskEngine
from svc_harness import (LIMITS, S, FakeExchange, anomalies, can_query, cannot_query, follow_until_drained,
                         long_then_resting_sell, statuses)

D = Decimal


@pytest.fixture
def risk(db, keyring) -> RiskEngine:
    return RiskEngine(db, keyring, LIMITS, flush_seconds=0)


async def closed_owing(risk, oms, exchange, make_order, *, published: bool):
    """The resting sell, filled 0.004 at the venue, then CANCELLED without the fill (the
    Exchange could not be asked for it): it owes 0.004."""
    sell = await long_then_resting_sell(risk, oms, exchange, make_order, published=published)
    cannot_query(exchange)
    cancelled = await oms.cancel(sell.order_id)
    assert (cancelled.status, cancelled.filled_quantity, cancelled.venue_executed_quantity) == (
        S.CANCELLED, D(0), D("0.004"))
    return cancelled


@pytest.mark.parametrize("stream", ["dropped", "late"])
def test_the_reconciler_brings_in_the_fill_the_stream_lost_once(db, store, keyring, risk, shallow_exchange,
                                                                  make_order, stream):
    exchange = shallow_exchange
    oms = OrderManagement(db, keyring, exchange, ttl_seconds=300, exchange_timeout=2.0)
    reconciler = Reconciler(db, keyring, exchange, fills_owed_seconds=0)

    async def scenario():
        cancelled = await closed_owing(risk, oms, exchange, make_order, published=stream == "late")
        owing_before = await db.read(lambda uow: [o.order_id for o in uow.orders.owing_fills()])
        can_query(exchange)  # the Exchange is back
        first = await reconciler.reconcile_once()
        await follow_until_drained(oms, exchange)  # "late": the stream's copy of the fill arrives now
        second = await reconciler.reconcile_once()
        await risk.sync()
        await risk.flush()
        return cancelled, owing_before, first, second, await oms.order_details(cancelled.order_id), await anomalies(db)

    cancelled, owing_before, first, second, (ended, events, trades), found = asyncio.run(scenario())

    assert owing_before == [cancelled.order_id]
    assert (first.owing, first.owed_in, first.fills_owed) == (1, 1, 0)
    assert second.owing == 0  # owes nothing any more: not asked again
    assert (ended.status, ended.filled_quantity, ended.average_fill_price) == (S.CANCELLED, D("0.004"), D("66000"))
    assert ended.venue_executed_quantity is None
    assert len(trades) == 1  # once, though the venue's answer and the stream both carried it
    assert statuses(events)[-3:] == [S.PENDING_CANCEL, S.CANCELLED, S.CANCELLED]
    assert (events[-1].reason, events[-1].payload["trade_id"]) == ("fill after close", trades[0].trade_id)
    assert found == []
    account = risk.book.accounts["acct-1"]
    assert account.positions[MarketType.FUTURES, "BTCUSDT"].quantity == 0  # the long closed by the late sell
    report = check_store(store.engine, require_ledger=True, require_terminal=True)
    assert report.violations == [] and report.ledger_pending == 0


@pytest.mark.parametrize("venue", ["unavailable", "restarted"])
def test_fills_the_venue_cannot_give_within_the_bound_are_a_fills_owed_anomaly_once(db, store, keyring, risk,
                                                                                    shallow_exchange, make_order,
                                                                                    venue):
    exchange = shallow_exchange
    oms = OrderManagement(db, keyring, exchange, ttl_seconds=300, exchange_timeout=2.0)
    # "unavailable": the Exchange does not answer QueryOrder; "restarted": a paper venue
    # that lost its memory answers that it does not know the order.
    asked = exchange if venue == "unavailable" else FakeExchange(keyring)
    clock = [utcnow()]
    reconciler = Reconciler(db, keyring, asked, fills_owed_seconds=120, clock=lambda: clock[0])

    async def scenario():
        cancelled = await closed_owing(risk, oms, exchange, make_order, published=False)
        within = await reconciler.reconcile_once()
        found_within = await anomalies(db)
        clock[0] += dt.timedelta(seconds=121)
        after = [await reconciler.reconcile_once(), await reconciler.reconcile_once()]
        listed = await db.read(lambda uow: uow.anomalies.list(order_id=cancelled.order_id))
        return cancelled, within, found_within, after, listed, await db.read(
            lambda uow: uow.orders.get(cancelled.order_id))

    cancelled, within, found_within, after, listed, current = asyncio.run(scenario())

    assert (within.owing, within.waiting, within.fills_owed) == (1, 1, 0) and found_within == []
    assert [(s.owing, s.fills_owed) for s in after] == [(1, 1), (1, 1)]  # still asked, said once
    (anomaly,) = listed
    assert anomaly.kind == "FILLS_OWED" and anomaly.order_id == cancelled.order_id
    assert "owes 0.004 BTCUSDT" in anomaly.detail
    why = "UNAVAILABLE" if venue == "unavailable" else "does not know the order"
    assert why in anomaly.detail
    assert anomaly.payload == {"venue_executed_quantity": "0.004", "filled_quantity": "0", "status": "CANCELLED"}
    assert (current.status, current.filled_quantity, current.venue_executed_quantity) == (S.CANCELLED, D(0),
                                                                                           D("0.004"))
    kinds = check_store(store.engine, require_terminal=True).kinds()
    assert kinds == {"FILLS_OWED": 1}


def test_fills_the_venue_gives_after_the_anomaly_are_still_recorded(db, store, keyring, risk, shallow_exchange,
                                                                     make_order):
    exchange = shallow_exchange
    oms = OrderManagement(db, keyring, exchange, ttl_seconds=300, exchange_timeout=2.0)
    reconciler = Reconciler(db, keyring, exchange, fills_owed_seconds=0)

    async def scenario():
        cancelled = await closed_owing(risk, oms, exchange, make_order, published=False)
        unanswered = await reconciler.reconcile_once()
        can_query(exchange)
        answered = await reconciler.reconcile_once()
        return cancelled, unanswered, answered, await oms.order_details(cancelled.order_id), await anomalies(db)

    cancelled, unanswered, answered, (ended, _, trades), found = asyncio.run(scenario())

    assert unanswered.fills_owed == 1 and answered.owed_in == 1
    assert found == ["FILLS_OWED"]  # what was said stays said
    assert (ended.filled_quantity, ended.venue_executed_quantity, len(trades)) == (D("0.004"), None, 1)
    assert check_store(store.engine, require_terminal=True).violations == []


def test_an_open_order_the_venue_ended_without_listing_all_its_fills_is_closed_owing_them(db, store, keyring, risk,
                                                                                           shallow_exchange,
                                                                                           make_order):
    # The venue filled 0.004 of the resting sell, then cancelled the rest; the OMS heard of
    # neither, and the venue's answer to QueryOrder does not list the fill yet (its trades
    # lag its order status).
    exchange = shallow_exchange
    oms = OrderManagement(db, keyring, exchange, ttl_seconds=300, exchange_timeout=2.0)
    reconciler = Reconciler(db, keyring, exchange, fills_owed_seconds=120)
    answers = exchange.QueryOrder

    async def without_fills(request, timeout=None, metadata=None, wait_for_ready=None):
        response = await answers(request, timeout=timeout, metadata=metadata, wait_for_ready=wait_for_ready)
        del response.fills[:]
        return response

    async def scenario():
        sell = await long_then_resting_sell(risk, oms, exchange, make_order, published=False)
        await exchange.engine.cancel(sell.order_id)  # at the venue; no report reaches the OMS
        exchange.QueryOrder = without_fills
        first = await reconciler.reconcile_once()
        closed = await db.read(lambda uow: uow.orders.get(sell.order_id))
        can_query(exchange)  # the venue now lists the fill
        second = await reconciler.reconcile_once()
        await risk.sync()
        return first, closed, second, await oms.order_details(sell.order_id), set(risk.book.accounts["acct-1"].working)

    first, closed, second, (ended, events, trades), working = asyncio.run(scenario())

    assert first.resolved == 1
    assert (closed.status, closed.filled_quantity, closed.venue_executed_quantity) == (S.CANCELLED, D(0), D("0.004"))
    assert (second.owing, second.owed_in) == (1, 1)
    assert (ended.status, ended.filled_quantity, ended.venue_executed_quantity) == (S.CANCELLED, D("0.004"), None)
    assert len(trades) == 1 and statuses(events)[-3:] == [S.ACCEPTED, S.CANCELLED, S.CANCELLED]
    assert ended.order_id not in working  # Risk no longer counts the closed order as working


def test_orders_owing_fills_beyond_a_page_are_each_asked_about_at_every_pass(db, store, keyring, make_order):
    # A page (500) of closed orders owing fills that the venue cannot give (a paper venue
    # that restarted), changed before a newer one that owes fills too.
    page = 500
    now = utcnow()
    owing = []
    with store.uow() as uow:
        for index in range(page + 1):
            order = make_order(venue_executed_quantity=D("0.004"))
            at = now - dt.timedelta(minutes=10) + dt.timedelta(milliseconds=index)
            order.record_creation(at)
            for step in (S.APPROVED, S.SUBMITTED, S.ACCEPTED, S.CANCELLED):
                order.transition(step, at=at)
            uow.orders.add(order)
            owing.append(order)
        uow.commit()
    newest = owing[-1]
    reconciler = Reconciler(db, keyring, FakeExchange(keyring), fills_owed_seconds=120, clock=lambda: now)

    summary = asyncio.run(reconciler.reconcile_once())
    listed = asyncio.run(db.read(lambda uow: uow.anomalies.list(order_id=newest.order_id)))

    assert (summary.owing, summary.fills_owed) == (page + 1, page + 1)
    assert [a.kind for a in listed] == ["FILLS_OWED"]
