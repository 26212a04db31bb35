"""Risk's controls that depend on time, decided by the engine over the fake store with a
fake clock: the throttle's rolling window, the approval's lifetime among the open
orders, the daily loss reset at UTC midnight, the kill switch set elsewhere reaching
this replica after one state poll. No test waits for any of it."""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal

import order_factory
from fakes import FakeClock, FakeDatabase, FakeRiskSource

import core_ext
from services.domain import OrderStatus, TradingState
from services.domain.ledger import Position
from services.risk.engine import RiskEngine
from services.risk.limits import RiskLimits
from services.store.trading_state import GLOBAL_SCOPE

UTC = dt.timezone.utc
TICK = dt.timedelta(microseconds=1)
LIMITS = dict(
    allowed_symbols=frozenset({"BTCUSDT"}), max_notional_per_order=Decimal("250000"),
    max_quantity_per_order=Decimal("100"), max_price=Decimal("10000000"),
    reference_prices={"BTCUSDT": Decimal("65000")}, approval_lifetime_seconds=300,
    order_rate_limit=None, max_open_orders=None, daily_loss_limit=None,
)


def engine(clock: FakeClock, db: FakeDatabase, source: FakeRiskSource | None = None, **limits) -> RiskEngine:
    return RiskEngine(db, core_ext.KeyRing("risk1", b"risk-time-controls-secret-0123456789"),
                      RiskLimits(**{**LIMITS, **limits}), clock=clock.now, monotonic=clock.monotonic,
                      source=source or FakeRiskSource(db), state_poll_seconds=1.0)


def decide(risk: RiskEngine, **fields):
    order = order_factory.build_order(**{"quantity": Decimal("0.01"), "price": Decimal("65000"), **fields})
    decision = asyncio.run(risk.validate(order))
    return decision.order.status, [v.code for v in decision.violations]


def test_the_order_rate_window_rolls_forward_with_the_clock(clock, db):
    risk = engine(clock, db, order_rate_limit=3, order_rate_window_seconds=60)
    first = [decide(risk)]
    for _ in range(2):
        clock.advance(20)
        first.append(decide(risk))
    clock.advance(20)  # the first order is exactly 60 s old: still inside the window
    at_the_edge = decide(risk)
    clock.advance(dt.timedelta(seconds=20) + TICK)  # the first two have left it (the refused attempt never counted)
    later = decide(risk)

    assert first == [(OrderStatus.APPROVED, [])] * 3
    assert at_the_edge == (OrderStatus.REJECTED, ["ORDER_RATE_EXCEEDED"])
    assert later == (OrderStatus.APPROVED, [])
    stored = db.read_sync(lambda uow: [o.status for o in uow.orders.list(limit=10)[0]])
    assert stored.count(OrderStatus.REJECTED) == 1 and len(stored) == 5  # every decision was stored


def test_an_approval_counts_among_the_open_orders_as_long_as_its_token_is_accepted(clock, db):
    # The OMS accepts a token until issued_at + TTL + the allowed clock skew (5 s): Risk
    # counts the approval exactly that long, never less.
    risk = engine(clock, db, max_open_orders=2)
    held = [decide(risk), decide(risk)]
    clock.advance(300)  # five minutes old: still usable, still counted
    at_five_minutes = decide(risk)
    clock.advance(5)  # TTL + skew: the last instant counted
    at_the_skew = decide(risk)
    clock.advance(TICK)
    after = decide(risk)

    assert held == [(OrderStatus.APPROVED, [])] * 2
    assert at_five_minutes == (OrderStatus.REJECTED, ["MAX_OPEN_ORDERS_EXCEEDED"])
    assert at_the_skew == (OrderStatus.REJECTED, ["MAX_OPEN_ORDERS_EXCEEDED"])
    assert after == (OrderStatus.APPROVED, [])


def test_a_submitted_order_counts_after_its_token_would_have_lapsed(clock, db):
    risk = engine(clock, db, max_open_orders=1)
    assert decide(risk) == (OrderStatus.APPROVED, [])
    (order,) = db.read_sync(lambda uow: uow.orders.list()[0])

    def submit(uow):  # the OMS's claim, as the book learns it from the order events
        stored = uow.orders.get(order.order_id)
        stored.transition(OrderStatus.SUBMITTED, reason="oms: risk token verified", at=clock.now())
        uow.orders.save(stored)

    db.run_sync(submit)
    asyncio.run(risk.sync())
    clock.advance(3600)

    assert decide(risk) == (OrderStatus.REJECTED, ["MAX_OPEN_ORDERS_EXCEEDED"])


