"""The OMS's submission path over the fake store with a fake clock: the risk token's
lifetime measured to the second, without waiting for it."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from service_layer_support import TTL, approve

import core_ext
from services.common import convert
from services.domain import OrderStatus, TimeInForce
from services.domain.errors import InvalidOrder, TokenRejected
from services.oms.submission import client_message
from tessera.oms.v1 import oms_pb2

SKEW = core_ext.DEFAULT_SKEW_SECONDS


def stored(db, order_id):
    return db.read_sync(lambda uow: (uow.orders.get(order_id), uow.orders.events(order_id), uow.trades.for_order(order_id)))


def test_a_token_is_accepted_exactly_five_minutes_after_it_was_issued(submitter, approved, clock, db, gateway):
    order, token = approved()
    clock.advance(TTL)

    submission = asyncio.run(submitter.submit(order, token))

    assert TTL == 5 * 60
    assert submission.order.status is OrderStatus.FILLED
    assert len(gateway.executed) == 1
    _, events, trades = stored(db, order.order_id)
    submitted = next(e for e in events if e.to_status is OrderStatus.SUBMITTED)
    assert submitted.event_time == clock.now()  # the claim is dated by the clock it was given
    assert len(trades) == 1


def test_a_token_lives_out_the_clock_skew_and_not_a_second_more(submitter, approved, clock, db, gateway):
    order, token = approved()
    clock.advance(TTL + SKEW - 0.001)
    last_moment = asyncio.run(submitter.submit(order, token))
    late_order, late_token = approved()
    clock.advance(TTL + SKEW)

    with pytest.raises(TokenRejected) as refused:
        asyncio.run(submitter.submit(late_order, late_token))

    assert last_moment.order.status is OrderStatus.FILLED
    assert refused.value.reason == "TOKEN_EXPIRED"
    late, events, _ = stored(db, late_order.order_id)
    assert late.status is OrderStatus.APPROVED  # nothing claimed, nothing sent
    assert [e.to_status for e in events] == [OrderStatus.PENDING, OrderStatus.APPROVED]
    assert [o.order_id for o, _ in gateway.executed] == [order.order_id]


def test_a_token_issued_beyond_the_skew_ahead_of_the_oms_clock_is_not_yet_valid(submitter, keyring, clock, db):
    ahead, token = approve(db, keyring, clock.now() + dt.timedelta(seconds=SKEW + 1))
    within, within_token = approve(db, keyring, clock.now() + dt.timedelta(seconds=SKEW))

    with pytest.raises(TokenRejected) as refused:
        asyncio.run(submitter.submit(ahead, token))
    accepted = asyncio.run(submitter.submit(within, within_token))

    assert refused.value.reason == "TOKEN_NOT_YET_VALID"
    assert accepted.order.status is OrderStatus.FILLED


def test_a_batch_is_checked_at_one_instant_of_the_clock(submitter, approved, clock):
    fresh, fresh_token = approved()
    clock.advance(TTL + SKEW - 1)
    newer, newer_token = approved()
    clock.advance(1)  # the first token is now past its lifetime, the second is a second old

    results = asyncio.run(_many(submitter, [(fresh, fresh_token), (newer, newer_token)]))

    assert isinstance(results[0], TokenRejected) and results[0].reason == "TOKEN_EXPIRED"
    assert results[1].order.status is OrderStatus.FILLED


def test_a_gtd_order_submitted_at_or_after_its_expire_time_is_refused_and_left_for_the_sweep(
        submitter, cancels, approved, clock, db, gateway):
    expire_at = clock.now() + dt.timedelta(seconds=30)
    last_moment, last_token = approved(time_in_force=TimeInForce.GTD, expire_time=expire_at)
    late, late_token = approved(time_in_force=TimeInForce.GTD, expire_time=expire_at)
    clock.set(expire_at - dt.timedelta(microseconds=1))
    in_time = asyncio.run(submitter.submit(last_moment, last_token))
    clock.set(expire_at)  # the token is still valid (30 s of its 300 s), the order's time has come

    with pytest.raises(InvalidOrder) as refused:
        asyncio.run(submitter.submit(late, late_token))
    in_batch = asyncio.run(_many(submitter, [(late, late_token)]))
    left, events, _ = stored(db, late.order_id)
    swept = asyncio.run(cancels.expire_due())

    assert in_time.order.status is OrderStatus.FILLED
    assert refused.value.field == "expire_time"
    assert refused.value.violations[0].reason == "IN_THE_PAST"
    assert isinstance(in_batch[0], InvalidOrder) and in_batch[0].violations[0].reason == "IN_THE_PAST"
    assert left.status is OrderStatus.APPROVED  # nothing claimed
    assert [e.to_status for e in events] == [OrderStatus.PENDING, OrderStatus.APPROVED]
    assert [o.order_id for o, _ in gateway.executed] == [last_moment.order_id]  # nothing sent expired
    assert [(o.order_id, o.status) for o in swept] == [(late.order_id, OrderStatus.EXPIRED)]


async def _many(submitter, items):
    """SubmitOrders as the servicer hands it over: the serialized batch."""
    batch = oms_pb2.SubmitOrdersRequest(orders=[
        oms_pb2.SubmitOrderRequest(order=client_message(order), risk_token=token) for order, token in items])
    return await submitter.submit_wire_many(batch.SerializeToString())
