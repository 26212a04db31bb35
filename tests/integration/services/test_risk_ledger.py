"""RiskEngine on a real store (SQLite and PostgreSQL) with the controls the ledger and the
account's activity feed: position, exposure, daily loss and the kill switch, REDUCING,
open orders, the throttle, and which replica decides an account.

Fills go through the OMS's fill tracker (``apply_report``), as in production; Risk's
book follows them from the store (``RiskEngine.sync``, which the service runs every
few milliseconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import uuid
from decimal import Decimal

import pytest

from services.store.database import Database
from services.domain import LiquiditySide, MarketType, Order, OrderStatus, OrderType, Side, TradingState, utcnow
from services.domain.errors import PreconditionFailed
from services.domain.execution import ExecutionReport, Fill
from services.oms.fill_tracker import apply_report
from services.risk.engine import RiskEngine
from services.risk.limits import RiskLimits
from services.store import Store
from services.store.repositories import symbol_scope
from services.store.engine import make_engine

S = OrderStatus
FUTURES = MarketType.FUTURES
D = Decimal
PRICES = {"BTCUSDT": D("65000"), "ETHUSDT": D("3200"), "SOLUSDT": D("150")}
LIMITS = RiskLimits(
    allowed_symbols=frozenset(PRICES),
    max_notional_per_order=D("250000"),
    max_quantity_per_order=D("100"),
    max_price=D("10000000"),
    reference_prices=PRICES,
    max_position_notional=D("1300"),  # 0.02 BTC
    max_gross_exposure=D("2000"),
    max_leverage=None,
    daily_loss_limit=D("100"),
)


class MovablePrices:
    """A price source a test can move (the static one cannot)."""

    def __init__(self, prices: dict[str, Decimal]) -> None:
        self.prices = dict(prices)

    def reference_price(self, symbol: str) -> Decimal | None:
        return self.prices.get(symbol)


def engine(db: Database, keyring, **limit_changes) -> RiskEngine:
    return RiskEngine(db, keyring, dataclasses.replace(LIMITS, **limit_changes), flush_seconds=0)


async def validate(risk: RiskEngine, make_order, **fields):
    fields.setdefault("order_type", OrderType.MARKET)
    fields.setdefault("price", None)
    return await risk.validate(make_order(**fields))


def codes(decision) -> list[str]:
    return [v.code for v in decision.violations]


def fill(store: Store, order: Order, price: Decimal | None = None, fee: tuple[str, str] = ("0.1", "USDT")) -> None:
    """Submit the approved order and fill it whole through the fill tracker; ``fee``:
    (commission, its asset)."""
    with store.uow() as uow:
        stored = uow.orders.get(order.order_id)
        stored.transition(S.SUBMITTED)
        uow.orders.save(stored)
        apply_report(uow, ExecutionReport(
            order_id=stored.order_id, client_order_id=stored.client_order_id, venue=stored.venue,
            account=stored.account, symbol=stored.symbol, side=stored.side, order_status=S.FILLED,
            transact_time=utcnow(),
            fill=Fill(f"t-{uuid.uuid4().hex[:12]}", stored.quantity, price or PRICES[stored.symbol],
                      D(fee[0]), fee[1], LiquiditySide.TAKER),
        ))
        uow.commit()


async def bought(risk: RiskEngine, store: Store, make_order, quantity: str, price: str | None = None,
                 fee: tuple[str, str] = ("0.1", "USDT"), **fields):
    decision = await validate(risk, make_order, quantity=D(quantity), **fields)
    assert decision.order.status is S.APPROVED, decision.violations
    fill(store, decision.order, D(price) if price else None, fee)
    await risk.sync()
    return decision.order


def test_a_fill_moves_the_ledger_so_a_later_order_breaches_max_position(db, store, keyring, make_order):
    risk = engine(db, keyring)

    async def scenario():
        # Positions come from fills, never from order requests (an order still working
        # counts apart, as what it may still fill: tests/unit/service_layer/test_risk_working_exposure.py).
        first = await validate(risk, make_order, quantity=D("0.015"))
        fill(store, first.order)
        await risk.sync()
        return await validate(risk, make_order, quantity=D("0.01")), \
            await validate(risk, make_order, side=Side.SELL, quantity=D("0.01"))

    breach, reducing = asyncio.run(scenario())

    with store.uow(read_only=True) as uow:
        position = uow.positions.get("acct-1", "BTCUSDT")
    assert (position.quantity, position.average_entry_price, position.commission) == (D("0.015"), D("65000"), D("0.1"))
    assert codes(breach) == ["MAX_POSITION_EXCEEDED"]  # 0.025 BTC = 1625 > 1300
    assert "would be 0.025" in breach.violations[0].message
    assert reducing.order.status is S.APPROVED


def test_gross_exposure_sums_the_ledger_positions_of_every_symbol(db, store, keyring, make_order):
    risk = engine(db, keyring)

    async def scenario():
        await bought(risk, store, make_order, "0.015")  # 975
        await bought(risk, store, make_order, "0.3", symbol="ETHUSDT", side=Side.SELL)  # 960
        return (await validate(risk, make_order, symbol="SOLUSDT", quantity=D("0.5")),  # +75 = 2010
                await validate(risk, make_order, symbol="SOLUSDT", quantity=D("0.4")),  # +60 = 1995
                await risk.validate(make_order(symbol="ETHUSDT", quantity=D("0.1"), price=D("3200"))))

    too_much, within, reducing = asyncio.run(scenario())

    assert codes(too_much) == ["MAX_GROSS_EXPOSURE_EXCEEDED"]
    assert within.order.status is S.APPROVED
    assert reducing.order.status is S.APPROVED


def test_a_daily_loss_breach_trips_the_kill_switch_with_an_audit_entry(db, store, keyring, make_order):
    prices = MovablePrices(PRICES)
    risk = RiskEngine(db, keyring, LIMITS, prices)

    async def scenario():
        await bought(risk, store, make_order, "0.015")
        prices.prices["BTCUSDT"] = D("58000")  # 0.015 x -7000 = -105 unrealised
        breach = await validate(risk, make_order, symbol="ETHUSDT", quantity=D("0.01"))
        after = await validate(risk, make_order, symbol="ETHUSDT", quantity=D("0.01"))
        return breach, after, await risk.trading_state()

    breach, after, state = asyncio.run(scenario())

    with store.uow(read_only=True) as uow:
        history = uow.trading_state.history()
        stored = uow.orders.get(breach.order.order_id)
    assert codes(breach) == ["DAILY_LOSS_LIMIT"]
    assert "today's loss is 105.1" in breach.violations[0].message  # with the 0.1 commission
    assert stored.status is S.REJECTED and stored.reject_reasons == ["DAILY_LOSS_LIMIT"]
    assert state.state is TradingState.HALTED and state.operator == "risk"
    assert "DAILY_LOSS_LIMIT" in state.reason and "acct-1" in state.reason
    (change,) = history  # tripped once: the next order found it HALTED already
    assert (change.from_state, change.to_state, change.operator) == (TradingState.ACTIVE, TradingState.HALTED, "risk")
    assert codes(after) == ["TRADING_HALTED", "DAILY_LOSS_LIMIT"]


def breached(risk: RiskEngine, store: Store, make_order, prices: MovablePrices, account: str = "acct-1"):
    """``account`` buys 0.015 BTC and BTC falls to 58,000: a loss of 105.1 today (the 0.1
    commission with it), beyond the limit of 100."""
    async def scenario():
        await bought(risk, store, make_order, "0.015", account=account)
        prices.prices["BTCUSDT"] = D("58000")
    return scenario()


def test_an_operator_setting_active_after_the_daily_loss_tripped_the_switch_is_not_undone_by_the_same_breach(
        db, store, keyring, make_order):
    prices = MovablePrices(PRICES)
    risk = RiskEngine(db, keyring, LIMITS, prices)

    async def scenario():
        await breached(risk, store, make_order, prices)
        tripped = await validate(risk, make_order, symbol="ETHUSDT", quantity=D("0.01"))
        await risk.set_trading_state(TradingState.ACTIVE, "operator-1", "loss reviewed: others may trade")
        again = await validate(risk, make_order, symbol="ETHUSDT", quantity=D("0.01"))
        elsewhere = await validate(risk, make_order, account="acct-2", symbol="ETHUSDT", quantity=D("0.01"))
        return tripped, again, elsewhere, await risk.trading_state()

    tripped, again, elsewhere, state = asyncio.run(scenario())

    with store.uow(read_only=True) as uow:
        history = uow.trading_state.history()
    assert codes(tripped) == codes(again) == ["DAILY_LOSS_LIMIT"]  # the limit still refuses the account's orders
    assert elsewhere.order.status is S.APPROVED
    assert (state.state, state.operator) == (TradingState.ACTIVE, "operator-1")
    assert [(c.to_state, c.operator) for c in reversed(history)] == [
        (TradingState.HALTED, "risk"), (TradingState.ACTIVE, "operator-1")]  # tripped once


def test_another_accounts_breach_trips_the_switch_after_an_operator_set_active(db, store, keyring, make_order):
    prices = MovablePrices(PRICES)
    risk = RiskEngine(db, keyring, LIMITS, prices)

    async def scenario():
        await bought(risk, store, make_order, "0.015", account="acct-2")  # before the fall: acct-2 loses too
        await breached(risk, store, make_order, prices)
        await validate(risk, make_order, symbol="ETHUSDT", quantity=D("0.01"))
        await risk.set_trading_state(TradingState.ACTIVE, "operator-1", "acct-1 reviewed")
        other = await validate(risk, make_order, account="acct-2", symbol="ETHUSDT", quantity=D("0.01"))
        return other, await risk.trading_state()

    other, state = asyncio.run(scenario())

    assert codes(other) == ["DAILY_LOSS_LIMIT"]
    assert (state.state, state.operator) == (TradingState.HALTED, "risk")
    assert "acct-2" in state.reason


def test_a_restarted_replica_does_not_trip_the_switch_again_for_an_account_that_tripped_it_today(
        db, store, keyring, make_order):
    prices = MovablePrices(PRICES)
    first = RiskEngine(db, keyring, LIMITS, prices, flush_seconds=0)

    async def before_the_restart():
        await breached(first, store, make_order, prices)
        await validate(first, make_order, symbol="ETHUSDT", quantity=D("0.01"))
        await first.set_trading_state(TradingState.ACTIVE, "operator-1", "loss reviewed")
        await first.flush()

    asyncio.run(before_the_restart())
    restarted = RiskEngine(db, keyring, LIMITS, prices)
    again = asyncio.run(validate(restarted, make_order, symbol="ETHUSDT", quantity=D("0.01")))
    state = asyncio.run(restarted.trading_state())

    assert codes(again) == ["DAILY_LOSS_LIMIT"]
    assert (state.state, state.operator) == (TradingState.ACTIVE, "operator-1")


def test_a_realised_loss_since_the_reset_counts_and_reducing_lets_the_book_unwind(db, store, keyring, make_order):
    risk = engine(db, keyring, max_position_notional=None, max_gross_exposure=None)

    async def scenario():
        await bought(risk, store, make_order, "0.02")
        await bought(risk, store, make_order, "0.01", price="55000", side=Side.SELL)  # realises -100
        tripped = await validate(risk, make_order, quantity=D("0.001"))
        await risk.set_trading_state(TradingState.REDUCING, "operator-1", "unwind after the loss limit")
        return (tripped,
                await validate(risk, make_order, side=Side.SELL, quantity=D("0.01")),  # closes: passes
                await validate(risk, make_order, side=Side.SELL, quantity=D("0.001")),  # would flip
                await validate(risk, make_order, symbol="ETHUSDT", quantity=D("0.1")),  # opens from flat
                await risk.trading_state())

    tripped, closing, flipping, opening, state = asyncio.run(scenario())

    assert codes(tripped) == ["DAILY_LOSS_LIMIT"]
    assert closing.order.status is S.APPROVED
    assert codes(flipping) == ["REDUCING_ONLY", "DAILY_LOSS_LIMIT"]  # 0.01 already working on the sell side
    assert codes(opening) == ["REDUCING_ONLY", "DAILY_LOSS_LIMIT"]
    assert state.state is TradingState.REDUCING  # no re-trip while REDUCING


class Clock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> dt.datetime:
        return self.now


def test_max_open_orders_counts_live_approvals_and_working_orders(db, store, keyring, make_order):
    clock = Clock()
    risk = RiskEngine(db, keyring, dataclasses.replace(LIMITS, max_open_orders=2, max_position_notional=None,
                                                       max_gross_exposure=None), clock=clock)

    async def scenario():
        await validate(risk, make_order)
        clock.now += dt.timedelta(seconds=200)
        await validate(risk, make_order)
        refused = await validate(risk, make_order)
        # The first approval's token lapsed (300 s, and the 5 s skew the OMS allows it); the second's lives
        clock.now += dt.timedelta(seconds=106)
        return refused, await validate(risk, make_order), await validate(risk, make_order)

    refused, after_lapse, full_again = asyncio.run(scenario())

    assert codes(refused) == ["MAX_OPEN_ORDERS_EXCEEDED"]
    assert after_lapse.order.status is S.APPROVED
    assert codes(full_again) == ["MAX_OPEN_ORDERS_EXCEEDED"]


def test_a_submitted_order_keeps_counting_after_its_token_lapsed(db, store, keyring, make_order):
    clock = Clock()
    risk = RiskEngine(db, keyring, dataclasses.replace(LIMITS, max_open_orders=1, max_position_notional=None,
                                                       max_gross_exposure=None), clock=clock)

    async def scenario():
        first = await validate(risk, make_order, order_type=OrderType.LIMIT, price=D("60000"))
        with store.uow() as uow:  # the OMS sent it to the venue, where it rests
            stored = uow.orders.get(first.order.order_id)
            stored.transition(S.SUBMITTED)
            uow.orders.save(stored)
            uow.commit()
        await risk.sync()
        clock.now += dt.timedelta(hours=1)
        return await validate(risk, make_order)

    assert codes(asyncio.run(scenario())) == ["MAX_OPEN_ORDERS_EXCEEDED"]


@pytest.fixture
def second_replica(store: Store):
    """Another Risk replica: its own engine and connection pool on the same database."""
    other = Database(Store(make_engine(store.engine.url)))
    yield other
    other.close()


def test_each_account_is_decided_by_the_replica_that_owns_it(db, second_replica, keyring, make_order):
    from services.risk.sharding import Sharding

    limits = dataclasses.replace(LIMITS, order_rate_limit=3)
    maps = [Sharding(0, 2), Sharding(1, 2)]
    replicas = [RiskEngine(db, keyring, limits, sharding=maps[0]),
                RiskEngine(second_replica, keyring, limits, sharding=maps[1])]
    account = next(a for a in (f"acct-{n}" for n in range(100)) if maps[0].owner(a) == 0)

    async def scenario():
        owner, other = replicas
        sequential = [await validate(owner, make_order, account=account, quantity=D("0.001")) for _ in range(4)]
        with pytest.raises(PreconditionFailed) as refused:
            await validate(other, make_order, account=account, quantity=D("0.001"))
        racing = await asyncio.gather(*(validate(owner, make_order, account=account, quantity=D("0.001"))
                                        for _ in range(3)))
        return sequential, refused.value, racing

    sequential, refused, racing = asyncio.run(scenario())

    assert [d.order.status for d in sequential] == [S.APPROVED] * 3 + [S.REJECTED]
    assert codes(sequential[3]) == ["ORDER_RATE_EXCEEDED"]
    assert refused.reason == "NOT_ACCOUNT_OWNER" and "replica 0 of 2" in str(refused)
    assert [d.order.status for d in racing] == [S.REJECTED] * 3


def test_a_restarted_replica_loads_the_throttle_window_and_positions_from_the_store(db, store, keyring, make_order):
    limits = dict(order_rate_limit=3, max_position_notional=None, max_gross_exposure=None)

    async def scenario():
        first = engine(db, keyring, **limits)
        await bought(first, store, make_order, "0.015")
        await validate(first, make_order, quantity=D("0.001"))
        restarted = engine(db, keyring, **limits)  # a new process: its book comes from the store
        third = await validate(restarted, make_order, quantity=D("0.001"))
        fourth = await validate(restarted, make_order, quantity=D("0.001"))
        return restarted, third, fourth

    restarted, third, fourth = asyncio.run(scenario())

    assert third.order.status is S.APPROVED
    assert codes(fourth) == ["ORDER_RATE_EXCEEDED"]
    assert restarted.book.accounts["acct-1"].positions[FUTURES, "BTCUSDT"].quantity == D("0.015")


def test_a_restarted_replica_does_not_count_the_orders_risk_refused_in_the_throttle_window(
        db, store, keyring, make_order):
    limits = dict(order_rate_limit=2, max_position_notional=None, max_gross_exposure=None)

    async def scenario():
        first = engine(db, keyring, **limits)
        refused = await validate(first, make_order, quantity=D("101"))  # beyond the max quantity of 100
        approved = await validate(first, make_order, quantity=D("0.001"))
        restarted = engine(db, keyring, **limits)  # a new process: its window comes from the store
        return refused, approved, await validate(restarted, make_order, quantity=D("0.001")), \
            await validate(restarted, make_order, quantity=D("0.001"))

    refused, approved, second, third = asyncio.run(scenario())

    assert refused.order.status is S.REJECTED and approved.order.status is S.APPROVED
    assert second.order.status is S.APPROVED
    assert codes(third) == ["ORDER_RATE_EXCEEDED"]


def test_a_replica_reads_only_the_positions_and_realised_pnl_of_its_own_accounts(db, store, keyring, make_order):
    from services.risk.sharding import Sharding
    from services.store.risk_state import load

    maps = [Sharding(0, 2), Sharding(1, 2)]
    accounts = {owner: next(a for a in (f"acct-{n}" for n in range(100)) if maps[0].owner(a) == owner)
                for owner in (0, 1)}

    async def scenario():
        everyone = engine(db, keyring, max_position_notional=None, max_gross_exposure=None)
        for account in accounts.values():
            await bought(everyone, store, make_order, "0.01", account=account)
        for account in accounts.values():  # and sold at a loss: realised PnL today
            await bought(everyone, store, make_order, "0.01", price="64000", account=account, side=Side.SELL)
        await everyone.sync()

    asyncio.run(scenario())
    now = utcnow()
    with store.engine.connect() as connection, connection.begin():
        snapshots = [load(connection, db.codec, now=now, approved_since=now, window_start=now,
                          reset=now - dt.timedelta(days=1), owns=shard.owns) for shard in maps]

    # Each replica's snapshot (what it converts and keeps while it loads) is its shard's alone.
    for owner, snapshot in enumerate(snapshots):
        assert {p.account for p in snapshot.positions} == {accounts[owner]}
        assert [account for account, _ in snapshot.realised] == [accounts[owner]]
        assert snapshot.realised[0][1] == D("-10.2")  # 0.01 x -1,000, and two commissions of 0.1


def test_a_fee_in_a_fee_token_is_kept_by_asset_and_left_out_of_the_net_pnl_and_the_daily_loss(
        db, store, keyring, make_order):
    """Risk's book, the ledger it writes, the realised PnL a restarted replica loads and
    the position the positions RPCs answer all count a fee only in the quote currency."""
    from services.risk.positions import Valued, to_proto
    from services.store.risk_state import load

    limits = dict(max_position_notional=None, max_gross_exposure=None)

    async def scenario():
        risk = engine(db, keyring, **limits)
        await bought(risk, store, make_order, "0.01", fee=("150", "BNB"))  # beyond the limit if it counted
        await bought(risk, store, make_order, "0.01", price="64000", side=Side.SELL, fee=("0.1", "USDT"))
        await risk.sync()
        restarted = engine(db, keyring, **limits)  # its book, and today's realised PnL, from the store
        return risk, restarted, await validate(restarted, make_order, quantity=D("0.001"))

    risk, restarted, decision = asyncio.run(scenario())
    now = utcnow()
    with store.engine.connect() as connection, connection.begin():
        snapshot = load(connection, db.codec, now=now, approved_since=now, window_start=now,
                        reset=now - dt.timedelta(days=1), owns=lambda account: True)
    with store.uow(read_only=True) as uow:
        stored = uow.positions.get("acct-1", "BTCUSDT")
        since = uow.positions.realised_since("acct-1", now - dt.timedelta(days=1))

    assert snapshot.realised == [("acct-1", D("-10.1"))]  # 0.01 x -1,000 and the USDT fee; not the BNB
    assert since == D("-10.1")
    assert risk.book.accounts["acct-1"].realised_today == D("-10.1")
    assert restarted.book.accounts["acct-1"].realised_today == D("-10.1")
    assert decision.order.status is S.APPROVED, decision.violations  # -10.1 is within the 100 limit
    assert (stored.commission, stored.net_realised_pnl, dict(stored.fees)) == (
        D("0.1"), D("-10.1"), {"BNB": D("150"), "USDT": D("0.1")})
    answered = to_proto(Valued(stored, D("65000")))
    assert (answered.commission, answered.net_realised_pnl) == ("0.1", "-10.1")
    assert {f.asset: f.amount for f in answered.fees} == {"BNB": "150", "USDT": "0.1"}


def test_a_loaded_book_keeps_one_string_per_account_and_symbol_name(db, store, keyring, make_order):
    limits = dict(max_position_notional=None, max_gross_exposure=None)

    async def scenario():
        first = engine(db, keyring, **limits)
        for account in ("acct-1", "acct-2"):
            for symbol in ("BTCUSDT", "ETHUSDT"):
                await bought(first, store, make_order, "0.01", account=account, symbol=symbol)
        restarted = engine(db, keyring, **limits)
        await restarted.start()
        return restarted.book

    book = asyncio.run(scenario())

    # A book of 100,000 accounts holds 300,000 positions: each names its account and
    # symbol with the book's own string objects, not a copy per row (docs/benchmarks.md).
    held = [(name, position) for name, account in book.accounts.items() for position in account.positions.values()]
    assert len(held) == 4
    assert all(position.account is name for name, position in held)
    symbols = {}
    assert all(symbols.setdefault(p.symbol, p.symbol) is p.symbol for _, p in held)


def test_a_quarantined_symbol_is_refused_by_risk_and_does_not_stop_the_kill_switch(db, store, keyring, make_order):
    prices = MovablePrices(PRICES)
    risk = RiskEngine(db, keyring, LIMITS, prices, state_poll_seconds=0)

    async def scenario():
        await bought(risk, store, make_order, "0.015")
        with store.uow() as uow:  # what the reconciler does on an unexplained discrepancy
            uow.trading_state.set(TradingState.HALTED, "reconciler", "quarantine", scope=symbol_scope("SOLUSDT"))
            uow.commit()
        await risk.sync()  # what the service does every few milliseconds
        quarantined = await validate(risk, make_order, symbol="SOLUSDT", quantity=D("1"))
        elsewhere = await validate(risk, make_order, symbol="ETHUSDT", quantity=D("0.01"))
        prices.prices["BTCUSDT"] = D("58000")
        breach = await validate(risk, make_order, symbol="SOLUSDT", quantity=D("1"))
        return quarantined, elsewhere, breach, await risk.trading_state()

    quarantined, elsewhere, breach, state = asyncio.run(scenario())

    assert codes(quarantined) == ["TRADING_HALTED"]
    assert elsewhere.order.status is S.APPROVED
    assert codes(breach) == ["TRADING_HALTED", "DAILY_LOSS_LIMIT"]
    assert (state.state, state.operator) == (TradingState.HALTED, "risk")  # the global switch tripped


def test_the_held_positions_are_the_ledgers_and_the_fills_not_in_it_yet_signed_by_side(db, store, keyring,
                                                                                         make_order):
    from services.store.risk_state import held_positions

    risk = engine(db, keyring)

    async def scenario():
        await bought(risk, store, make_order, "0.015")  # taken into the ledger
        later = await validate(risk, make_order, quantity=D("0.004"))
        sold = await validate(risk, make_order, symbol="ETHUSDT", side=Side.SELL, quantity=D("0.006"))
        fill(store, later.order)  # stored, not taken into the ledger yet (no sync)
        fill(store, sold.order)

    asyncio.run(scenario())

    with store.uow(read_only=True) as uow:
        ledger = uow.positions.get("acct-1", "BTCUSDT").quantity
        held = held_positions(uow.session.connection(), db.codec)
    assert ledger == D("0.015")
    assert held == {("acct-1", FUTURES, "BTCUSDT"): D("0.019"), ("acct-1", FUTURES, "ETHUSDT"): D("-0.006")}


def test_an_order_partly_filled_while_risk_was_down_keeps_what_it_may_still_fill_after_a_restart(
        db, store, keyring, make_order):
    """The store's orders already hold the fills not yet in the ledger: a restarted replica
    applies those fills to the positions, not a second time to what the order may still fill."""
    limits = dict(max_open_orders=1, max_position_notional=None, max_gross_exposure=None)

    async def scenario():
        first = engine(db, keyring, **limits)
        resting = await validate(first, make_order, order_type=OrderType.LIMIT, price=D("65000"),
                                 quantity=D("0.01"))
        with store.uow() as uow:  # submitted, then half filled while no replica followed the store
            stored = uow.orders.get(resting.order.order_id)
            stored.transition(S.SUBMITTED)
            uow.orders.save(stored)
            apply_report(uow, ExecutionReport(
                order_id=stored.order_id, client_order_id=stored.client_order_id, venue=stored.venue,
                account=stored.account, symbol=stored.symbol, side=stored.side,
                order_status=S.PARTIALLY_FILLED, transact_time=utcnow(),
                fill=Fill("t-half", D("0.005"), D("65000"), D("0.1"), "USDT", LiquiditySide.MAKER)))
            uow.commit()
        restarted = engine(db, keyring, **limits)
        await restarted.start()
        return restarted, resting.order.order_id, await validate(restarted, make_order, quantity=D("0.001"))

    restarted, order_id, another = asyncio.run(scenario())

    account = restarted.book.accounts["acct-1"]
    assert account.positions[FUTURES, "BTCUSDT"].quantity == D("0.005")
    assert account.working[order_id].remaining == D("0.005")
    assert codes(another) == ["MAX_OPEN_ORDERS_EXCEEDED"]  # the resting order still works half of it


def test_a_fill_committed_late_below_the_start_cursor_still_reaches_a_starting_replica(
        db, store, keyring, make_order):
    """On PostgreSQL an event's id is handed out at insert: a fill whose transaction is still
    open while a replica starts has an id below the cursor the replica starts from (a later
    event committed first). The replica asks for it until it appears."""
    if store.engine.dialect.name != "postgresql":
        pytest.skip("SQLite serialises its writers: ids are in commit order")
    limits = dict(max_position_notional=None, max_gross_exposure=None)

    async def approved(risk, **fields):
        decision = await validate(risk, make_order, **fields)
        with store.uow() as uow:
            stored = uow.orders.get(decision.order.order_id)
            stored.transition(S.SUBMITTED)
            uow.orders.save(stored)
            uow.commit()
        return decision.order

    async def scenario():
        first = engine(db, keyring, **limits)
        filling = await approved(first, quantity=D("0.01"))
        other = await approved(first, symbol="ETHUSDT", quantity=D("0.1"))
        late = store.uow()
        late.__enter__()  # the OMS's transaction storing the fill: ids taken, not committed yet
        apply_report(late, ExecutionReport(
            order_id=filling.order_id, client_order_id=filling.client_order_id, venue=filling.venue,
            account=filling.account, symbol=filling.symbol, side=filling.side, order_status=S.FILLED,
            transact_time=utcnow(),
            fill=Fill("t-late", D("0.01"), D("65000"), D("0.1"), "USDT", LiquiditySide.TAKER)))
        late.session.flush()
        with store.uow() as uow:  # a later event, committed first
            stored = uow.orders.get(other.order_id)
            stored.transition(S.CANCELLED)
            uow.orders.save(stored)
            uow.commit()
        restarted = engine(db, keyring, **limits)
        await restarted.start()
        late.commit()
        late.__exit__(None, None, None)
        await restarted.sync()
        return restarted

    restarted = asyncio.run(scenario())

    position = restarted.book.accounts["acct-1"].positions.get((FUTURES, "BTCUSDT"))
    assert position is not None and position.quantity == D("0.01")


def test_a_fill_committed_while_a_replica_loads_is_counted_once_in_what_the_order_may_still_fill(
        db, store, keyring, make_order, monkeypatch):
    """The load reads one snapshot: a fill the OMS commits between two of its statements is
    either in all of what it read or in none of it (then the events after the cursor bring it)."""
    from services.store import risk_state

    limits = dict(max_position_notional=None, max_gross_exposure=None)

    async def scenario():
        first = engine(db, keyring, **limits)
        decision = await validate(first, make_order, order_type=OrderType.LIMIT, price=D("65000"),
                                  quantity=D("0.01"))
        order = decision.order
        with store.uow() as uow:
            stored = uow.orders.get(order.order_id)
            stored.transition(S.SUBMITTED)
            uow.orders.save(stored)
            uow.commit()
        read_unapplied = risk_state.unapplied_trades

        def unapplied_then_a_fill(connection, codec):
            found = read_unapplied(connection, codec)
            with store.uow() as uow:  # the OMS commits a fill while the load goes on
                apply_report(uow, ExecutionReport(
                    order_id=order.order_id, client_order_id=order.client_order_id, venue=order.venue,
                    account=order.account, symbol=order.symbol, side=order.side,
                    order_status=S.PARTIALLY_FILLED, transact_time=utcnow(),
                    fill=Fill("t-meanwhile", D("0.004"), D("65000"), D("0.1"), "USDT", LiquiditySide.MAKER)))
                uow.commit()
            return found

        monkeypatch.setattr(risk_state, "unapplied_trades", unapplied_then_a_fill)
        restarted = engine(db, keyring, **limits)
        await restarted.start()
        monkeypatch.setattr(risk_state, "unapplied_trades", read_unapplied)
        await restarted.sync()
        return restarted, order.order_id

    restarted, order_id = asyncio.run(scenario())

    account = restarted.book.accounts["acct-1"]
    assert account.positions[FUTURES, "BTCUSDT"].quantity == D("0.004")
    assert account.working[order_id].remaining == D("0.006")


@contextlib.asynccontextmanager
async def a_poll_overtaken(risk: RiskEngine):
    """A poll of Risk's that has read the store (the trading state as it was) and returns
    only after the block has run."""
    follow = risk.source.follow
    read, ran = asyncio.Event(), asyncio.Event()

    async def follow_overtaken(read_states):
        found = await follow(read_states)
        read.set()
        await ran.wait()
        return found

    risk.source.follow = follow_overtaken
    polling = asyncio.ensure_future(risk.sync())
    await read.wait()
    try:
        yield
    finally:
        ran.set()
        await polling
        risk.source.follow = follow


def test_a_trading_state_read_before_this_replica_changed_it_does_not_undo_the_change(
        db, store, keyring, make_order):
    """The replica that sets the trading state obeys it at once: a poll of the store that
    read the state before the change, and returns after it, does not put the old one back."""
    risk = RiskEngine(db, keyring, LIMITS, state_poll_seconds=0, flush_seconds=0)

    async def scenario():
        await risk.start()
        async with a_poll_overtaken(risk):
            await risk.set_trading_state(TradingState.HALTED, "operator-1", "stop everything")
        return await validate(risk, make_order, quantity=D("0.001"))

    assert codes(asyncio.run(scenario())) == ["TRADING_HALTED"]


def test_a_kill_switch_tripped_by_the_daily_loss_is_not_undone_by_a_poll_read_before_it(
        db, store, keyring, make_order):
    prices = MovablePrices(PRICES)
    risk = RiskEngine(db, keyring, LIMITS, prices, state_poll_seconds=0, flush_seconds=0)

    async def scenario():
        await bought(risk, store, make_order, "0.015")
        prices.prices["BTCUSDT"] = D("58000")  # 0.015 x -7000 = -105 unrealised
        async with a_poll_overtaken(risk):
            breach = await validate(risk, make_order, symbol="ETHUSDT", quantity=D("0.01"))
        return breach, await validate(risk, make_order, account="acct-2", symbol="ETHUSDT", quantity=D("0.01"))

    breach, elsewhere = asyncio.run(scenario())

    assert codes(breach) == ["DAILY_LOSS_LIMIT"]
    assert codes(elsewhere) == ["TRADING_HALTED"]  # another account: the switch stops every order


def test_an_order_of_the_venues_quantity_stops_counting_when_the_venue_says_it_is_filled(
        db, store, keyring, make_order):
    """A quote-amount order is FILLED by the venue's word after its fills: a status report
    without a trade. Risk's book lets the order go then, as for any FILLED order."""
    limits = dict(max_open_orders=1, max_position_notional=None, max_gross_exposure=None)

    async def scenario():
        risk = engine(db, keyring, **limits)
        decision = await validate(risk, make_order, market_type=MarketType.SPOT, quantity=None,
                                  quote_order_qty=D("100"))
        assert decision.order.status is S.APPROVED, decision.violations
        order = decision.order
        reports = [
            dict(order_status=S.PARTIALLY_FILLED,
                 fill=Fill("t-amount", D("0.0015"), D("65000"), D("0.1"), "USDT", LiquiditySide.TAKER)),
            dict(order_status=S.FILLED, fill=None),  # the venue: done
        ]
        with store.uow() as uow:
            stored = uow.orders.get(order.order_id)
            stored.transition(S.SUBMITTED)
            uow.orders.save(stored)
            uow.commit()
        for report in reports:
            with store.uow() as uow:
                apply_report(uow, ExecutionReport(
                    order_id=order.order_id, client_order_id=order.client_order_id, venue=order.venue,
                    account=order.account, symbol=order.symbol, side=order.side, transact_time=utcnow(), **report))
                uow.commit()
        await risk.sync()
        with store.uow(read_only=True) as uow:
            status = uow.orders.get(order.order_id).status
        return status, dict(risk.book.accounts["acct-1"].working), await validate(risk, make_order,
                                                                                  quantity=D("0.001"))

    status, working, another = asyncio.run(scenario())

    assert status is S.FILLED
    assert working == {}
    assert another.order.status is S.APPROVED, another.violations