def test_the_daily_loss_resets_at_utc_midnight_and_not_a_microsecond_before(clock, db):
    clock.set(dt.datetime(2030, 1, 7, 23, 59, 50, tzinfo=UTC))
    source = FakeRiskSource(db, realised=[("acct-1", Decimal("-1500"))])  # lost today, before the engine started
    risk = engine(clock, db, source, daily_loss_limit=Decimal("1000"))

    def reset_by_operator():
        asyncio.run(risk.set_trading_state(TradingState.ACTIVE, "ops", "reviewed"))

    breach = decide(risk)
    tripped = db.read_sync(lambda uow: uow.trading_state.get())
    reset_by_operator()
    clock.set(dt.datetime(2030, 1, 8, tzinfo=UTC) - TICK)
    last_moment = decide(risk)
    reset_by_operator()
    clock.set(dt.datetime(2030, 1, 8, tzinfo=UTC))
    new_day = decide(risk)

    assert breach == (OrderStatus.REJECTED, ["DAILY_LOSS_LIMIT"])
    assert tripped.state is TradingState.HALTED and tripped.operator == "risk"  # the kill switch tripped
    assert last_moment == (OrderStatus.REJECTED, ["DAILY_LOSS_LIMIT"])
    assert new_day == (OrderStatus.APPROVED, [])


def test_a_kill_switch_set_on_another_replica_is_obeyed_after_one_state_poll(clock, db):
    risk = engine(clock, db)
    asyncio.run(risk.start())
    db.run_sync(lambda uow: uow.trading_state.set(TradingState.HALTED, "ops", "elsewhere", GLOBAL_SCOPE))
    asyncio.run(risk.sync())
    before_the_poll = decide(risk)
    clock.advance(1.0)  # state_poll_seconds on the monotonic clock
    asyncio.run(risk.sync())
    after_the_poll = decide(risk)

    assert before_the_poll == (OrderStatus.APPROVED, [])
    assert after_the_poll == (OrderStatus.REJECTED, ["TRADING_HALTED"])


def test_the_ledger_is_flushed_on_the_monotonic_clock(clock, db):
    source = FakeRiskSource(db)
    risk = RiskEngine(db, core_ext.KeyRing("risk1", b"risk-time-controls-secret-0123456789"),
                      RiskLimits(**LIMITS), clock=clock.now, monotonic=clock.monotonic, source=source,
                      flush_seconds=1.0)
    assert decide(risk) == (OrderStatus.APPROVED, [])
    (order,) = db.read_sync(lambda uow: uow.orders.list()[0])

    def fill(uow):
        stored = uow.orders.get(order.order_id)
        stored.transition(OrderStatus.SUBMITTED, at=clock.now())
        stored.apply_fill(order.quantity, Decimal("65000"), at=clock.now(),
                          payload={"trade_id": "t1", "quantity": str(order.quantity), "price": "65000",
                                   "commission": "0"})
        uow.orders.save(stored)

    db.run_sync(fill)
    asyncio.run(risk.sync())
    owed = list(source.ledger)
    clock.advance(1.0)
    asyncio.run(risk.sync())

    assert owed == []  # applied to the book at once, written on the next flush
    assert [entry["trade_id"] for entry in source.ledger] == ["t1"]
    assert risk.book.accounts["acct-1"].positions  # the book holds the position meanwhile


def test_the_daily_loss_trips_the_switch_once_per_account_and_period_and_again_after_the_reset(clock, db):
    # Long 1 BTC bought at 70,000, marked at 65,000: an unrealised loss of 5,000 that the
    # reset does not clear (a position carried over is not re-based).
    clock.set(dt.datetime(2030, 1, 7, 12, 0, tzinfo=UTC))
    held = Position("acct-1", "BTCUSDT", Decimal("1"), Decimal("70000"))
    risk = engine(clock, db, FakeRiskSource(db, positions=[held]), daily_loss_limit=Decimal("1000"))

    def operator_sets_active():
        asyncio.run(risk.set_trading_state(TradingState.ACTIVE, "ops", "reviewed"))

    def halts():
        return db.read_sync(lambda uow: [c.operator for c in uow.trading_state.history() if
                                         c.to_state is TradingState.HALTED])

    first = decide(risk)
    operator_sets_active()
    same_day = decide(risk)
    state_same_day = db.read_sync(lambda uow: uow.trading_state.get()).state
    clock.set(dt.datetime(2030, 1, 8, 0, 0, tzinfo=UTC))
    next_day = decide(risk)

    assert first == same_day == next_day == (OrderStatus.REJECTED, ["DAILY_LOSS_LIMIT"])
    assert state_same_day is TradingState.ACTIVE  # the operator's decision stands that day
    assert halts() == ["risk", "risk"]  # once on the 7th, once on the 8th
    assert db.read_sync(lambda uow: uow.trading_state.get()).state is TradingState.HALTED


