"""The paper venue's take-profit, trailing-stop, close-position and quote-amount orders,
triggered and filled as the venue's docs define them."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from services.domain import MarketType, OrderStatus, OrderType, Side
from services.exchange.providers.books import BookShape
from services.exchange.providers.paper import PaperFees, PaperProvider

FEES = PaperFees(maker=Decimal("0.0002"), taker=Decimal("0.0004"))


def run(awaitable):
    return asyncio.run(awaitable)


@pytest.fixture
def venue() -> PaperProvider:
    return PaperProvider({"BTCUSDT": Decimal("100")}, FEES)


def move(venue: PaperProvider, price: str) -> list:
    """The market moves to ``price``: the resting orders meet the new book."""
    venue.source.set("BTCUSDT", Decimal(price))
    return run(venue.match_resting())


def take_profit(make_order, side: Side, stop: str, **fields):
    return make_order(**{"order_type": OrderType.TAKE_PROFIT_MARKET, "side": side, "price": None,
                         "stop_price": Decimal(stop), "quantity": Decimal("1"), **fields})


def trailing(make_order, side: Side, rate: str, activation: str | None = None, **fields):
    return make_order(**{"order_type": OrderType.TRAILING_STOP_MARKET, "side": side, "price": None,
                         "callback_rate": Decimal(rate), "quantity": Decimal("1"),
                         "activation_price": None if activation is None else Decimal(activation), **fields})


def test_a_take_profit_buy_triggers_when_the_price_falls_to_its_stop(venue, make_order):
    (accepted,) = run(venue.execute(take_profit(make_order, Side.BUY, "95")))
    assert accepted.order_status is OrderStatus.ACCEPTED
    assert move(venue, "105") == [] and move(venue, "95.01") == []

    (filled,) = move(venue, "95")

    assert (filled.order_status, filled.fill.price, filled.fill.quantity) == (OrderStatus.FILLED, Decimal(95), 1)


def test_a_take_profit_sell_triggers_when_the_price_rises_to_its_stop(venue, make_order):
    run(venue.execute(take_profit(make_order, Side.SELL, "110")))
    assert move(venue, "90") == [] and move(venue, "109.99") == []

    (filled,) = move(venue, "111")

    assert (filled.order_status, filled.fill.price) == (OrderStatus.FILLED, Decimal(111))


def test_a_take_profit_already_past_its_stop_triggers_on_arrival(venue, make_order):
    (filled,) = run(venue.execute(take_profit(make_order, Side.BUY, "101")))
    assert filled.order_status is OrderStatus.FILLED


def test_a_take_profit_limit_becomes_a_limit_order_when_triggered(venue, make_order):
    order = make_order(order_type=OrderType.TAKE_PROFIT, side=Side.SELL, price=Decimal("112"),
                       stop_price=Decimal("110"), quantity=Decimal("1"))
    run(venue.execute(order))

    assert move(venue, "110") == []              # triggered: rests as a limit SELL at 112
    (filled,) = move(venue, "112.5")

    assert (filled.order_status, filled.fill.price) == (OrderStatus.FILLED, Decimal(112))


def test_a_trailing_sell_activates_at_its_price_follows_the_high_and_triggers_on_the_callback(venue, make_order):
    (accepted,) = run(venue.execute(trailing(make_order, Side.SELL, "2", activation="105")))
    assert accepted.order_status is OrderStatus.ACCEPTED

    for price in ("104", "98", "106", "110", "108"):  # 104, 98: not active; 106: active; 110: the high
        assert move(venue, price) == [], price
    (filled,) = move(venue, "107.8")                  # 110 x (1 - 2 %)

    assert (filled.order_status, filled.fill.price) == (OrderStatus.FILLED, Decimal("107.8"))


def test_a_trailing_buy_without_an_activation_price_trails_the_low_from_arrival(venue, make_order):
    run(venue.execute(trailing(make_order, Side.BUY, "2")))

    for price in ("101", "98", "99.95"):              # the low is 98: it triggers at 99.96
        assert move(venue, price) == [], price
    (filled,) = move(venue, "99.96")

    assert filled.fill.price == Decimal("99.96")


@pytest.mark.parametrize(("side", "activation"), [(Side.BUY, "100"), (Side.BUY, "101"), (Side.SELL, "99")])
def test_a_trailing_stop_whose_activation_price_is_already_passed_is_rejected_as_the_venue_does(
        venue, make_order, side, activation):
    (report,) = run(venue.execute(trailing(make_order, side, "1", activation=activation)))

    assert (report.order_status, report.reason) == (OrderStatus.REJECTED, "ORDER_WOULD_IMMEDIATELY_TRIGGER")


def test_a_close_position_order_closes_the_position_this_venue_built(venue, make_order):
    run(venue.execute(make_order(order_type=OrderType.MARKET, price=None, quantity=Decimal("2.5"))))
    run(venue.execute(make_order(order_type=OrderType.MARKET, price=None, quantity=Decimal("0.5"), side=Side.SELL)))
    closing = take_profit(make_order, Side.SELL, "110", quantity=None, close_position=True)
    run(venue.execute(closing))

    (filled,) = move(venue, "110")

    assert (filled.order_status, filled.fill.quantity) == (OrderStatus.FILLED, Decimal(2))
    assert venue.positions[(closing.account, MarketType.FUTURES, "BTCUSDT")] == 0


def test_a_close_position_order_with_nothing_to_close_expires_when_it_triggers(venue, make_order):
    run(venue.execute(make_order(order_type=OrderType.MARKET, price=None, quantity=Decimal("1"), side=Side.SELL)))
    run(venue.execute(take_profit(make_order, Side.SELL, "110", quantity=None, close_position=True)))

    (expired,) = move(venue, "111")

    assert (expired.order_status, expired.reason, expired.fill) == (OrderStatus.EXPIRED, "NO_POSITION_TO_CLOSE", None)


def quoted(make_order, amount: str):
    return make_order(market_type=MarketType.SPOT, order_type=OrderType.MARKET, price=None, leverage=None,
                      quantity=None, quote_order_qty=Decimal(amount))


def test_a_quote_amount_order_buys_what_its_amount_buys(venue, make_order):
    (filled,) = run(venue.execute(quoted(make_order, "250")))

    assert (filled.order_status, filled.fill.quantity, filled.fill.price) == (OrderStatus.FILLED, Decimal("2.5"),
                                                                             Decimal(100))


def test_a_quote_amount_order_walks_the_book_and_buys_whole_units(make_order):
    venue = PaperProvider({"BTCUSDT": Decimal("100")}, FEES,
                          shape=BookShape(levels=2, level_quantity=Decimal("1"), level_step_bps=Decimal(100)))

    reports = run(venue.execute(quoted(make_order, "150")))

    assert [(r.fill.quantity, r.fill.price) for r in reports] == [(Decimal(1), Decimal(100)),
                                                                  (Decimal("0.49504950"), Decimal(101))]
    assert [r.order_status for r in reports] == [OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED]
    spent = sum(r.fill.quantity * r.fill.price for r in reports)
    assert Decimal(150) - spent < Decimal("0.00000101")


def test_a_quote_amount_order_the_book_cannot_fill_expires_its_remainder(make_order):
    venue = PaperProvider({"BTCUSDT": Decimal("100")}, FEES, shape=BookShape(levels=1, level_quantity=Decimal("1")))

    reports = run(venue.execute(quoted(make_order, "500")))

    assert [r.order_status for r in reports] == [OrderStatus.PARTIALLY_FILLED, OrderStatus.EXPIRED]
    assert reports[0].fill.quantity == 1 and reports[1].reason == "REMAINDER_EXPIRED"
