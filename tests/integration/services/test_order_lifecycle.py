"""Order lifecycle across the Risk and OMS engines: halts, expiry, and order-manager batches."""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal

import pytest

from fakes import FakeClock
from services.domain import OrderStatus, TimeInForce, TradingState, batches, utcnow
from services.domain.errors import InvalidOrder, PreconditionFailed
from services.oms.engine import OrderManagement
from services.risk.engine import RiskEngine
from svc_harness import LIMITS, S, approved, as_sent, details, statuses

FAR_BELOW_MARKET = Decimal("60000")  # a BUY limit here rests at the paper venue


def create_manager(db, identifier: str, account: str = "acct-1"):
    return db.run_sync(lambda uow: uow.order_managers.create_batch(identifier, account, utcnow(), batches.CREATED))[0]


def manager(db, identifier: str):
    """The stored batch row (a blocking read; fine between the steps of a scenario)."""
    return db.run_sync(lambda uow: uow.order_managers.get(identifier))


# -- trading halted at submission ------------------------------------------------------------------
def test_submission_while_halted_is_refused_and_the_order_stays_approved(risk, oms, exchange, db, make_order):
    async def scenario():
        decision = await approved(risk, make_order())
        await db.run(lambda uow: uow.trading_state.set(TradingState.HALTED, "ops", "venue incident"))
        with pytest.raises(PreconditionFailed) as refused:
            await oms.submit(as_sent(decision.order), decision.token)
        return refused.value, await details(oms, decision.order.order_id)

    error, (order, events, trades) = asyncio.run(scenario())

    assert error.reason == "TRADING_HALTED"
    assert "venue incident" in str(error)
    assert order.status is S.APPROVED
    assert statuses(events) == [S.PENDING, S.APPROVED]
    assert trades == [] and exchange.execute_requests == []


def test_an_order_approved_before_a_halt_can_go_once_trading_resumes(risk, oms, db, make_order):
    async def scenario():
        decision = await approved(risk, make_order(price=Decimal("65100")))
        await db.run(lambda uow: uow.trading_state.set(TradingState.HALTED, "ops", "pause"))
        with pytest.raises(PreconditionFailed):
            await oms.submit(as_sent(decision.order), decision.token)
        await db.run(lambda uow: uow.trading_state.set(TradingState.ACTIVE, "ops", "resume"))
        return await oms.submit(as_sent(decision.order), decision.token)

    assert asyncio.run(scenario()).order.status is S.FILLED


# -- expiry ---------------------------------------------------------------------------------------
def test_an_approved_order_whose_token_lapsed_expires_and_cannot_be_submitted(risk, oms, exchange, make_order):
    async def scenario():
        decision = await approved(risk, make_order())
        soon = utcnow() + dt.timedelta(seconds=10)
        not_yet = await oms.expire_due(soon)
        later = utcnow() + dt.timedelta(seconds=oms.ttl_seconds + 60)
        expired = await oms.expire_due(later)
        with pytest.raises(PreconditionFailed) as refused:
            await oms.submit(as_sent(decision.order), decision.token)
        return not_yet, expired, refused.value, await details(oms, decision.order.order_id)

    not_yet, expired, error, (order, events, _) = asyncio.run(scenario())

    assert not_yet == []
    assert [o.order_id for o in expired] == [order.order_id]
    assert order.status is S.EXPIRED
    assert events[-1].reason == "risk token expired before submission"
    assert error.reason == "ORDER_NOT_APPROVED"
    assert exchange.execute_requests == []


def test_revalidating_an_approved_order_gives_a_fresh_token_and_restarts_its_expiry(db, keyring, make_order):
    clock = FakeClock(utcnow())
    risk = RiskEngine(db, keyring, LIMITS, clock=clock.now, monotonic=clock.monotonic)

    async def scenario():
        order = make_order()
        first = await approved(risk, order)
        clock.advance(1)  # a later issued-at second
        again = await approved(risk, make_order(client_order_id=order.client_order_id))
        return first, again

    first, again = asyncio.run(scenario())

    assert again.order.order_id == first.order.order_id
    assert again.token != first.token
    assert again.order.token_nonce == again.token.split(".")[3] != first.token.split(".")[3]
    assert again.order.updated_time == first.order.updated_time + dt.timedelta(seconds=1)
    assert int(again.token.split(".")[2]) == int(first.token.split(".")[2]) + 1  # issued a second later


