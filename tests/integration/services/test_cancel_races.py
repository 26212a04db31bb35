"""Cancels outside the happy path, through the Risk and OMS engines on a real store, the
Exchange a paper engine: a cancel sent again after its answer was lost, two cancels of one
order at once, a cancel that meets an order the venue already filled, the expiry sweep's
cancel of a GTD order the venue filled. A refused cancel says only that the venue no
longer works the order: what the venue did with it decides where it ends."""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal

import pytest

import grpc

from fakes import FakeClock, HeldPaperVenue
from services.domain import TimeInForce, utcnow
from services.domain.errors import VenueUnavailable
from services.exchange.engine import ExchangeEngine
from services.exchange.venue import OrderRef, make_report
from services.oms.engine import OrderManagement
from services.risk.engine import RiskEngine
from svc_harness import (LIMITS, MARKET_PRICE, S, FakeExchange, answer_lost, answers_arrive, approved, as_sent,
                         details, follow_until_drained, rpc_error, statuses, venue_fills, working)

BELOW_MARKET = Decimal("60000")  # a BUY limit here rests at the paper venue (market 65000)


def resting(make_order, **fields):
    return make_order(price=BELOW_MARKET, **fields)


def test_a_cancel_sent_again_after_its_answer_was_lost_ends_the_order_cancelled_as_the_venue_has_it(
    risk, oms, exchange, make_order
):
    async def scenario():
        order = await working(risk, oms, resting(make_order))
        answer_lost(exchange, "CancelOrder")
        with pytest.raises(VenueUnavailable):  # cancelled at the venue; the OMS did not hear
            await oms.cancel(order.order_id)
        answers_arrive(exchange, "CancelOrder")
        again = await oms.cancel(order.order_id)  # the venue no longer has the order open
        return again, await details(oms, order.order_id)

    again, (stored, events, trades) = asyncio.run(scenario())

    assert again.status is S.CANCELLED and stored.status is S.CANCELLED
    assert statuses(events)[-3:] == [S.ACCEPTED, S.PENDING_CANCEL, S.CANCELLED]
    assert len(exchange.cancel_requests) == 2 and trades == []


def test_of_two_cancels_of_one_order_at_once_the_one_the_venue_refuses_answers_it_cancelled(
    risk, oms, exchange, make_order
):
    carried_out = exchange.CancelOrder
    at_venue, answer = asyncio.Event(), asyncio.Event()

    async def first_answer_late(request, timeout=None, metadata=None, wait_for_ready=None):
        # The first cancel takes effect at the venue; its answer reaches the OMS only after
        # the second cancel's refusal did.
        response = await carried_out(request, timeout=timeout, metadata=metadata, wait_for_ready=wait_for_ready)
        exchange.__dict__.pop("CancelOrder")
        at_venue.set()
        await answer.wait()
        return response

    async def scenario():
        order = await working(risk, oms, resting(make_order))
        exchange.CancelOrder = first_answer_late
        first = asyncio.ensure_future(oms.cancel(order.order_id))
        await at_venue.wait()
        second = await oms.cancel(order.order_id)  # the venue: no open order
        answer.set()
        return await first, second, await details(oms, order.order_id)

    first, second, (stored, events, _) = asyncio.run(scenario())

    assert (first.status, second.status, stored.status) == (S.CANCELLED, S.CANCELLED, S.CANCELLED)
    assert statuses(events)[-3:] == [S.ACCEPTED, S.PENDING_CANCEL, S.CANCELLED]  # never working again


def test_a_cancel_the_venue_refuses_because_it_filled_the_order_records_the_fill_and_answers_it_filled(
    risk, oms, exchange, make_order
):
    async def scenario():
        order = await working(risk, oms, resting(make_order))
        await venue_fills(exchange, Decimal("59000"), published=False)  # filled; the stream has not told the OMS
        answer = await oms.cancel(order.order_id)
        return answer, await details(oms, order.order_id)

    answer, (stored, events, trades) = asyncio.run(scenario())

    assert answer.status is S.FILLED and stored.status is S.FILLED
    assert stored.filled_quantity == Decimal("0.01") and len(trades) == 1
    assert statuses(events)[-3:] == [S.ACCEPTED, S.PENDING_CANCEL, S.FILLED]


