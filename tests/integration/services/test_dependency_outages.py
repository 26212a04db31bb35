"""The OMS through outages of what it depends on: the report follower outlives a store
outage (it resubscribes instead of dying), and an Exchange that does not answer a cancel
is UNAVAILABLE to the caller, without stopping a cancel-all halfway."""

from __future__ import annotations

import asyncio
import contextlib
from decimal import Decimal

import grpc
from sqlalchemy.exc import OperationalError

from services.domain import LiquiditySide, utcnow
from services.domain.execution import ExecutionReport, Fill
from services.oms.fill_tracker import apply_report

from svc_harness import S, approved, as_sent, details, rpc_error


def test_the_report_follower_survives_a_store_outage_and_applies_the_report_after_it(risk, oms, exchange, make_order):
    exchange.execute_failure = rpc_error(grpc.StatusCode.UNAVAILABLE, "no answer")  # the order is in doubt
    real_run, failures = oms.db.run, []

    async def flaky_run(fn, *args):
        if fn is apply_report and not failures:
            failures.append(fn)
            raise OperationalError("UPDATE orders_ts ...", {}, Exception("server closed the connection"))
        return await real_run(fn, *args)

    async def scenario():
        decision = await approved(risk, make_order())
        order = decision.order
        await oms.submit(as_sent(order), decision.token)
        oms.db.run = flaky_run
        await exchange.engine.reports.append([ExecutionReport(
            order.order_id, order.client_order_id, order.venue, order.account, order.symbol, order.side,
            S.FILLED, utcnow(), fill=Fill("late-1", order.quantity, Decimal("65000"), Decimal("1"), "USDT",
                                           LiquiditySide.TAKER))])
        follower = asyncio.create_task(oms.follow_exchange_reports(asyncio.Event()))
        try:
            for _ in range(300):
                stored, _, trades = await details(oms, order.order_id)
                if stored.status is S.FILLED:
                    break
                await asyncio.sleep(0.02)
            alive = not follower.done()
        finally:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
        return stored, trades, alive

    stored, trades, alive = asyncio.run(scenario())

    assert failures, "the store outage was injected"
    assert alive, "the follower is still running"
    assert len(exchange.streams) >= 2, "it resubscribed"
    assert stored.status is S.FILLED and [t.trade_id for t in trades] == ["late-1"]


def test_a_cancel_the_exchange_does_not_answer_is_unavailable_and_cancel_all_carries_on(risk, oms, exchange, make_order):
    # Before: the gRPC error escaped as INTERNAL, and one unanswered cancel stopped
    # CancelAllOrders (and EmergencyCancelAll) from cancelling the orders after it.
    from services.common.errors import describe
    from services.domain.errors import VenueUnavailable

    async def scenario():
        first = await approved(risk, make_order(price=Decimal("60000")))  # rests at the venue
        second = await approved(risk, make_order(price=Decimal("60000")))
        for decision in (first, second):
            await oms.submit(as_sent(decision.order), decision.token)
        exchange.cancel_failure = rpc_error(grpc.StatusCode.UNAVAILABLE, "no answer")
        try:
            await oms.cancel(first.order.order_id)
        except VenueUnavailable as error:
            raised = error
        results = await oms.cancel_all(first.order.symbol, first.order.account)
        return raised, results

    raised, results = asyncio.run(scenario())

    assert describe(raised)[0] is grpc.StatusCode.UNAVAILABLE
    assert len(results) == 2 and {o.status for o in results} == {S.PENDING_CANCEL}
    assert len(exchange.cancel_requests) == 3  # each order's cancel was sent, none skipped