def test_a_resting_gtd_order_is_cancelled_at_the_venue_and_expires_at_its_time(db, keyring, exchange, make_order):
    # Risk approved it 10 s ago (its clock) for an expiry 5 s ago, and the OMS submitted it
    # 8 s ago (its clock): the token is still good, the paper venue rests it, and the sweep
    # finds it due at once.
    now = utcnow()
    expire_at = now - dt.timedelta(seconds=5)
    risk = RiskEngine(db, keyring, LIMITS, clock=FakeClock(now - dt.timedelta(seconds=10)).now)
    oms = OrderManagement(db, keyring, exchange, ttl_seconds=300, exchange_timeout=2.0,
                          clock=FakeClock(now - dt.timedelta(seconds=8)).now)

    async def scenario():
        decision = await approved(
            risk, make_order(price=FAR_BELOW_MARKET, time_in_force=TimeInForce.GTD, expire_time=expire_at)
        )
        resting = await oms.submit(as_sent(decision.order), decision.token)
        before = await oms.expire_due(expire_at - dt.timedelta(microseconds=1))
        at_time = await oms.expire_due(utcnow())
        return resting, before, at_time, await details(oms, decision.order.order_id)

    resting, before, at_time, (order, events, trades) = asyncio.run(scenario())

    assert resting.order.status is S.ACCEPTED
    assert before == []
    assert [o.status for o in at_time] == [S.EXPIRED]
    assert statuses(events)[-2:] == [S.ACCEPTED, S.EXPIRED]
    assert events[-1].reason == "GTD expire time reached"
    assert len(exchange.cancel_requests) == 1 and trades == []


def test_a_gtd_order_the_venue_cancels_after_its_time_is_recorded_expired(stored_order, store):
    from services.domain.execution import ExecutionReport
    from services.oms.fill_tracker import apply_report

    order = stored_order(S.ACCEPTED, time_in_force=TimeInForce.GTD, expire_time=utcnow() - dt.timedelta(seconds=1))
    report = ExecutionReport(
        order_id=order.order_id, client_order_id=order.client_order_id, venue=order.venue, account=order.account,
        symbol=order.symbol, side=order.side, order_status=S.CANCELLED, transact_time=utcnow(),
    )
    with store.uow() as uow:
        apply_report(uow, report)
        uow.commit()
    with store.uow() as uow:
        assert uow.orders.get(order.order_id).status is S.EXPIRED


def test_a_gtd_order_with_a_cancel_pending_past_its_time_ends_cancelled(stored_order, store):
    from services.domain.execution import ExecutionReport
    from services.oms.fill_tracker import apply_report

    order = stored_order(
        S.PENDING_CANCEL, time_in_force=TimeInForce.GTD, expire_time=utcnow() - dt.timedelta(seconds=1)
    )
    report = ExecutionReport(
        order_id=order.order_id, client_order_id=order.client_order_id, venue=order.venue, account=order.account,
        symbol=order.symbol, side=order.side, order_status=S.CANCELLED, transact_time=utcnow(),
    )
    with store.uow() as uow:
        apply_report(uow, report)
        uow.commit()
    with store.uow() as uow:
        assert uow.orders.get(order.order_id).status is S.CANCELLED


def test_validating_a_gtd_order_already_past_its_time_is_invalid(risk, make_order):
    past = utcnow() - dt.timedelta(seconds=1)
    with pytest.raises(InvalidOrder, match="expire_time"):
        asyncio.run(risk.validate(make_order(time_in_force=TimeInForce.GTD, expire_time=past)))


# -- order-manager batches ---------------------------------------------------------------------------
def test_an_order_naming_an_unknown_order_manager_is_invalid(risk, make_order):
    with pytest.raises(InvalidOrder, match="order_manager_id"):
        asyncio.run(risk.validate(make_order(order_manager_id="no-such-batch")))


def test_an_order_for_another_account_than_its_order_managers_is_invalid(risk, db, make_order):
    create_manager(db, "rebalance-acct-2", account="acct-2")
    with pytest.raises(InvalidOrder, match="targets another account"):
        asyncio.run(risk.validate(make_order(order_manager_id="rebalance-acct-2")))


