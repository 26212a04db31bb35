"""ReplaceOrder through the Risk and OMS engines on a real store, the Exchange a paper engine:
Risk approves the replacement afresh, the OMS cancels the working order, then sends the
replacement; fills racing the replace end consistent, and Risk's book follows."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from decimal import Decimal

import grpc
import pytest

from services.common import convert
from services.domain import TimeInForce, new_id, utcnow
from services.exchange.venue import OrderRef, make_report
from services.domain.errors import Conflict, InvalidOrder, PreconditionFailed, VenueUnavailable
from services.oms.engine import OrderManagement
from services.risk.engine import RiskEngine, new_client_order_id
from services.risk.replacement import replacement_order
from tessera.common.v1 import types_pb2 as common_pb
from svc_harness import (LIMITS, MARKET_PRICE, S, anomalies, answer_lost, answers_arrive, approved, as_sent, details,
                         follow_until_drained, rpc_error, statuses, venue_fills, working)

ZERO = Decimal(0)


def resting(make_order, **fields):
    """A buy limit below the paper market (65000): it rests ACCEPTED."""
    return make_order(price=Decimal("60000"), **fields)


async def replacement(risk, order_id, *, quantity=None, price=None, client_order_id=None):
    """ValidateReplacement, as the Risk servicer runs it."""
    replaced = await risk.stored_order(order_id)
    order = replacement_order(replaced, order_id=new_id(), client_order_id=client_order_id or new_client_order_id(),
                              quantity=quantity, price=price, now=risk.clock())
    return await risk.validate_replacement(replaced, order, fresh_client_order_id=client_order_id is None)


async def replace(oms, decision):
    """ReplaceOrder with the replacement exactly as Risk answered it."""
    return await oms.replace(convert.order_to_proto(decision.order), decision.token)


# -- the flow -------------------------------------------------------------------------------------
def test_a_resting_order_is_replaced_at_a_new_price_and_quantity(risk, oms, exchange, make_order):
    async def scenario():
        old = await working(risk, oms, resting(make_order))
        decision = await replacement(risk, old.order_id, quantity=Decimal("0.03"), price=Decimal("61000"))
        answer = await replace(oms, decision)
        return old, decision, answer, await details(oms, old.order_id), await details(oms, decision.order.order_id)

    old, decision, answer, (replaced, old_events, _), (new, new_events, _) = asyncio.run(scenario())

    assert decision.order.status is S.APPROVED and decision.token
    assert decision.order.replaces_order_id == old.order_id
    assert (answer.order.order_id, answer.order.status, answer.replayed) == (decision.order.order_id, S.ACCEPTED, False)
    assert (new.quantity, new.price, new.replaces_order_id) == (Decimal("0.03"), Decimal("61000"), old.order_id)
    assert (new.account, new.symbol, new.side, new.order_type) == (old.account, old.symbol, old.side, old.order_type)
    assert answer.replaced.status is S.CANCELLED and replaced.replaced_by_order_id == new.order_id
    assert statuses(old_events)[-3:] == [S.ACCEPTED, S.PENDING_CANCEL, S.CANCELLED]
    assert statuses(new_events) == [S.PENDING, S.APPROVED, S.SUBMITTED, S.ACCEPTED]
    assert old_events[-2].payload == {"replaced_by_order_id": new.order_id}
    assert [r.order.order_id for r in exchange.execute_requests] == [old.order_id, new.order_id]
    assert [r.order_id for r in exchange.cancel_requests] == [old.order_id]
    assert set(exchange.provider._resting) == {new.order_id}  # the venue works the replacement only


def test_a_replacement_at_a_marketable_price_fills_at_once(risk, oms, exchange, make_order):
    async def scenario():
        old = await working(risk, oms, resting(make_order))
        decision = await replacement(risk, old.order_id, price=Decimal("66000"))
        return await replace(oms, decision)

    answer = asyncio.run(scenario())

    assert answer.order.status is S.FILLED and answer.order.quantity == Decimal("0.01")
    assert [(t.quantity, t.price) for t in answer.trades] == [(Decimal("0.01"), MARKET_PRICE)]
    assert answer.replaced.status is S.CANCELLED


def test_a_partially_filled_order_is_replaced_by_one_working_the_rest_of_the_new_total(
    risk, db, keyring, shallow_exchange, make_order
):
    oms = OrderManagement(db, keyring, shallow_exchange, ttl_seconds=300, exchange_timeout=2.0)

    async def scenario():
        old = await working(risk, oms, make_order(price=MARKET_PRICE))  # takes 0.004, rests 0.006
        decision = await replacement(risk, old.order_id, quantity=Decimal("0.008"), price=Decimal("64000"))
        return old, decision, await replace(oms, decision)

    old, decision, answer = asyncio.run(scenario())

    assert (old.status, old.filled_quantity) == (S.PARTIALLY_FILLED, Decimal("0.004"))
    assert decision.order.quantity == Decimal("0.004")  # the new total 0.008, less the 0.004 filled
    assert answer.order.status is S.ACCEPTED and answer.order.price == Decimal("64000")
    assert (answer.replaced.status, answer.replaced.filled_quantity) == (S.CANCELLED, Decimal("0.004"))


# -- refusals ---------------------------------------------------------------------------------------
def test_risk_refuses_a_total_not_above_the_filled_quantity_and_a_replacement_that_changes_nothing(
    risk, db, keyring, shallow_exchange, make_order
):
    oms = OrderManagement(db, keyring, shallow_exchange, ttl_seconds=300, exchange_timeout=2.0)

    async def scenario():
        old = await working(risk, oms, make_order(price=MARKET_PRICE))
        errors = []
        for changes in ({"quantity": Decimal("0.004")}, {"quantity": Decimal("0.01"), "price": MARKET_PRICE}):
            with pytest.raises(InvalidOrder) as raised:
                await replacement(risk, old.order_id, **changes)
            errors.append(raised.value)
        return errors

    too_small, unchanged = asyncio.run(scenario())

    assert [(v.field, v.reason) for v in too_small.violations] == [("quantity", "OUT_OF_RANGE")]
    assert [(v.field, v.reason) for v in unchanged.violations] == [("quantity", "NO_CHANGE")]


def test_risk_refuses_to_replace_an_order_that_is_not_working(risk, oms, exchange, make_order):
    async def scenario():
        filled = await working(risk, oms, make_order())
        pending = await approved(risk, make_order())
        found = []
        for order_id in (filled.order_id, pending.order.order_id):
            with pytest.raises(PreconditionFailed) as raised:
                await replacement(risk, order_id, price=Decimal("1"))
            found.append((raised.value.reason, dict(raised.value.metadata)))
        return filled.order_id, pending.order.order_id, found

    filled_id, pending_id, found = asyncio.run(scenario())

    assert found == [("ORDER_NOT_OPEN", {"order_id": filled_id, "status": "FILLED"}),
                     ("ORDER_NOT_WORKING", {"order_id": pending_id, "status": "APPROVED"})]


def test_submit_order_refuses_a_replacement_and_replace_order_an_ordinary_order(risk, oms, exchange, make_order):
    async def scenario():
        old = await working(risk, oms, resting(make_order))
        decision = await replacement(risk, old.order_id, price=Decimal("61000"))
        with pytest.raises(PreconditionFailed) as submitted:
            await oms.submit(as_sent(decision.order), decision.token)
        other = await approved(risk, make_order())
        with pytest.raises(PreconditionFailed) as replaced:
            await oms.replace(convert.order_to_proto(other.order), other.token)
        return submitted.value, replaced.value, await details(oms, decision.order.order_id)

    submitted, replaced, (stored, _, _) = asyncio.run(scenario())

    assert submitted.reason == "REPLACEMENT_ORDER" and stored.status is S.APPROVED
    assert replaced.reason == "NOT_A_REPLACEMENT"
    assert len(exchange.execute_requests) == 1 and exchange.cancel_requests == []


def test_a_second_replace_of_an_order_being_replaced_is_refused_and_its_replacement_cancelled(
    risk, oms, exchange, make_order
):
    exchange.cancel_failure = rpc_error(grpc.StatusCode.UNAVAILABLE, "no answer")

    async def scenario():
        old = await working(risk, oms, resting(make_order))
        first = await replacement(risk, old.order_id, price=Decimal("61000"))
        second = await replacement(risk, old.order_id, price=Decimal("62000"))
        with pytest.raises(VenueUnavailable):
            await replace(oms, first)  # the cancel is not answered: the replace is under way
        with pytest.raises(PreconditionFailed) as raised:
            await replace(oms, second)
        return raised.value, await details(oms, second.order.order_id), await details(oms, first.order.order_id)

    error, (second, _, _), (first, _, _) = asyncio.run(scenario())

    assert error.reason == "ORDER_NOT_WORKING"
    assert second.status is S.CANCELLED and first.status is S.APPROVED


def test_a_replace_of_an_order_whose_cancel_is_pending_is_refused_and_its_replacement_cancelled(
    risk, oms, exchange, make_order
):
    async def scenario():
        old = await working(risk, oms, resting(make_order))
        decision = await replacement(risk, old.order_id, price=Decimal("61000"))
        exchange.cancel_failure = rpc_error(grpc.StatusCode.UNAVAILABLE, "no answer")
        with pytest.raises(VenueUnavailable):  # CancelOrder: the old order stays PENDING_CANCEL
            await oms.cancel(old.order_id)
        with pytest.raises(PreconditionFailed) as raised:
            await replace(oms, decision)
        await risk.sync()
        return (raised.value, await details(oms, old.order_id), await details(oms, decision.order.order_id),
                set(risk.book.accounts["acct-1"].working))

    error, (kept, _, _), (dropped, events, _), working_at_risk = asyncio.run(scenario())

    assert error.reason == "ORDER_NOT_WORKING"
    assert (kept.status, kept.replaced_by_order_id) == (S.PENDING_CANCEL, None)
    assert dropped.status is S.CANCELLED and events[-1].reason.startswith("replace abandoned")
    assert working_at_risk == {kept.order_id}  # the replacement no longer holds the account's limits
    assert len(exchange.execute_requests) == 1


def test_a_replacement_sent_with_other_output_only_fields_is_replaced_as_approved_ignoring_them(
    risk, oms, exchange, make_order
):
    async def scenario():
        old = await working(risk, oms, resting(make_order))
        decision = await replacement(risk, old.order_id, price=Decimal("61000"))
        message = convert.order_to_proto(decision.order)
        message.status = common_pb.ORDER_STATUS_FILLED  # OUTPUT_ONLY: ignored on input
        message.remote_order_id = "venue-1"
        message.order_time.FromDatetime(dt.datetime(2020, 1, 1))
        return await oms.replace(message, decision.token)

    answer = asyncio.run(scenario())

    assert (answer.order.status, answer.replaced.status) == (S.ACCEPTED, S.CANCELLED)


def test_a_replacement_whose_order_manager_or_expiry_differs_from_the_approved_one_is_refused_before_any_cancel(
    risk, oms, exchange, make_order
):
    expire_at = utcnow() + dt.timedelta(hours=1)

    async def scenario():
        old = await working(risk, oms, resting(make_order, time_in_force=TimeInForce.GTD, expire_time=expire_at))
        decision = await replacement(risk, old.order_id, price=Decimal("61000"))  # GTD, at the same expiry
        message = convert.order_to_proto(decision.order)
        message.order_manager_id = "another-batch"
        message.expire_time.FromDatetime(expire_at + dt.timedelta(hours=1))
        with pytest.raises(InvalidOrder) as raised:
            await oms.replace(message, decision.token)
        return raised.value, await details(oms, old.order_id), await details(oms, decision.order.order_id)

    error, (kept, _, _), (waiting, _, _) = asyncio.run(scenario())

    assert [(v.field, v.reason) for v in error.violations] == [("order_manager_id", "DIFFERS_FROM_APPROVED"),
                                                              ("expire_time", "DIFFERS_FROM_APPROVED")]
    assert (kept.status, kept.replaced_by_order_id) == (S.ACCEPTED, None)  # untouched, at the venue too
    assert waiting.status is S.APPROVED
    assert exchange.cancel_requests == [] and len(exchange.execute_requests) == 1


# -- races -----------------------------------------------------------------------------------------
def test_a_fill_recorded_after_the_approval_refuses_the_replace_and_touches_nothing(
    risk, db, keyring, shallow_exchange, make_order
):
    exchange = shallow_exchange
    oms = OrderManagement(db, keyring, exchange, ttl_seconds=300, exchange_timeout=2.0)

    async def scenario():
        old = await working(risk, oms, resting(make_order))
        decision = await replacement(risk, old.order_id, price=Decimal("61000"))
        await venue_fills(exchange, Decimal("59000"))  # 0.004 of the old order fills
        await follow_until_drained(oms, exchange)
        with pytest.raises(PreconditionFailed) as raised:
            await replace(oms, decision)
        return old, decision, raised.value, await details(oms, old.order_id), await details(oms, decision.order.order_id)

    old, decision, error, (kept, _, _), (dropped, events, _) = asyncio.run(scenario())

    assert error.reason == "ORDER_CHANGED"
    assert dict(error.metadata) == {"order_id": old.order_id, "status": "PARTIALLY_FILLED",
                                    "replacement_order_id": decision.order.order_id}
    assert (kept.status, kept.filled_quantity, kept.replaced_by_order_id) == (S.PARTIALLY_FILLED, Decimal("0.004"), None)
    assert dropped.status is S.CANCELLED and events[-1].reason.startswith("replace abandoned")
    assert exchange.cancel_requests == [] and len(exchange.execute_requests) == 1


def test_a_fill_crossing_the_cancel_is_recorded_and_the_replacement_is_not_sent(
    risk, db, keyring, shallow_exchange, make_order
):
    exchange = shallow_exchange
    oms = OrderManagement(db, keyring, exchange, ttl_seconds=300, exchange_timeout=2.0)

    async def scenario():
        old = await working(risk, oms, resting(make_order))
        decision = await replacement(risk, old.order_id, quantity=Decimal("0.02"), price=Decimal("61000"))
        await venue_fills(exchange, Decimal("59000"))  # fills 0.004 at the venue; the OMS has not heard
        answer = await replace(oms, decision)
        await follow_until_drained(oms, exchange)  # the fill's report arrives after all
        return old, answer, await details(oms, old.order_id), await details(oms, decision.order.order_id), \
            await anomalies(db)

    old, answer, (ended, _, trades), (dropped, events, _), found = asyncio.run(scenario())

    assert answer.order.status is S.CANCELLED and not answer.replayed
    assert (answer.replaced.status, answer.replaced.filled_quantity) == (S.CANCELLED, Decimal("0.004"))
    assert (ended.status, ended.filled_quantity) == (S.CANCELLED, Decimal("0.004"))
    assert len(trades) == 1  # recorded once, though both the venue's answer and the stream carried it
    assert dropped.status is S.CANCELLED and "replace abandoned" in events[-1].reason
    assert [r.order.order_id for r in exchange.execute_requests] == [old.order_id]  # never sent
    assert found == []  # no fill reached a cancelled order


def test_a_fill_completing_the_order_before_the_cancel_ends_it_filled_and_the_replacement_cancelled(
    risk, oms, exchange, make_order
):
    async def scenario():
        old = await working(risk, oms, resting(make_order))
        decision = await replacement(risk, old.order_id, price=Decimal("61000"))
        await venue_fills(exchange, Decimal("59000"))  # the whole order fills at the venue
        with pytest.raises(PreconditionFailed) as raised:  # the venue no longer knows the order
            await replace(oms, decision)
        answered = await details(oms, old.order_id)  # the venue, asked, gave its fill
        await follow_until_drained(oms, exchange)
        return raised.value, answered, await details(oms, old.order_id), await details(oms, decision.order.order_id)

    error, (answered, _, _), (ended, events, trades), (dropped, _, _) = asyncio.run(scenario())

    assert error.reason == "UNKNOWN_ORDER"
    assert answered.status is S.FILLED
    assert ended.status is S.FILLED and len(trades) == 1  # the stream's copy of the fill is not recorded twice
    assert statuses(events)[-2:] == [S.PENDING_CANCEL, S.FILLED]
    assert dropped.status is S.CANCELLED
    assert len(exchange.execute_requests) == 1


def test_a_replacement_the_venue_refuses_ends_rejected_and_the_old_order_stays_cancelled(risk, oms, exchange,
                                                                                          make_order):
    async def scenario():
        old = await working(risk, oms, resting(make_order))
        decision = await replacement(risk, old.order_id, price=Decimal("61000"))
        exchange.execute_failure = rpc_error(grpc.StatusCode.FAILED_PRECONDITION,
                                             "VENUE_REJECTED: margin is insufficient")
        answer = await replace(oms, decision)
        again = await replace(oms, decision)  # its answer lost: the same call once more
        await risk.sync()
        return answer, again, set(risk.book.accounts["acct-1"].working)

    answer, again, working_at_risk = asyncio.run(scenario())

    assert (answer.order.status, answer.order.reject_reasons) == (S.REJECTED, ["VENUE_REJECTED"])
    assert answer.replaced.status is S.CANCELLED  # not restored: validate a new order
    assert (again.order.status, again.replaced.status, again.replayed) == (S.REJECTED, S.CANCELLED, True)
    assert working_at_risk == set()
    assert len(exchange.execute_requests) == 2  # the old order, then the replacement once


# -- retries ---------------------------------------------------------------------------------------
def test_a_replace_whose_cancel_was_not_answered_resumes_when_called_again(risk, oms, exchange, make_order):
    async def scenario():
        old = await working(risk, oms, resting(make_order))
        decision = await replacement(risk, old.order_id, price=Decimal("61000"))
        exchange.cancel_failure = rpc_error(grpc.StatusCode.UNAVAILABLE, "no answer")
        with pytest.raises(VenueUnavailable):
            await replace(oms, decision)
        midway = (await details(oms, old.order_id))[0], (await details(oms, decision.order.order_id))[0]
        exchange.cancel_failure = None
        answer = await replace(oms, decision)
        again = await replace(oms, decision)  # its answer lost: the same call once more
        return midway, answer, again

    (old_midway, new_midway), answer, again = asyncio.run(scenario())

    assert (old_midway.status, new_midway.status) == (S.PENDING_CANCEL, S.APPROVED)
    assert old_midway.replaced_by_order_id == new_midway.order_id
    assert (answer.order.status, answer.replaced.status, answer.replayed) == (S.ACCEPTED, S.CANCELLED, False)
    assert (again.order.status, again.replaced.status, again.replayed) == (S.ACCEPTED, S.CANCELLED, True)
    assert [r.order.order_id for r in exchange.execute_requests].count(answer.order.order_id) == 1
    assert len(exchange.cancel_requests) == 2  # the unanswered cancel, sent again


def test_a_replace_whose_cancel_took_effect_but_whose_answer_was_lost_resumes_and_sends_the_replacement(
    risk, oms, exchange, make_order
):
    async def scenario():
        old = await working(risk, oms, resting(make_order))
        decision = await replacement(risk, old.order_id, price=Decimal("61000"))
        answer_lost(exchange, "CancelOrder")
        with pytest.raises(VenueUnavailable):  # cancelled at the venue; the OMS did not hear
            await replace(oms, decision)
        answers_arrive(exchange, "CancelOrder")
        answer = await replace(oms, decision)  # the cancel sent again: the venue has no open order
        return answer, await details(oms, old.order_id)

    answer, (replaced, events, _) = asyncio.run(scenario())

    assert (answer.order.status, answer.replaced.status, answer.replayed) == (S.ACCEPTED, S.CANCELLED, False)
    assert replaced.status is S.CANCELLED and replaced.replaced_by_order_id == answer.order.order_id
    assert statuses(events)[-3:] == [S.ACCEPTED, S.PENDING_CANCEL, S.CANCELLED]
    assert [r.order.order_id for r in exchange.execute_requests].count(answer.order.order_id) == 1
    assert len(exchange.cancel_requests) == 2


def test_a_replace_resumed_after_the_stream_closed_the_old_order_owing_fills_does_not_send_the_replacement(
    risk, db, keyring, shallow_exchange, make_order
):
    exchange = shallow_exchange  # a resting 0.01 fills 0.004 when the market crosses it
    oms = OrderManagement(db, keyring, exchange, ttl_seconds=300, exchange_timeout=2.0)

    async def scenario():
        old = await working(risk, oms, resting(make_order))
        decision = await replacement(risk, old.order_id, price=Decimal("61000"))
        await venue_fills(exchange, Decimal("59000"), published=False)  # 0.004 fills; its report is late
        exchange.provider.source.set("BTCUSDT", MARKET_PRICE)
        answer_lost(exchange, "CancelOrder")
        with pytest.raises(VenueUnavailable):  # cancelled at the venue; the OMS did not hear
            await replace(oms, decision)
        answers_arrive(exchange, "CancelOrder")
        # The stream's report of the cancel arrives before the fill's: CANCELLED, 0.004 executed.
        await exchange.engine.reports.append([make_report(OrderRef.of(old), S.CANCELLED, cumulative=Decimal("0.004"),
                                                          at=utcnow())])
        await follow_until_drained(oms, exchange)
        closed = (await details(oms, old.order_id))[0]
        answer = await replace(oms, decision)  # the same call once more
        return closed, answer

    closed, answer = asyncio.run(scenario())

    assert (closed.status, closed.filled_quantity, closed.venue_executed_quantity) == (S.CANCELLED, ZERO,
                                                                                       Decimal("0.004"))
    assert answer.order.status is S.CANCELLED  # not sent: it would work more than was asked in all
    assert answer.replaced.status is S.CANCELLED
    assert [r.order.order_id for r in exchange.execute_requests].count(answer.order.order_id) == 0


def test_an_order_a_fill_left_working_during_an_unanswered_replace_can_be_replaced_again(
    risk, db, keyring, shallow_exchange, make_order
):
    exchange = shallow_exchange
    oms = OrderManagement(db, keyring, exchange, ttl_seconds=300, exchange_timeout=2.0)

    async def scenario():
        old = await working(risk, oms, resting(make_order))
        first = await replacement(risk, old.order_id, price=Decimal("61000"))
        exchange.cancel_failure = rpc_error(grpc.StatusCode.UNAVAILABLE, "no answer")
        with pytest.raises(VenueUnavailable):  # the cancel never reached the venue
            await replace(oms, first)
        await venue_fills(exchange, Decimal("59000"))  # 0.004 fills: still working at the venue
        await follow_until_drained(oms, exchange)
        exchange.cancel_failure = None
        exchange.provider.source.set("BTCUSDT", MARKET_PRICE)
        midway = (await details(oms, old.order_id))[0]
        abandoned = await replace(oms, first)  # the first replace, called again, ends without sending
        second = await replacement(risk, old.order_id, price=Decimal("61000"))
        answer = await replace(oms, second)
        return midway, abandoned, second, answer

    midway, abandoned, second, answer = asyncio.run(scenario())

    assert (midway.status, midway.filled_quantity) == (S.PARTIALLY_FILLED, Decimal("0.004"))
    assert abandoned.order.status is S.CANCELLED
    assert (answer.order.order_id, answer.order.status) == (second.order.order_id, S.ACCEPTED)
    assert (answer.replaced.status, answer.replaced.filled_quantity) == (S.CANCELLED, Decimal("0.004"))
    assert answer.replaced.replaced_by_order_id == second.order.order_id
    assert [r.order.order_id for r in exchange.execute_requests].count(abandoned.order.order_id) == 0


def test_a_replacement_validated_twice_by_client_order_id_is_the_same_order(risk, oms, exchange, make_order):
    async def scenario():
        old = await working(risk, oms, resting(make_order))
        first = await replacement(risk, old.order_id, price=Decimal("61000"), client_order_id="amend-1")
        again = await replacement(risk, old.order_id, price=Decimal("61000"), client_order_id="amend-1")
        return first, again

    first, again = asyncio.run(scenario())

    assert again.order.order_id == first.order.order_id and again.token and again.token != first.token


def test_a_replacement_validated_again_after_the_old_order_filled_more_is_the_same_order(
    risk, oms, db, keyring, shallow_exchange, make_order
):
    # The same request (order, new total, price, client order id) retried after a fill of
    # the old order: Risk would now build a smaller replacement, but the request is the one
    # it answered, and the answer is the replacement it stored (the OMS refuses to use it,
    # ORDER_CHANGED, because of that fill).
    exchange = shallow_exchange
    oms = OrderManagement(db, keyring, exchange, ttl_seconds=300, exchange_timeout=2.0)

    async def scenario():
        old = await working(risk, oms, resting(make_order))
        first = await replacement(risk, old.order_id, quantity=Decimal("0.02"), client_order_id="amend-1")
        await venue_fills(exchange, Decimal("59000"))  # 0.004 of the old order fills
        await follow_until_drained(oms, exchange)
        again = await replacement(risk, old.order_id, quantity=Decimal("0.02"), client_order_id="amend-1")
        with pytest.raises(Conflict) as other:
            await replacement(risk, old.order_id, quantity=Decimal("0.03"), client_order_id="amend-1")
        return first, again, other.value

    first, again, other = asyncio.run(scenario())

    assert again.order.order_id == first.order.order_id and again.order.quantity == first.order.quantity
    assert again.order.status is S.APPROVED and again.token
    assert other.reason == "DUPLICATE_CLIENT_ORDER_ID"


# -- Risk's book -------------------------------------------------------------------------------------
def test_risk_measures_a_replacement_without_the_order_it_replaces_and_releases_that_one_when_it_ends(
    db, keyring, exchange, make_order
):
    risk = RiskEngine(db, keyring, dataclasses.replace(LIMITS, max_open_orders=1))
    oms = OrderManagement(db, keyring, exchange, ttl_seconds=300, exchange_timeout=2.0)

    async def scenario():
        old = await working(risk, oms, resting(make_order))
        another = await risk.validate(make_order())  # one open order already: refused
        decision = await replacement(risk, old.order_id, quantity=Decimal("0.02"), price=Decimal("61000"))
        working_before = dict(risk.book.accounts[old.account].working)
        answer = await replace(oms, decision)
        await risk.sync()
        return old, another, decision, working_before, answer, dict(risk.book.accounts[old.account].working)

    old, another, decision, before, answer, after = asyncio.run(scenario())

    assert [v.code for v in another.violations] == ["MAX_OPEN_ORDERS_EXCEEDED"]
    assert decision.order.status is S.APPROVED, decision.violations  # the order it replaces does not count
    assert set(before) == {old.order_id, decision.order.order_id}  # both may trade until the old one ends
    assert answer.order.status is S.ACCEPTED
    assert set(after) == {decision.order.order_id}  # the old order's working quantity released
    assert after[decision.order.order_id].remaining == Decimal("0.02") and not after[decision.order.order_id].approved


def test_a_replace_halted_at_the_replacements_submission_sends_it_when_called_again_after_the_halt(
    risk, oms, exchange, db, make_order
):
    from services.domain import TradingState

    async def scenario():
        old = await working(risk, oms, resting(make_order))
        decision = await replacement(risk, old.order_id, price=Decimal("61000"))
        await db.run(lambda uow: uow.trading_state.set(TradingState.HALTED, "ops", "venue incident"))
        with pytest.raises(PreconditionFailed) as raised:
            await replace(oms, decision)
        midway = (await details(oms, old.order_id))[0], (await details(oms, decision.order.order_id))[0]
        await db.run(lambda uow: uow.trading_state.set(TradingState.ACTIVE, "ops", "resolved"))
        return raised.value, midway, await replace(oms, decision)

    error, (old_midway, new_midway), answer = asyncio.run(scenario())

    assert error.reason == "TRADING_HALTED"
    assert (old_midway.status, new_midway.status) == (S.CANCELLED, S.APPROVED)  # cancels pass a halt
    assert (answer.order.status, answer.replaced.status, answer.replayed) == (S.ACCEPTED, S.CANCELLED, False)
    assert len(exchange.cancel_requests) == 1
