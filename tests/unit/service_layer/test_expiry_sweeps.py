"""The OMS's expiry sweep (``Cancels.expire_due``) over the fake store, the clock moved
by hand: lapsed tokens and GTD orders expire at their instant, not a tick before."""

from __future__ import annotations

import asyncio
import datetime as dt

import order_factory
import pytest
from service_layer_support import RESTING, TTL

import core_ext
from services.domain import OrderStatus, TimeInForce
from services.domain.errors import DomainError

#: An APPROVED order whose token was issued this long ago can never be submitted.
LAPSE = TTL + core_ext.DEFAULT_SKEW_SECONDS
TICK = dt.timedelta(microseconds=1)


def stored(db, order_id):
    return db.read_sync(lambda uow: (uow.orders.get(order_id), uow.orders.events(order_id)))


def test_an_unsubmitted_order_expires_just_after_its_token_can_no_longer_be_used(cancels, approved, clock, db,
                                                                                 submitter, gateway):
    order, token = approved()
    clock.advance(LAPSE)
    at_the_limit = asyncio.run(cancels.expire_due())
    clock.advance(TICK)
    after = asyncio.run(cancels.expire_due())
    with pytest.raises(DomainError):
        asyncio.run(submitter.submit(order, token))

    assert at_the_limit == []
    assert [o.order_id for o in after] == [order.order_id]
    expired, events = stored(db, order.order_id)
    assert expired.status is OrderStatus.EXPIRED
    assert events[-1].reason == "risk token expired before submission"
    assert events[-1].event_time == clock.now()
    assert gateway.executed == []


def test_a_reapproved_order_is_not_expired_on_its_first_tokens_time(cancels, approved, clock, db):
    order, _ = approved()
    clock.advance(60)

    def reapprove(uow):  # what Risk does when the client retries: a fresh token, the approval time moved
        stored_order = uow.orders.get(order.order_id)
        stored_order.updated_time = clock.now()
        uow.orders.save(stored_order)

    db.run_sync(reapprove)
    clock.advance(LAPSE - 60 + 1)

    assert asyncio.run(cancels.expire_due()) == []
    clock.advance(60)
    assert [o.status for o in asyncio.run(cancels.expire_due())] == [OrderStatus.EXPIRED]


def test_a_resting_gtd_order_is_cancelled_at_the_venue_and_expires_at_its_time(cancels, approved, clock, db,
                                                                               submitter, gateway):
    expire_at = clock.now() + dt.timedelta(seconds=90)
    order, token = approved(time_in_force=TimeInForce.GTD, expire_time=expire_at, **RESTING)
    resting = asyncio.run(submitter.submit(order, token))
    clock.set(expire_at - TICK)
    before = asyncio.run(cancels.expire_due())
    clock.set(expire_at)
    at_time = asyncio.run(cancels.expire_due())

    assert resting.order.status is OrderStatus.ACCEPTED
    assert before == [] and gateway.cancelled == [order.order_id]
    assert [o.status for o in at_time] == [OrderStatus.EXPIRED]
    expired, events = stored(db, order.order_id)
    assert [e.to_status for e in events][-2:] == [OrderStatus.ACCEPTED, OrderStatus.EXPIRED]
    assert events[-1].reason == "GTD expire time reached" and events[-1].event_time == expire_at


def test_an_approved_gtd_order_expires_locally_at_its_time_before_its_token_lapses(cancels, approved, clock, db,
                                                                                   gateway):
    expire_at = clock.now() + dt.timedelta(seconds=30)
    order, _ = approved(time_in_force=TimeInForce.GTD, expire_time=expire_at)
    clock.set(expire_at)

    expired = asyncio.run(cancels.expire_due())

    assert [o.order_id for o in expired] == [order.order_id]
    _, events = stored(db, order.order_id)
    assert events[-1].reason == "GTD expire time reached before submission"
    assert gateway.cancelled == []  # it never reached a venue


def test_orders_the_sweep_skips_or_cannot_expire_do_not_keep_later_ones_from_expiring(cancels, approved, clock, db,
                                                                                       gateway):
    # A full page (500) of due orders the sweep leaves as they are, least recently changed:
    # GTD orders whose cancel is pending, and ones in doubt that the venue does not know.
    expire_at = clock.now() + dt.timedelta(seconds=30)
    stuck = []

    def leave(uow):  # (one write: the fake copies its whole state per transaction)
        for index in range(500):
            order = order_factory.build_order(time_in_force=TimeInForce.GTD, expire_time=expire_at,
                                              order_time=clock.now(), updated_time=clock.now(), **RESTING)
            order.record_approval(clock.now())
            order.transition(OrderStatus.SUBMITTED, at=clock.now())
            if index % 2:
                order.transition(OrderStatus.ACCEPTED, at=clock.now())
                order.transition(OrderStatus.PENDING_CANCEL, at=clock.now())
            uow.orders.add(order)
            stuck.append(order)

    db.run_sync(leave)
    clock.advance(10)
    later, _ = approved(time_in_force=TimeInForce.GTD, expire_time=expire_at)
    clock.set(expire_at)

    swept = [order for _ in range(3) for order in asyncio.run(cancels.expire_due())]

    assert [(o.order_id, o.status) for o in swept] == [(later.order_id, OrderStatus.EXPIRED)]
    assert stored(db, later.order_id)[0].status is OrderStatus.EXPIRED
    left = db.read_sync(lambda uow: [uow.orders.get(o.order_id).status for o in stuck])
    assert left == [OrderStatus.SUBMITTED, OrderStatus.PENDING_CANCEL] * 250


def test_a_sweep_whose_lapsed_order_was_claimed_after_it_read_it_expires_nothing(cancels, approved, clock, db,
                                                                                  submitter, gateway):
    # The token is still good by the submission's clock; the sweep, run for a later
    # instant, reads the order as lapsed, and the claim lands before the sweep writes.
    order, token = approved(**RESTING)
    read = db.read

    async def read_then_claim(fn, *args):
        due = await read(fn, *args)
        db.read = read
        await submitter.submit(order, token)
        return due

    db.read = read_then_claim
    swept = asyncio.run(cancels.expire_due(clock.now() + dt.timedelta(seconds=LAPSE + 1)))

    assert swept == []
    claimed, events = stored(db, order.order_id)
    assert claimed.status is OrderStatus.ACCEPTED
    assert OrderStatus.EXPIRED not in [e.to_status for e in events]
    assert len(gateway.executed) == 1  # sent once, by the submission