def test_the_expiry_sweep_records_a_gtd_order_the_venue_filled_before_its_cancel_as_filled_not_expired(
    db, keyring, exchange, make_order
):
    now = utcnow()
    expire_at = now + dt.timedelta(seconds=60)
    risk = RiskEngine(db, keyring, LIMITS, clock=FakeClock(now).now)
    oms = OrderManagement(db, keyring, exchange, ttl_seconds=300, exchange_timeout=2.0, clock=FakeClock(now).now)

    async def scenario():
        decision = await approved(risk, resting(make_order, time_in_force=TimeInForce.GTD, expire_time=expire_at))
        await oms.submit(as_sent(decision.order), decision.token)
        await venue_fills(exchange, Decimal("59000"), published=False)  # filled just before its time
        swept = await oms.expire_due(expire_at)  # the sweep's cancel: the venue has no open order
        return swept, await details(oms, decision.order.order_id)

    swept, (stored, events, trades) = asyncio.run(scenario())

    assert swept == []  # nothing expired
    assert stored.status is S.FILLED and len(trades) == 1
    assert statuses(events)[-2:] == [S.ACCEPTED, S.FILLED]
    assert len(exchange.cancel_requests) == 1


# -- what was found right, kept so ----------------------------------------------------------------
def test_a_cancel_whose_answer_was_lost_ends_cancelled_when_the_report_stream_says_so(risk, oms, exchange,
                                                                                      make_order):
    async def scenario():
        order = await working(risk, oms, resting(make_order))
        answer_lost(exchange, "CancelOrder")
        with pytest.raises(VenueUnavailable):
            await oms.cancel(order.order_id)
        pending = (await details(oms, order.order_id))[0]
        await exchange.engine.reports.append([make_report(OrderRef.of(order), S.CANCELLED, at=utcnow())])
        await follow_until_drained(oms, exchange)
        return pending, await details(oms, order.order_id)

    pending, (stored, events, _) = asyncio.run(scenario())

    assert pending.status is S.PENDING_CANCEL
    assert stored.status is S.CANCELLED
    assert statuses(events)[-3:] == [S.ACCEPTED, S.PENDING_CANCEL, S.CANCELLED]


def test_a_cancel_that_got_no_answer_ends_filled_when_the_report_stream_brings_the_fill(risk, oms, exchange,
                                                                                       make_order):
    exchange.cancel_failure = rpc_error(grpc.StatusCode.UNAVAILABLE, "no answer")

    async def scenario():
        order = await working(risk, oms, resting(make_order))
        with pytest.raises(VenueUnavailable):  # the cancel never reached the venue
            await oms.cancel(order.order_id)
        await venue_fills(exchange, Decimal("59000"))  # the order fills there; the stream says so
        await follow_until_drained(oms, exchange)
        return await details(oms, order.order_id)

    stored, events, trades = asyncio.run(scenario())

    assert stored.status is S.FILLED and len(trades) == 1
    assert statuses(events)[-3:] == [S.ACCEPTED, S.PENDING_CANCEL, S.FILLED]


def test_a_cancel_of_an_order_still_on_its_way_to_the_venue_leaves_it_submitted_and_its_acknowledgement_follows(
    keyring, risk, db, make_order
):
    exchange = FakeExchange(keyring)
    exchange.provider = HeldPaperVenue({"BTCUSDT": MARKET_PRICE})
    exchange.engine = ExchangeEngine(keyring, exchange.provider, ttl_seconds=300,
                                     credentials_since=exchange.engine.credentials_since)
    oms = OrderManagement(db, keyring, exchange, ttl_seconds=300, exchange_timeout=2.0)

    async def scenario():
        decision = await approved(risk, resting(make_order))
        submission = asyncio.ensure_future(oms.submit(as_sent(decision.order), decision.token))
        await exchange.provider.placing.wait()  # the venue has not placed it yet
        cancelled = await oms.cancel(decision.order.order_id)  # the venue: no such order
        exchange.provider.release.set()
        return cancelled, await submission, await details(oms, decision.order.order_id)

    cancelled, submitted, (stored, events, _) = asyncio.run(scenario())

    assert cancelled.status is S.SUBMITTED  # not cancelled: cancel it again once acknowledged
    assert stored.status is S.ACCEPTED
    assert statuses(events)[-4:] == [S.SUBMITTED, S.PENDING_CANCEL, S.SUBMITTED, S.ACCEPTED]

