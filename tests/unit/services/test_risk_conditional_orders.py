"""Risk's sizing of the orders whose quantity the venue decides, and of the new trigger prices:
a close-position order reduces (to flat), a quote-amount order's notional is its amount, a
trailing stop's activation price and a take-profit's stop are measured as a stop's are."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest

from services.domain import MarketType, OrderType, Side, TradingState
from services.domain.ledger import Position
from services.risk.checks import RiskContext, check_order
from services.risk.limits import RiskLimits

PRICES = {"BTCUSDT": Decimal("50000")}
LIMITS = RiskLimits(
    allowed_symbols=frozenset(PRICES),
    max_notional_per_order=Decimal("100000"),  # 2 BTC
    max_quantity_per_order=Decimal("1"),
    max_price=Decimal("10000000"),
    reference_prices=PRICES,
    price_band=Decimal("0.05"),
    max_position_notional=Decimal("150000"),  # 3 BTC
    max_gross_exposure=Decimal("150000"),
    account_equity=Decimal("1000000"),
    max_leverage=Decimal("10"),
)


def held(quantity: str, market_type: MarketType = MarketType.FUTURES, **fields) -> RiskContext:
    q = Decimal(quantity)
    position = Position("acct-1", "BTCUSDT", q, abs(q) * 50000, Decimal(0), Decimal(0), market_type=market_type)
    return RiskContext(positions={position.key: position}, reference_prices=PRICES, market_type=market_type,
                       **fields)


def codes(order, ctx: RiskContext) -> list[str]:
    return [v.code for v in check_order(order, LIMITS, ctx)]


def closing(make_order, side: Side = Side.SELL, **fields):
    return make_order(**{"order_type": OrderType.TAKE_PROFIT_MARKET, "price": None, "stop_price": Decimal("51000"),
                         "quantity": None, "close_position": True, "side": side, **fields})


def quoted(make_order, amount: str, **fields):
    return make_order(**{"market_type": MarketType.SPOT, "order_type": OrderType.MARKET, "price": None,
                         "leverage": None, "quantity": None, "quote_order_qty": Decimal(amount), **fields})


def test_a_close_position_order_reduces_however_large_the_position(make_order):
    # 2.9 BTC held: above the per-order quantity (1) and notional (2 BTC) limits, which
    # guard new risk; closing it only brings the position to flat.
    assert codes(closing(make_order), held("2.9")) == []


def test_a_close_position_order_passes_in_reducing_against_the_position_it_closes(make_order):
    # Orders working on the same side do not count: it closes what is left when it triggers.
    assert codes(closing(make_order), held("2", trading_state=TradingState.REDUCING,
                                            working_same_side=Decimal("5"))) == []
    assert codes(closing(make_order, side=Side.BUY), held("-2", trading_state=TradingState.REDUCING)) == []


@pytest.mark.parametrize(("position", "side"), [("0", Side.SELL), ("2", Side.BUY), ("-2", Side.SELL)])
def test_a_close_position_order_with_nothing_to_close_is_not_reducing(make_order, position, side):
    assert codes(closing(make_order, side=side), held(position, trading_state=TradingState.REDUCING)) == [
        "REDUCING_ONLY"]


def test_a_quote_amount_orders_notional_is_its_amount(make_order):
    assert codes(quoted(make_order, "100000"), held("0", MarketType.SPOT)) == []
    assert codes(quoted(make_order, "100000.01"), held("0", MarketType.SPOT)) == ["MAX_NOTIONAL_EXCEEDED"]


def test_a_quote_amount_order_is_sized_at_the_reference_for_the_position_limit(make_order):
    # 2.5 BTC held + 50,000 / 50,000 = 3.5 BTC > 3 BTC; the per-order quantity limit is the
    # order's own quantity, which it has none of.
    assert codes(quoted(make_order, "50000"), held("2.5", MarketType.SPOT)) == ["MAX_POSITION_EXCEEDED",
                                                                                 "MAX_GROSS_EXPOSURE_EXCEEDED"]
    assert codes(quoted(make_order, "25000"), held("2.5", MarketType.SPOT)) == []


def test_a_quote_amount_order_is_not_reducing(make_order):
    assert codes(quoted(make_order, "10"), held("1", MarketType.SPOT, trading_state=TradingState.REDUCING)) == [
        "REDUCING_ONLY"]


def test_a_trailing_stops_activation_price_is_measured_like_a_stop_price(make_order):
    trailing = make_order(order_type=OrderType.TRAILING_STOP_MARKET, price=None, quantity=Decimal("0.5"),
                          callback_rate=Decimal("1"), side=Side.SELL, activation_price=Decimal("60000"))
    assert codes(trailing, held("0")) == ["PRICE_BAND_EXCEEDED"]
    assert codes(dataclasses.replace(trailing, activation_price=Decimal("51000")), held("0")) == []
    # Without one it activates at the market: measured at the reference.
    big = make_order(order_type=OrderType.TRAILING_STOP_MARKET, price=None, quantity=Decimal("1"),
                     callback_rate=Decimal("1"), side=Side.SELL)
    assert codes(big, held("0")) == []


def test_a_take_profit_is_measured_at_its_own_prices(make_order):
    order = make_order(order_type=OrderType.TAKE_PROFIT, side=Side.SELL, quantity=Decimal("1"),
                       price=Decimal("52000"), stop_price=Decimal("53000"))
    assert codes(order, held("0")) == ["PRICE_BAND_EXCEEDED"]
    order.stop_price = Decimal("52400")
    assert codes(order, held("0")) == []
