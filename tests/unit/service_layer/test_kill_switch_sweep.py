"""The kill switch's venue-wide cancel (``Cancels.emergency_cancel_all``) over the fake
store and a fake Exchange: sent again while some account or symbol fails, at most the
configured number of times, what still failed answered and counted, trading HALTED
either way."""

from __future__ import annotations

import asyncio

import grpc
from prometheus_client import REGISTRY
from service_layer_support import RESTING, TTL

from services.domain import MarketType, OrderStatus, TradingState
from services.domain.execution import CancelFailure
from services.oms.cancels import Cancels
from services.oms.gateway import Refusal, Swept

REFUSED = CancelFailure("desk-a", MarketType.FUTURES, "", "VENUE_UNAUTHORIZED", "GET openOrders: HTTP 401 -1002")


def failures_counted(reason: str) -> float:
    return REGISTRY.get_sample_value("tessera_kill_switch_failures_total", {"reason": reason}) or 0.0


def kill_switch(submitter, gateway, clock, attempts=3):
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    cancels = Cancels(submitter, gateway, ttl_seconds=TTL, clock=clock.now, sweep_attempts=attempts,
                      sweep_backoff=0.5, sleep=sleep)
    return cancels, slept


def halted(db) -> TradingState:
    return db.read_sync(lambda uow: uow.trading_state.get().state)


def test_a_sweep_that_keeps_failing_is_sent_a_bounded_number_of_times_and_its_failures_answered_and_counted(
        submitter, gateway, clock, db, approved):
    order, token = approved(**RESTING)
    asyncio.run(submitter.submit(order, token))
    gateway.sweeps = [Swept([], [REFUSED])] * 5
    cancels, slept = kill_switch(submitter, gateway, clock, attempts=3)
    before = failures_counted("VENUE_UNAUTHORIZED")

    done = asyncio.run(cancels.emergency_cancel_all("ops", "test"))

    assert gateway.swept == 3 and slept == [0.5, 1.0]
    assert done.failures == [REFUSED]
    assert failures_counted("VENUE_UNAUTHORIZED") - before == 1
    assert [(o.order_id, o.status) for o in done.orders] == [(order.order_id, OrderStatus.CANCELLED)]
    assert halted(db) is TradingState.HALTED


def test_a_sweep_that_succeeds_on_its_second_attempt_answers_no_failure(submitter, gateway, clock, db):
    gateway.sweeps = [Swept([], [REFUSED])]
    cancels, slept = kill_switch(submitter, gateway, clock)
    before = failures_counted("VENUE_UNAUTHORIZED")

    done = asyncio.run(cancels.emergency_cancel_all("ops", "test"))

    assert gateway.swept == 2 and slept == [0.5]
    assert done.failures == []
    assert failures_counted("VENUE_UNAUTHORIZED") == before
    assert halted(db) is TradingState.HALTED


def test_an_exchange_that_never_answers_is_one_failure_named_exchange_unavailable(submitter, gateway, clock, db):
    gateway.sweeps = [Refusal(grpc.StatusCode.UNAVAILABLE, "UNAVAILABLE", "failed to connect")] * 3
    cancels, _ = kill_switch(submitter, gateway, clock)
    before = failures_counted("EXCHANGE_UNAVAILABLE")

    done = asyncio.run(cancels.emergency_cancel_all("ops", "test"))

    assert gateway.swept == 3
    assert [(f.account, f.market_type, f.symbol, f.reason) for f in done.failures] == [
        ("", None, "", "EXCHANGE_UNAVAILABLE")]
    assert failures_counted("EXCHANGE_UNAVAILABLE") - before == 1
    assert halted(db) is TradingState.HALTED


def test_one_order_whose_cancel_fails_stops_neither_the_other_cancels_nor_the_venue_wide_sweep(
        submitter, gateway, clock, db, approved):
    orders = [approved(**RESTING) for _ in range(2)]
    for order, token in orders:
        asyncio.run(submitter.submit(order, token))
    gateway.sweeps = [Swept([], [])]
    cancels, _ = kill_switch(submitter, gateway, clock)
    failing = orders[0][0].order_id
    cancel = cancels.cancel

    async def flaky(order_id: str, *args, **kwargs):
        if order_id == failing:
            raise RuntimeError("the store refused this order's cancel")
        return await cancel(order_id, *args, **kwargs)

    cancels.cancel = flaky

    done = asyncio.run(cancels.emergency_cancel_all("ops", "test"))

    assert gateway.swept == 1  # the venue-wide cancel went all the same
    statuses = {o.order_id: o.status for o in done.orders}
    assert statuses[orders[1][0].order_id] is OrderStatus.CANCELLED
    # Its own cancel failed; the venue-wide sweep then cancelled it at the venue: answered as the sweep left it.
    assert statuses[failing] is OrderStatus.CANCELLED
    assert halted(db) is TradingState.HALTED


def test_an_order_the_sweep_cancels_after_its_own_cancel_found_nothing_is_answered_as_the_sweep_left_it(
        submitter, gateway, clock, db, approved):
    # The venue did not know the order yet when the OMS cancelled it (its placement was
    # still on its way), then the venue-wide sweep found it and cancelled it.
    order, token = approved(**RESTING)
    asyncio.run(submitter.submit(order, token))
    cancels, _ = kill_switch(submitter, gateway, clock)

    async def not_there_yet(order):
        return Refusal(grpc.StatusCode.NOT_FOUND, "UNKNOWN_ORDER", f"no open order {order.order_id}")

    gateway.cancel = not_there_yet

    done = asyncio.run(cancels.emergency_cancel_all("ops", "test"))

    assert [(o.order_id, o.status) for o in done.orders] == [(order.order_id, OrderStatus.CANCELLED)]
    assert db.read_sync(lambda uow: uow.orders.get(order.order_id).status) is OrderStatus.CANCELLED
