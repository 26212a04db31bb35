"""Safe retries: SubmitOrder (and SubmitOrders) repeated with the same order and token after
a lost answer is answered with the order as it is now, marked replayed, and nothing
reaches the venue twice; the token's single use holds for any other token or order."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import grpc
import pytest

from services.domain.errors import PreconditionFailed, TokenRejected, TokenReplayed
from svc_harness import S, approved, as_sent, details, follow_until_drained, rpc_error, statuses, venue_fills


def resting(make_order):
    """A buy limit below the paper market: it rests ACCEPTED."""
    return make_order(price=Decimal("60000"))


def test_a_resting_order_submitted_again_is_answered_accepted_and_replayed(risk, oms, exchange, make_order):
    async def scenario():
        decision = await approved(risk, resting(make_order))
        first = await oms.submit(as_sent(decision.order), decision.token)
        again = await oms.submit(as_sent(decision.order), decision.token)
        return first, again, await details(oms, decision.order.order_id)

    first, again, (stored, events, _) = asyncio.run(scenario())

    assert (first.order.status, first.replayed) == (S.ACCEPTED, False)
    assert (again.order.status, again.replayed, again.trades) == (S.ACCEPTED, True, [])
    assert again.order.remote_order_id == stored.remote_order_id
    assert statuses(events) == [S.PENDING, S.APPROVED, S.SUBMITTED, S.ACCEPTED]  # nothing written by the repeat
    assert len(exchange.execute_requests) == 1


def test_a_repeat_of_an_order_the_venue_refused_answers_it_rejected(risk, oms, exchange, make_order):
    # The venue's refusal was an answer (REJECTED); the repeat gets that answer, not
    # ORDER_NOT_APPROVED.
    exchange.execute_failure = rpc_error(grpc.StatusCode.FAILED_PRECONDITION,
                                         "MARGIN_INSUFFICIENT: venue answered HTTP 400 code -2019")

    async def scenario():
        decision = await approved(risk, make_order())
        first = await oms.submit(as_sent(decision.order), decision.token)
        again = await oms.submit(as_sent(decision.order), decision.token)
        return first, again

    first, again = asyncio.run(scenario())

    assert first.order.status is S.REJECTED and first.order.reject_reasons == ["MARGIN_INSUFFICIENT"]
    assert again.replayed and again.order.status is S.REJECTED
    assert again.order.reject_reasons == ["MARGIN_INSUFFICIENT"]
    assert len(exchange.execute_requests) == 1


def test_another_token_of_the_same_order_is_still_refused_with_the_order_and_its_status(
    risk, oms, exchange, make_order
):
    async def scenario():
        order = make_order()
        first = await approved(risk, order)
        second = await risk.validate(make_order(client_order_id=order.client_order_id))  # the same intent again
        assert second.token and second.token != first.token
        await oms.submit(as_sent(first.order), first.token)
        with pytest.raises(TokenReplayed) as raised:
            await oms.submit(as_sent(second.order), second.token)
        return first.order.order_id, raised.value

    order_id, error = asyncio.run(scenario())

    assert error.reason == "TOKEN_ALREADY_USED"
    assert dict(error.metadata) == {"order_id": order_id, "status": "FILLED"}
    assert len(exchange.execute_requests) == 1


def test_a_changed_order_with_a_used_token_is_refused_fields_changed(risk, oms, exchange, make_order):
    async def scenario():
        decision = await approved(risk, make_order())
        await oms.submit(as_sent(decision.order), decision.token)
        changed = as_sent(decision.order)
        changed.quantity = Decimal("0.02")
        with pytest.raises(TokenRejected) as raised:
            await oms.submit(changed, decision.token)
        return raised.value

    assert asyncio.run(scenario()).reason == "TOKEN_FIELDS_CHANGED"
    assert len(exchange.execute_requests) == 1


def test_an_order_cancelled_before_submission_is_not_answered_as_a_replay(risk, oms, exchange, make_order):
    async def scenario():
        decision = await approved(risk, make_order())
        await oms.cancel(decision.order.order_id)
        with pytest.raises(PreconditionFailed) as raised:
            await oms.submit(as_sent(decision.order), decision.token)
        return decision.order.order_id, raised.value

    order_id, error = asyncio.run(scenario())

    assert error.reason == "ORDER_NOT_APPROVED"
    assert dict(error.metadata) == {"order_id": order_id, "status": "CANCELLED"}
    assert exchange.execute_requests == []


def test_a_submission_repeated_after_the_order_filled_answers_it_filled_with_its_fill_and_replayed(
    risk, oms, exchange, make_order
):
    async def scenario():
        decision = await approved(risk, resting(make_order))
        await oms.submit(as_sent(decision.order), decision.token)
        await venue_fills(exchange, Decimal("59000"))  # it fills at the venue later, on the stream
        await follow_until_drained(oms, exchange)
        return await oms.submit(as_sent(decision.order), decision.token)

    again = asyncio.run(scenario())

    assert (again.order.status, again.replayed, len(again.trades)) == (S.FILLED, True, 1)
    assert len(exchange.execute_requests) == 1


def test_a_submission_repeated_after_the_order_was_cancelled_at_the_venue_answers_it_cancelled_and_replayed(
    risk, oms, exchange, make_order
):
    async def scenario():
        decision = await approved(risk, resting(make_order))
        await oms.submit(as_sent(decision.order), decision.token)
        await oms.cancel(decision.order.order_id)
        return await oms.submit(as_sent(decision.order), decision.token)

    again = asyncio.run(scenario())

    assert (again.order.status, again.replayed, again.trades) == (S.CANCELLED, True, [])
    assert len(exchange.execute_requests) == 1
