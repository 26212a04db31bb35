"""Risk and OMS engines on a real store, with a fake Exchange stub in front of a real paper engine.

The fake stands in for ``ExchangeServiceStub``: its ``ExecuteOrder`` / ``CancelOrder``
run the real :class:`ExchangeEngine` (token verified again, paper fills) and turn domain
errors into ``grpc.aio.AioRpcError`` the way the servicer does; a test can make a call
fail with any status code instead, and counts the calls.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from decimal import Decimal

import grpc
import pytest

import core_ext
from services.domain import Order, TradingState
from services.domain.errors import (
    Conflict,
    OrderNotFound,
    PreconditionFailed,
    TokenRejected,
    TokenReplayed,
    VenueUnavailable,
)
from services.oms.engine import Submission

from svc_harness import (  # noqa: E402
    MARKET_PRICE,
    S,
    approved,
    as_sent,
    details,
    follow_until_drained,
    rpc_error,
    statuses,
)


# -- the happy path ------------------------------------------------------------------------------
def test_approved_order_submitted_to_the_exchange_ends_filled_with_its_events_and_one_trade(
    risk, oms, exchange, make_order
):
    async def scenario():
        decision = await approved(risk, make_order(quantity=Decimal("0.02"), price=Decimal("65100")))
        submission = await oms.submit(as_sent(decision.order), decision.token)
        return decision, submission, await details(oms, decision.order.order_id)

    decision, submission, (order, events, trades) = asyncio.run(scenario())

    assert isinstance(submission, Submission)
    assert submission.order.status is S.FILLED
    assert order.status is S.FILLED
    assert (order.filled_quantity, order.average_fill_price) == (Decimal("0.02"), MARKET_PRICE)
    assert order.remote_order_id and order.remote_order_id.startswith("paper-")
    assert statuses(events) == [S.PENDING, S.APPROVED, S.SUBMITTED, S.FILLED]
    assert [e.sequence for e in events] == [1, 2, 3, 4]
    assert events[2].payload["token_key_id"] == "it1"
    (trade,) = trades
    assert (trade.quantity, trade.price, trade.order_id) == (Decimal("0.02"), MARKET_PRICE, order.order_id)
    assert trade.commission == Decimal("0.52")  # 0.02 * 65000 * 0.0004
    assert [t.trade_id for t in submission.trades] == [trade.trade_id]
    assert len(exchange.execute_requests) == 1
    assert exchange.execute_requests[0].risk_token == decision.token


def test_the_risk_token_is_bound_to_the_stored_order(risk, keyring, make_order):
    decision = asyncio.run(approved(risk, make_order()))

    result = core_ext.verify_token(keyring, decision.token, decision.order.token_body(), time.time())

    assert result.ok and result.key_id == "it1"


# -- risk decisions --------------------------------------------------------------------------------
def test_order_breaking_limits_is_stored_rejected_with_its_violations(risk, oms, make_order):
    order = make_order(symbol="DOGEUSDT", quantity=Decimal("1000"), price=Decimal("1"))

    async def scenario():
        decision = await risk.validate(order)
        return decision, await details(oms, order.order_id)

    decision, (stored, events, trades) = asyncio.run(scenario())

    expected = ["SYMBOL_NOT_ALLOWED", "MAX_QUANTITY_EXCEEDED"]
    assert decision.order.status is S.REJECTED
    assert decision.token == ""
    assert [v.code for v in decision.violations] == expected
    assert stored.status is S.REJECTED
    assert stored.reject_reasons == expected
    assert statuses(events) == [S.PENDING, S.REJECTED]
    assert events[-1].reason == "risk: SYMBOL_NOT_ALLOWED,MAX_QUANTITY_EXCEEDED"
    assert [v["code"] for v in events[-1].payload["violations"]] == expected
    assert trades == []


def test_halted_trading_rejects_new_orders_with_trading_halted(risk, make_order):
    async def scenario():
        await risk.set_trading_state(TradingState.HALTED, "operator-1", "incident")
        return await risk.validate(make_order())

    decision = asyncio.run(scenario())

    assert decision.order.status is S.REJECTED
    assert [v.code for v in decision.violations] == ["TRADING_HALTED"]


def test_a_rejected_order_cannot_be_submitted_even_with_a_valid_signature(risk, oms, exchange, keyring, make_order):
    order = make_order(quantity=Decimal("1000"))

    async def scenario():
        decision = await risk.validate(order)
        token = core_ext.sign_token(keyring, decision.order.token_body(), int(time.time()))
        with pytest.raises(PreconditionFailed) as raised:
            await oms.submit(as_sent(decision.order), token)
        return raised.value, await details(oms, order.order_id)

    error, (stored, _, _) = asyncio.run(scenario())

    assert error.reason == "ORDER_NOT_APPROVED"
    assert stored.status is S.REJECTED
    assert exchange.execute_requests == []


def test_validate_is_idempotent_for_the_same_content(risk, oms, db, make_order):
    first_order = make_order()
    retry = dataclasses.replace(first_order, order_id="11111111-2222-4333-8444-555555555555", quantity=Decimal("0.010"))

    async def scenario():
        first = await risk.validate(first_order)
        second = await risk.validate(retry)
        listed, _ = await oms.list_orders(account=first_order.account)
        return first, second, listed, await details(oms, first_order.order_id)

    first, second, listed, (stored, events, _) = asyncio.run(scenario())

    assert second.order.order_id == first.order.order_id == stored.order_id
    assert second.order.status is S.APPROVED
    assert second.token  # a token for the stored order, usable to submit it
    assert second.order.same_economics(stored)
    assert [o.order_id for o in listed] == [first_order.order_id]
    assert statuses(events) == [S.PENDING, S.APPROVED]  # nothing new written


def test_validate_of_a_rejected_order_again_returns_the_same_rejection(risk, make_order):
    order = make_order(quantity=Decimal("1000"))
    retry = dataclasses.replace(order, order_id="11111111-2222-4333-8444-555555555555")

    async def scenario():
        first = await risk.validate(order)
        second = await risk.validate(retry)
        return first, second

    first, second = asyncio.run(scenario())

    assert second.order.order_id == first.order.order_id
    assert second.order.status is S.REJECTED
    assert [v.code for v in second.violations] == [v.code for v in first.violations] == [
        "MAX_QUANTITY_EXCEEDED",
        "MAX_NOTIONAL_EXCEEDED",
        "MAX_POSITION_EXCEEDED",  # 1000 BTC: 65,000,000 of notional
        "MAX_GROSS_EXPOSURE_EXCEEDED",
        "MAX_LEVERAGE_EXCEEDED",
    ]
    assert second.token == ""


@pytest.mark.parametrize(
    ("field", "value"),
    [("quantity", Decimal("0.02")), ("price", Decimal("64000")), ("symbol", "ETHUSDT")],
)
def test_validate_with_the_same_client_order_id_and_other_content_is_a_conflict(risk, oms, make_order, field, value):
    order = make_order()
    other = dataclasses.replace(order, order_id="11111111-2222-4333-8444-555555555555", **{field: value})

    async def scenario():
        await risk.validate(order)
        with pytest.raises(Conflict) as raised:
            await risk.validate(other)
        return raised.value, await details(oms, order.order_id)

    error, (stored, events, _) = asyncio.run(scenario())

    assert error.reason == "DUPLICATE_CLIENT_ORDER_ID"
    assert getattr(stored, field) == getattr(order, field)
    assert statuses(events) == [S.PENDING, S.APPROVED]


# -- token checks in the OMS -----------------------------------------------------------------------
def test_a_repeated_submission_is_answered_with_the_order_and_the_exchange_is_called_once(
    risk, oms, exchange, make_order
):
    async def scenario():
        decision = await approved(risk, make_order())
        first = await oms.submit(as_sent(decision.order), decision.token)
        again = await oms.submit(as_sent(decision.order), decision.token)
        return first, again, await details(oms, decision.order.order_id)

    first, again, (stored, events, trades) = asyncio.run(scenario())

    assert not first.replayed and again.replayed
    assert again.order.status is S.FILLED and again.order.version == stored.version
    assert [t.trade_id for t in again.trades] == [t.trade_id for t in first.trades]
    assert len(exchange.execute_requests) == 1
    assert stored.status is S.FILLED
    assert len(trades) == 1
    assert statuses(events).count(S.SUBMITTED) == 1


def test_tampered_quantity_is_refused_with_fields_changed_and_the_order_stays_approved(
    risk, oms, exchange, make_order
):
    async def scenario():
        decision = await approved(risk, make_order(quantity=Decimal("0.01")))
        tampered = dataclasses.replace(as_sent(decision.order), quantity=Decimal("10"))
        with pytest.raises(TokenRejected) as raised:
            await oms.submit(tampered, decision.token)
        return raised.value, await details(oms, decision.order.order_id)

    error, (stored, events, trades) = asyncio.run(scenario())

    assert error.reason == core_ext.TOKEN_FIELDS_CHANGED
    assert (stored.status, stored.quantity) == (S.APPROVED, Decimal("0.01"))
    assert statuses(events) == [S.PENDING, S.APPROVED]
    assert exchange.execute_requests == []
    assert trades == []


@pytest.mark.parametrize(
    ("case", "reason"),
    [("expired", core_ext.TOKEN_EXPIRED), ("tampered-signature", core_ext.TOKEN_BAD_SIGNATURE),
     ("missing", core_ext.TOKEN_MISSING)],
)
def test_an_invalid_token_is_refused_before_anything_is_written(risk, oms, exchange, keyring, make_order, case, reason):
    async def scenario():
        decision = await approved(risk, make_order())
        if case == "expired":
            token = core_ext.sign_token(keyring, decision.order.token_body(), int(time.time()) - 3600)
        elif case == "tampered-signature":
            head, signature = decision.token.rsplit(".", 1)
            token = f"{head}.{'B' if signature[0] != 'B' else 'C'}{signature[1:]}"
        else:
            token = ""
        with pytest.raises(TokenRejected) as raised:
            await oms.submit(as_sent(decision.order), token)
        return raised.value, await details(oms, decision.order.order_id)

    error, (stored, events, _) = asyncio.run(scenario())

    assert error.reason == reason
    assert stored.status is S.APPROVED and len(events) == 2
    assert exchange.execute_requests == []


def test_submit_of_an_order_risk_never_stored_is_not_found(oms, exchange, keyring, make_order):
    order = make_order()
    token = core_ext.sign_token(keyring, order.token_body(), int(time.time()))

    with pytest.raises(OrderNotFound):
        asyncio.run(oms.submit(order, token))

    assert exchange.execute_requests == []


# -- exchange failures -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("code", "details_text", "reason"),
    [
        (grpc.StatusCode.PERMISSION_DENIED, "TOKEN_FIELDS_CHANGED: the order's fields differ", "TOKEN_FIELDS_CHANGED"),
        (grpc.StatusCode.FAILED_PRECONDITION, "LEVERAGE_NOT_SET: set leverage first", "LEVERAGE_NOT_SET"),
        (grpc.StatusCode.INVALID_ARGUMENT, "bad order", "INVALID_ARGUMENT"),
        (grpc.StatusCode.PERMISSION_DENIED, "CALLER_NOT_OMS: only the OMS may call ExecuteOrder", "CALLER_NOT_OMS"),
        (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_EXPIRED: the risk token has expired", "TOKEN_EXPIRED"),
    ],
)
def test_a_definitive_exchange_refusal_rejects_the_order_without_a_trade(
    risk, oms, exchange, make_order, code, details_text, reason
):
    exchange.execute_failure = rpc_error(code, details_text)

    async def scenario():
        decision = await approved(risk, make_order())
        submission = await oms.submit(as_sent(decision.order), decision.token)
        return submission, await details(oms, decision.order.order_id)

    submission, (stored, events, trades) = asyncio.run(scenario())

    assert submission.order.status is S.REJECTED and submission.trades == []
    assert stored.status is S.REJECTED
    assert stored.reject_reasons == [reason]
    assert statuses(events) == [S.PENDING, S.APPROVED, S.SUBMITTED, S.REJECTED]
    assert events[-1].reason == f"exchange: {reason}"
    assert trades == []
    assert len(exchange.execute_requests) == 1


def test_the_paper_venue_refusing_an_unpriced_symbol_rejects_the_order(risk, oms, exchange, make_order):
    # SOLUSDT passes risk (it has a reference price) but the paper venue has no price for it.
    async def scenario():
        decision = await approved(risk, make_order(symbol="SOLUSDT", price=Decimal("150")))
        await oms.submit(as_sent(decision.order), decision.token)
        return await details(oms, decision.order.order_id)

    stored, events, trades = asyncio.run(scenario())

    assert stored.status is S.REJECTED
    assert stored.reject_reasons == ["INVALID_ARGUMENT"]
    assert "symbol" in events[-1].payload["detail"]
    assert trades == []


@pytest.mark.parametrize("code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED])
def test_no_answer_from_the_exchange_leaves_the_order_submitted_and_never_resends(
    risk, oms, exchange, make_order, code
):
    exchange.execute_failure = rpc_error(code, "no answer")

    async def scenario():
        decision = await approved(risk, make_order())
        submission = await oms.submit(as_sent(decision.order), decision.token)
        again = await oms.submit(as_sent(decision.order), decision.token)  # the client retries
        return submission, again, await details(oms, decision.order.order_id)

    submission, again, (stored, events, trades) = asyncio.run(scenario())

    assert submission.order.status is S.SUBMITTED and submission.trades == []
    assert again.replayed and again.order.status is S.SUBMITTED  # still in doubt: answered, not resent
    assert stored.status is S.SUBMITTED
    assert statuses(events) == [S.PENDING, S.APPROVED, S.SUBMITTED]
    assert trades == []
    assert len(exchange.execute_requests) == 1


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (grpc.StatusCode.PERMISSION_DENIED, "TOKEN_ALREADY_USED: order was already executed"),
        # The venue refuses a second order with the same client order id: it holds the first.
        (grpc.StatusCode.FAILED_PRECONDITION, "DUPLICATE_CLIENT_ORDER_ID: venue answered HTTP 400 code -4116"),
    ],
    ids=["already-executed", "duplicate-at-venue"],
)
def test_exchange_saying_the_order_was_already_executed_leaves_it_in_doubt(
    risk, oms, exchange, make_order, code, message
):
    # PERMISSION_DENIED and FAILED_PRECONDITION are usually definitive refusals, but these
    # mean the Exchange or the venue has this order already: the venue may hold it.
    exchange.execute_failure = rpc_error(code, message)

    async def scenario():
        decision = await approved(risk, make_order())
        submission = await oms.submit(as_sent(decision.order), decision.token)
        return submission, await details(oms, decision.order.order_id)

    submission, (stored, events, trades) = asyncio.run(scenario())

    assert submission.order.status is S.SUBMITTED
    assert stored.status is S.SUBMITTED and stored.reject_reasons == []
    assert statuses(events) == [S.PENDING, S.APPROVED, S.SUBMITTED]
    assert len(exchange.execute_requests) == 1


def test_the_oms_signs_every_exchange_call(risk, oms, exchange, make_order):
    # The fake exchange authorizes like the real servicer: these calls only succeed
    # with the OMS's per-call credential.
    async def scenario():
        decision = await approved(risk, resting_order(make_order))
        submission = await oms.submit(as_sent(decision.order), decision.token)
        cancelled = await oms.cancel(decision.order.order_id)
        await follow_until_drained(oms, exchange)
        return submission, cancelled

    submission, cancelled = asyncio.run(scenario())

    assert submission.order.status is S.ACCEPTED
    assert cancelled.status is S.CANCELLED
    assert len(exchange.streams) == 1


def test_two_concurrent_submits_of_the_same_order_and_token_one_wins(risk, oms, exchange, make_order):
    async def scenario():
        decision = await approved(risk, make_order())
        results = await asyncio.gather(
            oms.submit(as_sent(decision.order), decision.token),
            oms.submit(as_sent(decision.order), decision.token),
            return_exceptions=True,
        )
        return results, await details(oms, decision.order.order_id)

    results, (stored, events, trades) = asyncio.run(scenario())

    wins = [r for r in results if isinstance(r, Submission) and not r.replayed]
    repeats = [r for r in results if isinstance(r, Submission) and r.replayed]
    assert (len(wins), len(repeats)) == (1, 1), results
    # The repeat is answered with the order as it was then: the winner still under way, or done.
    assert repeats[0].order.status in (S.SUBMITTED, S.FILLED)
    assert len(exchange.execute_requests) == 1
    assert stored.status is S.FILLED
    assert len(trades) == 1
    assert statuses(events).count(S.SUBMITTED) == 1


# -- cancels ----------------------------------------------------------------------------------------
def resting_order(make_order) -> Order:
    """A buy limit below the paper market: it rests ACCEPTED at the venue."""
    return make_order(price=Decimal("60000"))


def test_cancel_of_an_approved_order_cancels_it_without_calling_the_exchange(risk, oms, exchange, make_order):
    async def scenario():
        decision = await approved(risk, make_order())
        cancelled = await oms.cancel(decision.order.order_id)
        return cancelled, await details(oms, decision.order.order_id)

    cancelled, (stored, events, _) = asyncio.run(scenario())

    assert cancelled.status is S.CANCELLED and stored.status is S.CANCELLED
    assert statuses(events) == [S.PENDING, S.APPROVED, S.CANCELLED]
    assert exchange.cancel_requests == [] and exchange.execute_requests == []


def test_an_order_cancelled_before_submission_cannot_be_submitted(risk, oms, exchange, make_order):
    async def scenario():
        decision = await approved(risk, make_order())
        await oms.cancel(decision.order.order_id)
        with pytest.raises(PreconditionFailed):
            await oms.submit(as_sent(decision.order), decision.token)

    asyncio.run(scenario())

    assert exchange.execute_requests == []


def test_cancel_of_a_resting_order_goes_through_pending_cancel_to_cancelled(risk, oms, exchange, make_order):
    async def scenario():
        decision = await approved(risk, resting_order(make_order))
        submission = await oms.submit(as_sent(decision.order), decision.token)
        assert submission.order.status is S.ACCEPTED
        cancelled = await oms.cancel(decision.order.order_id)
        return cancelled, await details(oms, decision.order.order_id)

    cancelled, (stored, events, trades) = asyncio.run(scenario())

    assert cancelled.status is S.CANCELLED and stored.status is S.CANCELLED
    assert statuses(events) == [S.PENDING, S.APPROVED, S.SUBMITTED, S.ACCEPTED, S.PENDING_CANCEL, S.CANCELLED]
    (request,) = exchange.cancel_requests
    assert (request.order_id, request.remote_order_id) == (stored.order_id, stored.remote_order_id)
    assert trades == []


def test_cancel_refused_by_the_venue_returns_the_order_to_accepted(risk, oms, exchange, make_order):
    exchange.cancel_failure = rpc_error(grpc.StatusCode.NOT_FOUND, "UNKNOWN_ORDER: no open order")

    async def scenario():
        decision = await approved(risk, resting_order(make_order))
        await oms.submit(as_sent(decision.order), decision.token)
        result = await oms.cancel(decision.order.order_id)
        return result, await details(oms, decision.order.order_id)

    result, (stored, events, _) = asyncio.run(scenario())

    assert result.status is S.ACCEPTED and stored.status is S.ACCEPTED
    assert stored.previous_status is None
    assert statuses(events)[-3:] == [S.ACCEPTED, S.PENDING_CANCEL, S.ACCEPTED]
    assert "UNKNOWN_ORDER" in events[-1].reason
    assert len(exchange.cancel_requests) == 1


def test_cancel_without_an_answer_leaves_the_order_pending_cancel(risk, oms, exchange, make_order):
    exchange.cancel_failure = rpc_error(grpc.StatusCode.UNAVAILABLE, "no answer")

    async def scenario():
        decision = await approved(risk, resting_order(make_order))
        await oms.submit(as_sent(decision.order), decision.token)
        with pytest.raises(VenueUnavailable):  # UNAVAILABLE to the caller
            await oms.cancel(decision.order.order_id)
        return await details(oms, decision.order.order_id)

    stored, _, _ = asyncio.run(scenario())

    assert stored.status is S.PENDING_CANCEL
    assert stored.previous_status is S.ACCEPTED


def test_cancel_of_a_filled_order_is_refused_as_not_open(risk, oms, exchange, make_order):
    async def scenario():
        decision = await approved(risk, make_order())
        await oms.submit(as_sent(decision.order), decision.token)
        with pytest.raises(PreconditionFailed) as raised:
            await oms.cancel(decision.order.order_id)
        return raised.value

    assert asyncio.run(scenario()).reason == "ORDER_NOT_OPEN"
    assert exchange.cancel_requests == []


# -- the execution report stream ------------------------------------------------------------------
def test_a_resting_order_filled_later_is_applied_from_the_report_stream(risk, oms, exchange, make_order):
    # The answer acknowledges the order; its fill, found when the book crosses it
    # later, reaches the OMS on the report stream (the answer's reports never do).
    async def scenario():
        decision = await approved(risk, resting_order(make_order))
        await oms.submit(as_sent(decision.order), decision.token)
        exchange.provider.source.prices["BTCUSDT"] = Decimal("59000")  # the book now crosses the limit
        await exchange.engine.reports.append(await exchange.provider.tick())
        await follow_until_drained(oms, exchange)
        return await details(oms, decision.order.order_id)

    stored, events, trades = asyncio.run(scenario())

    assert exchange.streams[0].cancelled
    assert stored.status is S.FILLED, statuses(events)
    assert statuses(events) == [S.PENDING, S.APPROVED, S.SUBMITTED, S.ACCEPTED, S.FILLED]
    assert len(trades) == 1


def test_a_late_copy_of_accepted_does_not_undo_a_pending_cancel(risk, oms, exchange, make_order):
    # The venue acknowledged the order (ExecuteOrder answer), the cancel request got no
    # answer (PENDING_CANCEL), then a late copy of the ACCEPTED acknowledgement arrives
    # (a reconciler, another path): the cancel is still pending, the order must say so.
    exchange.cancel_failure = rpc_error(grpc.StatusCode.UNAVAILABLE, "no answer")

    async def scenario():
        decision = await approved(risk, resting_order(make_order))
        await oms.submit(as_sent(decision.order), decision.token)
        with pytest.raises(VenueUnavailable):  # UNAVAILABLE to the caller
            await oms.cancel(decision.order.order_id)
        late = [r for r in exchange.answered if r.order_id == decision.order.order_id]
        assert [r.order_status for r in late] == [S.ACCEPTED]
        await oms.apply_reports(decision.order.order_id, late)
        return await details(oms, decision.order.order_id)

    stored, events, _ = asyncio.run(scenario())

    assert stored.status is S.PENDING_CANCEL, statuses(events)