def test_a_batch_status_follows_its_orders_to_completed(risk, oms, db, make_order):
    created = create_manager(db, "rebalance-1")
    assert created.status == batches.CREATED and created.order_received_time is None

    async def scenario():
        decisions = [
            await approved(risk, make_order(order_manager_id="rebalance-1", price=Decimal("65100")))
            for _ in range(2)
        ]
        received = manager(db, "rebalance-1")
        await oms.submit(as_sent(decisions[0].order), decisions[0].token)
        midway = manager(db, "rebalance-1")
        await oms.submit(as_sent(decisions[1].order), decisions[1].token)
        return decisions, received, midway

    decisions, received, midway = asyncio.run(scenario())
    done = manager(db, "rebalance-1")

    assert received.status == batches.EXECUTING
    assert received.order_received_time == decisions[0].order.order_time
    assert midway.status == batches.EXECUTING and midway.execution_end is None
    assert done.status == batches.COMPLETED
    assert done.execution_end is not None and done.execution_end >= done.order_received_time


def test_a_batch_with_a_rejected_order_completes_with_errors(risk, oms, db, make_order):
    create_manager(db, "rebalance-2")

    async def scenario():
        good = await approved(risk, make_order(order_manager_id="rebalance-2", price=Decimal("65100")))
        rejected = await risk.validate(make_order(order_manager_id="rebalance-2", quantity=Decimal("50")))
        assert rejected.order.status is S.REJECTED
        await oms.submit(as_sent(good.order), good.token)

    asyncio.run(scenario())
    assert manager(db, "rebalance-2").status == batches.COMPLETED_WITH_ERRORS


def test_a_batch_with_a_resting_order_keeps_executing_until_it_is_cancelled(risk, oms, db, make_order):
    create_manager(db, "rebalance-3")

    async def scenario():
        resting = await approved(risk, make_order(order_manager_id="rebalance-3", price=FAR_BELOW_MARKET))
        await oms.submit(as_sent(resting.order), resting.token)
        executing = manager(db, "rebalance-3")
        await oms.cancel(resting.order.order_id)
        return executing

    assert asyncio.run(scenario()).status == batches.EXECUTING
    finished = manager(db, "rebalance-3")
    assert finished.status == batches.COMPLETED_WITH_ERRORS and finished.execution_end is not None


def test_a_batch_whose_orders_were_all_rejected_completes_with_errors_with_its_end(risk, db, make_order):
    create_manager(db, "rebalance-4")

    async def scenario():
        for _ in range(2):
            decision = await risk.validate(make_order(order_manager_id="rebalance-4", quantity=Decimal("50")))
            assert decision.order.status is S.REJECTED

    asyncio.run(scenario())
    done = manager(db, "rebalance-4")
    assert done.status == batches.COMPLETED_WITH_ERRORS and done.execution_end is not None


def test_a_completed_batch_resumed_with_another_order_executes_again_until_that_one_ends(risk, oms, db, make_order):
    create_manager(db, "rebalance-5")

    async def scenario():
        first = await approved(risk, make_order(order_manager_id="rebalance-5", price=Decimal("65100")))
        await oms.submit(as_sent(first.order), first.token)
        completed = manager(db, "rebalance-5")
        later = await approved(risk, make_order(order_manager_id="rebalance-5", price=Decimal("65100")))
        resumed = manager(db, "rebalance-5")
        await oms.submit(as_sent(later.order), later.token)
        return completed, resumed

    completed, resumed = asyncio.run(scenario())
    done = manager(db, "rebalance-5")

    assert completed.status == batches.COMPLETED and completed.execution_end is not None
    assert resumed.status == batches.EXECUTING and resumed.execution_end is None
    assert resumed.order_received_time == completed.order_received_time  # its first order's time, kept
    assert done.status == batches.COMPLETED and done.execution_end >= completed.execution_end


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ({}, batches.CREATED),
        ({OrderStatus.APPROVED: 1, OrderStatus.FILLED: 3}, batches.EXECUTING),
        ({OrderStatus.PENDING_CANCEL: 1}, batches.EXECUTING),
        ({OrderStatus.FILLED: 4}, batches.COMPLETED),
        ({OrderStatus.FILLED: 3, OrderStatus.EXPIRED: 1}, batches.COMPLETED_WITH_ERRORS),
        ({OrderStatus.REJECTED: 2}, batches.COMPLETED_WITH_ERRORS),
    ],
)
def test_batch_status_is_derived_from_its_orders_statuses(counts, expected):
    assert batches.batch_status(counts) == expected