def test_a_retry_of_an_approval_whose_token_lapsed_answers_it_expired_and_it_does_not_count_again(clock, db):
    # The OMS's sweep expires such an approval within a second; a retry before it must not
    # give the old decision a new token: it would count again among the open orders
    # (beyond the limit, never checked) and could be submitted.
    risk = engine(clock, db, max_open_orders=2)
    first = order_factory.build_order(quantity=Decimal("0.01"), price=Decimal("65000"))
    assert asyncio.run(risk.validate(first)).order.status is OrderStatus.APPROVED
    clock.advance(305.001)  # TTL + skew: its token can no longer be submitted
    assert decide(risk) == (OrderStatus.APPROVED, [])
    retried = asyncio.run(risk.validate(order_factory.build_order(
        client_order_id=first.client_order_id, quantity=first.quantity, price=first.price)))
    another = decide(risk)
    stored = db.read_sync(lambda uow: uow.orders.get(first.order_id))

    assert (retried.order.order_id, retried.order.status, retried.token) == (first.order_id, OrderStatus.EXPIRED, "")
    assert stored.status is OrderStatus.EXPIRED
    assert another == (OrderStatus.APPROVED, [])  # two open: the second and this one


def test_orders_the_throttle_refuses_do_not_count_in_its_window(clock, db):
    # A client sending faster than the limit gets the limit's rate through, not nothing:
    # its refused attempts do not keep the window full.
    risk = engine(clock, db, order_rate_limit=3, order_rate_window_seconds=60)
    approved = [decide(risk) for _ in range(3)]  # at 0 s
    refused = []
    for _ in range(5):
        clock.advance(10)
        refused.append(decide(risk))  # at 10 .. 50 s
    clock.advance(dt.timedelta(seconds=10) + TICK)  # the three approvals have left the window
    after = decide(risk)

    assert approved == [(OrderStatus.APPROVED, [])] * 3
    assert refused == [(OrderStatus.REJECTED, ["ORDER_RATE_EXCEEDED"])] * 5
    assert after == (OrderStatus.APPROVED, [])


def test_orders_refused_for_another_reason_do_not_count_in_the_throttle_window(clock, db):
    risk = engine(clock, db, order_rate_limit=2, order_rate_window_seconds=60)
    too_large = decide(risk, quantity=Decimal("101"))  # beyond the max quantity of 100
    first, second = decide(risk), decide(risk)

    assert too_large[0] is OrderStatus.REJECTED and "ORDER_RATE_EXCEEDED" not in too_large[1]
    assert first == second == (OrderStatus.APPROVED, [])
    assert decide(risk) == (OrderStatus.REJECTED, ["ORDER_RATE_EXCEEDED"])


def test_a_breach_met_by_a_halt_set_elsewhere_trips_the_switch_once_an_operator_sets_active(clock, db):
    # Another replica (another account's loss) halted trading a moment before this
    # replica's poll: this account's breach found it HALTED and changed nothing, so it has
    # not tripped the switch; after the operator sets ACTIVE, it does.
    clock.set(dt.datetime(2030, 1, 7, 12, 0, tzinfo=UTC))
    source = FakeRiskSource(db, realised=[("acct-1", Decimal("-1500"))])
    risk = engine(clock, db, source, daily_loss_limit=Decimal("1000"))
    asyncio.run(risk.start())
    db.run_sync(lambda uow: uow.trading_state.set(TradingState.HALTED, "risk", "DAILY_LOSS_LIMIT: account acct-9: x"))
    unseen = decide(risk)  # this replica has not polled the halt yet
    asyncio.run(risk.set_trading_state(TradingState.ACTIVE, "ops", "acct-9 reviewed"))
    after = decide(risk)
    state = db.read_sync(lambda uow: uow.trading_state.get())

    assert unseen == after == (OrderStatus.REJECTED, ["DAILY_LOSS_LIMIT"])
    assert (state.state, state.operator) == (TradingState.HALTED, "risk")
    assert "acct-1" in state.reason
