"""The reconciler never closes an order on an answer older than the order's own news.

"The venue does not have it" is only proof that an in-doubt order never arrived when
the question was asked after the grace period: asked earlier, the order may still have
been on its way (the Exchange call in flight), however late the answer comes. And an
order that moved on while the question was in flight (its acknowledgement arrived) is
left to the next pass, never forced into a transition from a state it has left.
"""

from __future__ import annotations

import asyncio
import datetime as dt

import order_factory
import pytest

import core_ext
from services.store.database import Database
from services.domain import OrderStatus, utcnow
from services.oms.reconciler import Reconciler
from tessera.common.v1 import types_pb2 as common_pb
from tessera.exchange.v1 import exchange_pb2

KEYRING = core_ext.KeyRing("rec1", b"reconciler-race-secret-0123456789abcdef")
NOT_FOUND = exchange_pb2.QueryOrderResponse(found=False, mode=common_pb.EXECUTION_MODE_LIVE)


class SlowExchange:
    """Answers "not found" after ``delay`` seconds, running ``meanwhile`` first."""

    def __init__(self, delay: float, meanwhile=None) -> None:
        self.delay, self.meanwhile = delay, meanwhile

    async def QueryOrder(self, request, timeout=None, metadata=None):
        if self.meanwhile is not None:
            await self.meanwhile(request.order_id)
        await asyncio.sleep(self.delay)
        return NOT_FOUND


@pytest.fixture
def db(tmp_path):
    database = Database.from_url(f"sqlite:///{tmp_path / 'races.db'}")
    yield database
    database.close()


def submitted(db, age_seconds):
    order = order_factory.build_order()
    order.record_creation()
    at = utcnow() - dt.timedelta(seconds=age_seconds)
    for status in (OrderStatus.APPROVED, OrderStatus.SUBMITTED):
        order.transition(status, at=at)
    db.run_sync(lambda uow: uow.orders.add(order))
    return order


def status(db, order_id):
    return db.run_sync(lambda uow: uow.orders.get(order_id)).status


def test_a_not_found_asked_within_the_grace_period_is_no_proof_however_late_it_comes(db):
    order = submitted(db, age_seconds=0.1)

    summary = asyncio.run(Reconciler(db, KEYRING, SlowExchange(delay=0.6), grace_seconds=0.4).reconcile_once())

    assert summary.waiting == 1 and summary.not_at_venue == 0
    assert status(db, order.order_id) is OrderStatus.SUBMITTED


def test_an_order_acknowledged_while_the_question_was_in_flight_is_left_as_it_is(db):
    order = submitted(db, age_seconds=60)

    async def acknowledged(order_id):
        def accept(uow):
            stored = uow.orders.get(order_id)
            stored.transition(OrderStatus.ACCEPTED, reason="venue: accepted")
            uow.orders.save(stored)
        await db.run(accept)

    summary = asyncio.run(Reconciler(db, KEYRING, SlowExchange(0, acknowledged), grace_seconds=1).reconcile_once())

    assert summary.not_at_venue == 0
    assert status(db, order.order_id) is OrderStatus.ACCEPTED


def test_a_not_found_asked_after_the_grace_period_still_rejects_the_order(db):
    order = submitted(db, age_seconds=60)

    summary = asyncio.run(Reconciler(db, KEYRING, SlowExchange(delay=0), grace_seconds=1).reconcile_once())

    assert summary.not_at_venue == 1
    assert status(db, order.order_id) is OrderStatus.REJECTED


def test_an_in_doubt_order_whose_cancel_got_no_answer_is_cancelled_not_quarantined(db):
    # SUBMITTED without an answer, then a cancel the Exchange did not answer either:
    # PENDING_CANCEL from SUBMITTED. Not at the venue after the grace period: it never
    # arrived, and nothing can fill it; no reason to halt the symbol.
    order = submitted(db, age_seconds=60)

    def cancel_requested(uow):
        stored = uow.orders.get(order.order_id)
        stored.transition(OrderStatus.PENDING_CANCEL, reason="cancel requested")
        uow.orders.save(stored)
    db.run_sync(cancel_requested)

    summary = asyncio.run(Reconciler(db, KEYRING, SlowExchange(delay=0), grace_seconds=1).reconcile_once())

    assert (summary.not_at_venue, summary.quarantined) == (1, 0)
    assert status(db, order.order_id) is OrderStatus.CANCELLED
    with db.store.uow(read_only=True) as uow:
        assert uow.trading_state.effective(order.symbol).state.value == "ACTIVE"


def test_refused_cancels_do_not_postpone_resolving_an_in_doubt_order(db):
    # Each cancel the venue refuses ("unknown order") returns the order to SUBMITTED and
    # moves its updated_time; the grace period still counts from when it was sent, or an
    # order someone keeps cancelling would stay in doubt for ever.
    order = submitted(db, age_seconds=60)

    def cancel_refused(uow):
        stored = uow.orders.get(order.order_id)
        stored.transition(OrderStatus.PENDING_CANCEL, reason="cancel requested")
        stored.transition(OrderStatus.SUBMITTED, reason="cancel refused by venue: UNKNOWN_ORDER")
        uow.orders.save(stored)
    db.run_sync(cancel_refused)

    summary = asyncio.run(Reconciler(db, KEYRING, SlowExchange(delay=0), grace_seconds=5).reconcile_once())

    assert summary.not_at_venue == 1
    assert status(db, order.order_id) is OrderStatus.REJECTED