# -- the effective trading state at submission ---------------------------------------------------
def test_a_quarantined_symbol_refuses_submission_while_others_trade(risk, oms, exchange, db, make_order):
    from services.store.repositories import symbol_scope

    async def scenario():
        btc = await approved(risk, make_order(price=Decimal("65100")))
        eth = await approved(risk, make_order(symbol="ETHUSDT", price=Decimal("3300")))
        await db.run(lambda uow: uow.trading_state.set(TradingState.HALTED, "reconciler", "unexplained fill",
                                                       scope=symbol_scope("BTCUSDT")))
        with pytest.raises(PreconditionFailed) as refused:
            await oms.submit(as_sent(btc.order), btc.token)
        return refused.value, await oms.submit(as_sent(eth.order), eth.token)

    error, eth = asyncio.run(scenario())

    assert error.reason == "TRADING_HALTED" and "unexplained fill" in str(error)
    assert eth.order.status is S.FILLED


def test_reducing_at_submission_refuses_an_order_approved_to_open_a_position(risk, oms, exchange, db, make_order):
    async def scenario():
        decision = await approved(risk, make_order(price=Decimal("65100")))
        await db.run(lambda uow: uow.trading_state.set(TradingState.REDUCING, "ops", "de-risk"))
        with pytest.raises(PreconditionFailed) as refused:
            await oms.submit(as_sent(decision.order), decision.token)
        return refused.value

    assert asyncio.run(scenario()).reason == "REDUCING_ONLY"
    assert exchange.execute_requests == []


def _held_at_submission(risk, oms, db, make_order, held, order):
    """Fill ``held`` (orders, at the paper venue while trading is ACTIVE), have ``order``
    approved, set REDUCING, then submit it: the OMS's answer, or its refusal."""
    from services.domain import MarketType, OrderType

    async def scenario():
        for market, side, quantity in held:
            decision = await approved(risk, make_order(market_type=market, side=side, order_type=OrderType.MARKET,
                                                       price=None, quantity=Decimal(quantity)))
            assert (await oms.submit(as_sent(decision.order), decision.token)).order.status is S.FILLED
        await risk.sync()
        decision = await approved(risk, make_order(market_type=MarketType.FUTURES, order_type=OrderType.MARKET,
                                                   price=None, **order))
        await db.run(lambda uow: uow.trading_state.set(TradingState.REDUCING, "ops", "de-risk"))
        try:
            return await oms.submit(as_sent(decision.order), decision.token)
        except PreconditionFailed as refused:
            return refused

    return asyncio.run(scenario())


def test_reducing_at_submission_refuses_a_futures_order_that_would_flip_the_futures_position_whatever_spot_holds(
        risk, oms, exchange, db, make_order):
    """The futures position is 0.01: a futures sell of 0.015 would flip it, although the
    spot holding of the same symbol makes the account's trades add up to 0.02."""
    from services.domain import MarketType, Side

    answer = _held_at_submission(risk, oms, db, make_order,
                                 [(MarketType.FUTURES, Side.BUY, "0.01"), (MarketType.SPOT, Side.BUY, "0.01")],
                                 dict(side=Side.SELL, quantity=Decimal("0.015")))

    assert isinstance(answer, PreconditionFailed) and answer.reason == "REDUCING_ONLY", answer


def test_reducing_at_submission_lets_a_futures_order_reduce_the_futures_position_whatever_spot_holds(
        risk, oms, exchange, db, make_order):
    """The futures position is 0.01 long: a futures sell of 0.005 only reduces it, although
    a spot sale of 0.01 in the same symbol makes the account's trades add up to 0."""
    from services.domain import MarketType, Side

    answer = _held_at_submission(risk, oms, db, make_order,
                                 [(MarketType.FUTURES, Side.BUY, "0.01"), (MarketType.SPOT, Side.SELL, "0.01")],
                                 dict(side=Side.SELL, quantity=Decimal("0.005")))

    assert not isinstance(answer, Exception), answer
    assert answer.order.status is S.FILLED


def test_effective_state_is_the_stricter_of_global_and_symbol(db):
    from services.store.repositories import symbol_scope

    def effective(uow):
        return uow.trading_state.effective("BTCUSDT").state, uow.trading_state.effective("ETHUSDT").state

    assert db.run_sync(effective) == (TradingState.ACTIVE, TradingState.ACTIVE)
    db.run_sync(lambda uow: uow.trading_state.set(TradingState.HALTED, "rec", "q", scope=symbol_scope("BTCUSDT")))
    db.run_sync(lambda uow: uow.trading_state.set(TradingState.REDUCING, "ops", "r"))
    assert db.run_sync(effective) == (TradingState.HALTED, TradingState.REDUCING)
