"""Max position measures the exposure if everything working fills: the ledger position,
plus what the account's orders on the order's side (in its symbol and market) may still
fill, plus the order. Decided by the engine over the fake store: approvals count from
the moment they are decided, ends (the OMS's events, followed by ``sync``) release them,
orders on the other side are not netted, spot and futures are apart, and a replacement
is measured without the order it replaces."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import order_factory
from fakes import FakeRiskSource

import core_ext
from services.domain import MarketType, OrderStatus, OrderType, Side
from services.domain.ledger import Position
from services.risk.engine import RiskEngine
from services.risk.limits import RiskLimits
from services.risk.replacement import replacement_order

D = Decimal
LIMITS = dict(
    allowed_symbols=frozenset({"BTCUSDT"}), max_notional_per_order=None, max_quantity_per_order=None,
    max_price=None, reference_prices={"BTCUSDT": D("50000")}, price_band=None,
    max_position_notional=D("100000"),  # 2 BTC at the reference
    max_gross_exposure=None, max_leverage=None, order_rate_limit=None, max_open_orders=None, daily_loss_limit=None,
)


def engine(clock, db, *positions: Position) -> RiskEngine:
    return RiskEngine(db, core_ext.KeyRing("risk1", b"risk-working-exposure-secret-0123456789"),
                      RiskLimits(**LIMITS), clock=clock.now, monotonic=clock.monotonic,
                      source=FakeRiskSource(db, positions=positions))


def decide(risk: RiskEngine, side: Side, quantity: str, **fields):
    order = order_factory.build_order(**{"order_type": OrderType.MARKET, "price": None, "side": side,
                                         "quantity": D(quantity), **fields})
    decision = asyncio.run(risk.validate(order))
    return decision.order, [v.code for v in decision.violations]


def move(db, clock, order_id: str, *statuses: OrderStatus) -> None:
    """The OMS moves the stored order along ``statuses`` (the book learns it on ``sync``)."""
    def change(uow):
        stored = uow.orders.get(order_id)
        for status in statuses:
            stored.transition(status, at=clock.now())
        uow.orders.save(stored)

    db.run_sync(change)


def test_an_order_is_refused_when_with_the_buys_already_approved_it_would_take_the_position_past_the_limit(
        clock, db):
    risk = engine(clock, db)
    _, first = decide(risk, Side.BUY, "1.5")
    _, second = decide(risk, Side.BUY, "1")
    _, within = decide(risk, Side.BUY, "0.5")  # 1.5 + 0.5 = 2 BTC: at the limit

    assert first == []
    assert second == ["MAX_POSITION_EXCEEDED"]
    assert within == []


def test_a_working_order_that_ends_no_longer_counts_towards_the_position_limit(clock, db):
    risk = engine(clock, db)
    working, _ = decide(risk, Side.BUY, "2")
    _, while_working = decide(risk, Side.BUY, "1")
    move(db, clock, working.order_id, OrderStatus.SUBMITTED, OrderStatus.ACCEPTED, OrderStatus.CANCELLED)
    asyncio.run(risk.sync())
    _, after_the_cancel = decide(risk, Side.BUY, "1")

    assert while_working == ["MAX_POSITION_EXCEEDED"]
    assert after_the_cancel == []


def test_a_sell_that_with_the_sells_already_working_would_flip_the_position_past_the_limit_is_refused(clock, db):
    held = Position("acct-1", "BTCUSDT", D("1"), D("50000"))
    risk = engine(clock, db, held)
    _, first = decide(risk, Side.SELL, "2")  # long 1 -> short 1
    _, second = decide(risk, Side.SELL, "1.1")  # with the first: short 2.1
    _, within = decide(risk, Side.SELL, "1")  # with the first: short 2, at the limit

    assert first == []
    assert second == ["MAX_POSITION_EXCEEDED"]
    assert within == []


def test_orders_working_on_the_other_side_are_not_netted_against_the_order(clock, db):
    risk = engine(clock, db)
    _, sell = decide(risk, Side.SELL, "1")
    _, buy = decide(risk, Side.BUY, "2.1")  # a sell that may be cancelled offsets nothing

    assert (sell, buy) == ([], ["MAX_POSITION_EXCEEDED"])


def test_orders_working_in_futures_do_not_count_towards_the_spot_position_limit(clock, db):
    risk = engine(clock, db)
    _, futures = decide(risk, Side.BUY, "1.5", market_type=MarketType.FUTURES)
    _, spot = decide(risk, Side.BUY, "1.5", market_type=MarketType.SPOT)
    _, more_futures = decide(risk, Side.BUY, "1", market_type=MarketType.FUTURES)

    assert (futures, spot, more_futures) == ([], [], ["MAX_POSITION_EXCEEDED"])


def test_a_replacement_is_measured_without_the_working_quantity_of_the_order_it_replaces(clock, db):
    risk = engine(clock, db)
    working, _ = decide(risk, Side.BUY, "1.5", order_type=OrderType.LIMIT, price=D("50000"))
    move(db, clock, working.order_id, OrderStatus.SUBMITTED, OrderStatus.ACCEPTED)
    asyncio.run(risk.sync())
    stored = db.read_sync(lambda uow: uow.orders.get(working.order_id))

    def replace(total: str):
        replacement = replacement_order(stored, order_id=order_factory.new_id(),
                                        client_order_id=f"rep-{total}", quantity=D(total), price=None,
                                        now=clock.now())
        decision = asyncio.run(risk.validate_replacement(stored, replacement))
        return [v.code for v in decision.violations]

    assert replace("2") == []  # 2 BTC in all, not 1.5 + 2
    assert replace("2.1") == ["MAX_POSITION_EXCEEDED"]


def test_a_quote_amount_order_still_working_counts_its_amount_at_the_reference_price(clock, db):
    # A spot market buy of a quote amount has no quantity of its own: while it works it
    # counts as the amount buys at the reference price, as it is measured itself.
    risk = engine(clock, db)

    def quote_buy(amount: str):
        order = order_factory.build_order(order_type=OrderType.MARKET, price=None, side=Side.BUY, quantity=None,
                                          quote_order_qty=D(amount), market_type=MarketType.SPOT)
        return [v.code for v in asyncio.run(risk.validate(order)).violations]

    assert quote_buy("90000") == []  # 1.8 BTC at 50,000
    assert quote_buy("20000") == ["MAX_POSITION_EXCEEDED"]  # 2.2 BTC with the first
    assert quote_buy("10000") == []  # 2 BTC: at the limit
