"""The venue's rules as Aster's docs state them: filters, rate limits, order counts, hedge mode."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest

from services.domain import MarketType, OrderType, Side, WorkingType
from services.domain.errors import PreconditionFailed
from services.exchange.aster.errors import VenueRateLimited
from services.exchange.aster.limits import OrderCountGate, WeightGate, parse_rate_limits
from services.exchange.aster.requests import (
    prepare_countdown_cancel_all,
    prepare_futures_order,
    prepare_user_trades,
)
from services.exchange.aster.rules import SymbolRules, fit_order, price_to_tick, round_to_tick

# The futures exchangeInfo example of Aster's V3 docs (DOGEUSDT filters and rateLimits).
DOC_SYMBOL = {
    "symbol": "DOGEUSDT",
    "status": "TRADING",
    "quoteAsset": "USDT",
    "filters": [
        {"filterType": "PRICE_FILTER", "maxPrice": "300", "minPrice": "0.0001", "tickSize": "0.0001"},
        {"filterType": "LOT_SIZE", "maxQty": "10000000", "minQty": "1", "stepSize": "1"},
        {"filterType": "MARKET_LOT_SIZE", "maxQty": "590119", "minQty": "1", "stepSize": "1"},
        {"filterType": "MAX_NUM_ORDERS", "limit": 200},
        {"filterType": "MIN_NOTIONAL", "notional": "1"},
        {"filterType": "PERCENT_PRICE", "multiplierUp": "1.1500", "multiplierDown": "0.8500", "multiplierDecimal": 4},
    ],
}
DOC_RATE_LIMITS = {"rateLimits": [
    {"interval": "MINUTE", "intervalNum": 1, "limit": 2400, "rateLimitType": "REQUEST_WEIGHT"},
    {"interval": "MINUTE", "intervalNum": 1, "limit": 1200, "rateLimitType": "ORDERS"},
]}
# The spot exchangeInfo example: a second ORDERS window of 300 per 10 seconds.
DOC_SPOT_RATE_LIMITS = {"rateLimits": [
    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
    {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300},
]}
RULES = SymbolRules.from_exchange_info(DOC_SYMBOL)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def doge(make_order, **fields):
    return make_order(**{"symbol": "DOGEUSDT", "quantity": Decimal("100"), "price": Decimal("0.2"), **fields})


def test_the_docs_filters_are_read_percent_price_included():
    assert (RULES.tick_size, RULES.min_price, RULES.step_size, RULES.min_notional) == (
        Decimal("0.0001"), Decimal("0.0001"), Decimal("1"), Decimal("1"))
    assert (RULES.multiplier_up, RULES.multiplier_down) == (Decimal("1.15"), Decimal("0.85"))


def test_percent_price_bounds_a_futures_buy_above_and_a_sell_below_the_mark(make_order):
    mark = Decimal("0.2")
    fit_order(doge(make_order, price=Decimal("0.23")), RULES, mark)  # exactly 1.15 × mark
    with pytest.raises(PreconditionFailed) as above:
        fit_order(doge(make_order, price=Decimal("0.2301")), RULES, mark)
    assert above.value.reason == "PRICE_OUTSIDE_PERCENT_BAND"
    # A BUY below the band and a SELL above it are the venue's business, not PERCENT_PRICE's.
    fit_order(doge(make_order, price=Decimal("0.1")), RULES, mark)
    fit_order(doge(make_order, side=Side.SELL, price=Decimal("0.3")), RULES, mark)
    with pytest.raises(PreconditionFailed):
        fit_order(doge(make_order, side=Side.SELL, price=Decimal("0.1699")), RULES, mark)


def test_spot_percent_price_holds_both_bounds_for_either_side(make_order):
    order = doge(make_order, market_type=MarketType.SPOT, price=Decimal("0.1"))
    with pytest.raises(PreconditionFailed):
        fit_order(order, RULES, Decimal("0.2"))


def test_a_market_orders_notional_is_taken_at_the_mark_price(make_order):
    market = doge(make_order, order_type=OrderType.MARKET, price=None, quantity=Decimal("4"))

    with pytest.raises(PreconditionFailed, match="notional 0.8 is below the venue's minimum 1"):
        fit_order(market, RULES, Decimal("0.2"))
    assert fit_order(market, RULES, Decimal("0.25")).quantity == Decimal("4")
    # Reduce-only orders are exempt ("unless you choose reduce only").
    fit_order(doge(make_order, order_type=OrderType.MARKET, price=None, quantity=Decimal("4"), reduce_only=True),
              RULES, Decimal("0.2"))


MARKET_LOT = SymbolRules.from_exchange_info({"symbol": "BTCUSDT", "filters": [
    {"filterType": "LOT_SIZE", "maxQty": "1000", "minQty": "0.001", "stepSize": "0.001"},
    {"filterType": "MARKET_LOT_SIZE", "maxQty": "120", "minQty": "0.01", "stepSize": "0.01"},
]})


@pytest.mark.parametrize("quantity, problem", [
    ("0.005", "0.01 of a market order"),  # on LOT_SIZE's step, under MARKET_LOT_SIZE's minimum
    ("0.015", "not a multiple of the step size 0.01 of a market order"),  # off MARKET_LOT_SIZE's step
    ("150", "above the maximum 120 of a market order"),
])
def test_a_market_order_is_held_to_the_market_lot_size_step_and_minimum(make_order, quantity, problem):
    market = make_order(order_type=OrderType.MARKET, price=None, quantity=Decimal(quantity))

    with pytest.raises(PreconditionFailed) as refused:
        fit_order(market, MARKET_LOT)

    assert refused.value.reason == "ORDER_NOT_REPRESENTABLE" and problem in str(refused.value)
    # A limit order of the same quantity is LOT_SIZE's business only.
    assert fit_order(make_order(quantity=Decimal(quantity)), MARKET_LOT).quantity == Decimal(quantity)


def test_prices_go_to_the_tick_counted_from_min_price_in_the_orders_favour():
    rules = SymbolRules("X", tick_size=Decimal("0.5"), min_price=Decimal("0.2"))

    assert price_to_tick(Decimal("1.0"), Side.BUY, rules) == Decimal("0.7")
    assert price_to_tick(Decimal("1.0"), Side.SELL, rules) == Decimal("1.2")
    assert price_to_tick(Decimal("1.2"), Side.BUY, rules) == Decimal("1.2")


def test_the_price_sent_is_the_rounded_one(make_order):
    request = prepare_futures_order(doge(make_order, price=Decimal("0.20007")), RULES)

    assert request.param("price") == "0.2"


def test_rate_limits_come_from_exchange_info_per_host_weight_and_per_account_orders():
    limits = parse_rate_limits(DOC_SPOT_RATE_LIMITS)
    gate = WeightGate(2400, headroom=1.0)
    gate.configure(limits)

    assert gate.limit == 6000
    assert [(item.kind, item.header_suffix) for item in limits] == [
        ("REQUEST_WEIGHT", "1M"), ("ORDERS", "1M"), ("ORDERS", "10S")]


def test_an_order_past_the_accounts_order_limit_is_refused_before_it_is_sent():
    clock = Clock(1_000_000.0)
    gate = OrderCountGate(parse_rate_limits({"rateLimits": [
        {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 3}]}), clock=clock)

    for _ in range(3):
        gate.reserve()
    with pytest.raises(VenueRateLimited) as refused:
        gate.reserve()
    assert refused.value.reason == "VENUE_ORDER_RATE_LIMITED" and 0 < refused.value.retry_after <= 10
    clock.now += 10
    gate.reserve()  # a new window


def test_the_venues_order_count_header_overrides_a_lower_count_of_ours():
    clock = Clock(600.0)
    gate = OrderCountGate(parse_rate_limits(DOC_RATE_LIMITS), clock=clock)
    gate.observe({"X-MBX-ORDER-COUNT-1M": "1200"})  # other processes on the same account

    with pytest.raises(VenueRateLimited):
        gate.reserve()


def test_hedge_mode_sends_position_side_and_never_reduce_only(make_order):
    opening = prepare_futures_order(make_order(side=Side.SELL), hedge_mode=True)
    closing = prepare_futures_order(make_order(side=Side.SELL, reduce_only=True), hedge_mode=True)
    one_way = prepare_futures_order(make_order(side=Side.SELL, reduce_only=True))

    assert opening.param("positionSide") == "SHORT" and opening.param("reduceOnly") is None
    assert closing.param("positionSide") == "LONG" and closing.param("reduceOnly") is None
    assert one_way.param("positionSide") is None and one_way.param("reduceOnly") == "true"


def test_stop_orders_carry_the_working_type_and_price_protection_the_order_set(make_order):
    stop = make_order(order_type=OrderType.STOP_MARKET, price=None, stop_price=Decimal("49000"),
                      working_type=WorkingType.MARK_PRICE, price_protect=True)
    plain = make_order(order_type=OrderType.STOP_MARKET, price=None, stop_price=Decimal("49000"))

    request = prepare_futures_order(stop)

    assert (request.param("workingType"), request.param("priceProtect")) == ("MARK_PRICE", "TRUE")
    # Unset: nothing sent (the venue's defaults, CONTRACT_PRICE and FALSE), as Risk signed it.
    assert (prepare_futures_order(plain).param("workingType"), prepare_futures_order(plain).param("priceProtect")) == (
        None, None)


def test_a_close_position_order_in_hedge_mode_names_the_side_it_closes(make_order):
    closing = make_order(side=Side.SELL, order_type=OrderType.TAKE_PROFIT_MARKET, quantity=None, price=None,
                         stop_price=Decimal("55000"), close_position=True)

    hedged = prepare_futures_order(closing, hedge_mode=True)

    assert (hedged.param("positionSide"), hedged.param("closePosition"), hedged.param("quantity"),
            hedged.param("reduceOnly")) == ("LONG", "true", None, None)


def test_trigger_and_activation_prices_are_put_on_the_tick_and_a_quote_amount_meets_min_notional(make_order):
    trailing = make_order(order_type=OrderType.TRAILING_STOP_MARKET, price=None, side=Side.SELL,
                          activation_price=Decimal("1.234"), callback_rate=Decimal("1"), quantity=Decimal("100"))
    fitted = fit_order(trailing, RULES)
    assert fitted.activation_price == round_to_tick(Decimal("1.234"), RULES.tick_size, "ROUND_HALF_EVEN",
                                                    RULES.min_price)
    quoted = make_order(market_type=MarketType.SPOT, order_type=OrderType.MARKET, price=None, leverage=None,
                        quantity=None, quote_order_qty=RULES.min_notional / 2)
    with pytest.raises(PreconditionFailed, match="notional"):
        fit_order(quoted, RULES)
    assert fit_order(dataclasses.replace(quoted, quote_order_qty=RULES.min_notional), RULES).quantity is None


def test_futures_user_trades_are_read_by_time_or_trade_id_never_by_order_id():
    by_time = prepare_user_trades("BTCUSDT", start_time_ms=1569514978020)

    assert by_time.params == (("symbol", "BTCUSDT"), ("startTime", "1569514978020"), ("limit", "1000"))
    with pytest.raises(ValueError, match="no orderId"):
        prepare_user_trades("BTCUSDT", venue_order_id=25851813)
    with pytest.raises(ValueError, match="fromId cannot be sent with startTime"):
        prepare_user_trades("BTCUSDT", from_id=1, start_time_ms=2)
    assert prepare_user_trades("BNBUSDT", MarketType.SPOT, venue_order_id=266358).param("orderId") == "266358"


def test_countdown_cancel_all_is_the_documented_heartbeat():
    request = prepare_countdown_cancel_all("BTCUSDT", 120_000)

    assert (request.method, request.path, request.params, request.weight) == (
        "POST", "/fapi/v1/countdownCancelAll", (("symbol", "BTCUSDT"), ("countdownTime", "120000")), 10)
