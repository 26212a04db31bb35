"""The prepare functions: the exact requests (method, path, parameters in order) they build."""

from __future__ import annotations

from decimal import Decimal

import pytest

from services.domain import MarketType, OrderType, Side, TimeInForce, WorkingType
from services.domain.errors import PreconditionFailed
from services.exchange.aster.requests import (
    VenueRequest,
    prepare_book_ticker,
    prepare_cancel_all,
    prepare_cancel_order,
    prepare_depth,
    prepare_emergency_cancel_all,
    prepare_futures_order,
    prepare_open_orders,
    prepare_query_order,
    prepare_set_leverage,
    prepare_set_margin_type,
    prepare_spot_order,
    prepare_ticker_price,
    prepare_user_trades,
)
from services.exchange.aster.rules import SymbolRules

RULES = SymbolRules(
    "BTCUSDT",
    tick_size=Decimal("0.1"),
    min_price=Decimal("0.1"),
    max_price=Decimal("1000000"),
    step_size=Decimal("0.001"),
    min_qty=Decimal("0.001"),
    max_qty=Decimal("1000"),
    min_notional=Decimal("5"),
)


def test_futures_limit_order_is_a_signed_post_with_every_parameter_in_order(make_order):
    order = make_order(client_order_id="cid-1", side=Side.BUY, quantity=Decimal("0.010"), price=Decimal("65000.00"))

    request = prepare_futures_order(order)

    assert request == VenueRequest(
        "POST",
        "/fapi/v1/order",
        (
            ("symbol", "BTCUSDT"),
            ("side", "BUY"),
            ("type", "LIMIT"),
            ("timeInForce", "GTC"),
            ("quantity", "0.01"),
            ("price", "65000"),
            ("newClientOrderId", "cid-1"),
            ("newOrderRespType", "RESULT"),
        ),
        signed=True,
        weight=1,
        places_order=True,
    )
    assert request.is_trading and not request.idempotent


def test_futures_market_order_sends_no_price_and_no_time_in_force(make_order):
    order = make_order(client_order_id="m1", order_type=OrderType.MARKET, price=None, side=Side.SELL)

    request = prepare_futures_order(order)

    assert request.params == (
        ("symbol", "BTCUSDT"),
        ("side", "SELL"),
        ("type", "MARKET"),
        ("quantity", "1.5"),
        ("newClientOrderId", "m1"),
        ("newOrderRespType", "RESULT"),
    )


def test_futures_stop_limit_is_asters_stop_type_with_stop_price_and_reduce_only(make_order):
    order = make_order(
        client_order_id="s1",
        order_type=OrderType.STOP_LIMIT,
        side=Side.SELL,
        price=Decimal("59000"),
        stop_price=Decimal("59500"),
        time_in_force=TimeInForce.IOC,
        reduce_only=True,
    )

    assert prepare_futures_order(order).params == (
        ("symbol", "BTCUSDT"),
        ("side", "SELL"),
        ("type", "STOP"),
        ("timeInForce", "IOC"),
        ("quantity", "1.5"),
        ("price", "59000"),
        ("stopPrice", "59500"),
        ("reduceOnly", "true"),
        ("newClientOrderId", "s1"),
        ("newOrderRespType", "RESULT"),
    )


def test_stop_market_order_sends_its_stop_price_only(make_order):
    order = make_order(client_order_id="sm", order_type=OrderType.STOP_MARKET, price=None, stop_price=Decimal("70000"))

    params = dict(prepare_futures_order(order).params)

    assert params["type"] == "STOP_MARKET"
    assert params["stopPrice"] == "70000"
    assert "price" not in params and "timeInForce" not in params


def test_trailing_stop_market_sends_the_callback_rate_activation_price_and_working_type(make_order):
    order = make_order(client_order_id="ts", order_type=OrderType.TRAILING_STOP_MARKET, side=Side.SELL, price=None,
                       quantity=Decimal("0.010"), callback_rate=Decimal("0.50"), activation_price=Decimal("66000.04"),
                       working_type=WorkingType.MARK_PRICE, reduce_only=True)

    # activationPrice on the tick (the nearest), the names as Aster's New Order documents them.
    assert prepare_futures_order(order, RULES).params == (
        ("symbol", "BTCUSDT"),
        ("side", "SELL"),
        ("type", "TRAILING_STOP_MARKET"),
        ("quantity", "0.01"),
        ("activationPrice", "66000"),
        ("callbackRate", "0.5"),
        ("reduceOnly", "true"),
        ("workingType", "MARK_PRICE"),
        ("newClientOrderId", "ts"),
        ("newOrderRespType", "RESULT"),
    )
    no_activation = dict(prepare_futures_order(make_order(
        order_type=OrderType.TRAILING_STOP_MARKET, price=None, callback_rate=Decimal("1"))).params)
    assert "activationPrice" not in no_activation and "stopPrice" not in no_activation


def test_take_profit_market_closing_the_position_sends_close_position_and_no_quantity(make_order):
    order = make_order(client_order_id="tp", order_type=OrderType.TAKE_PROFIT_MARKET, side=Side.SELL, price=None,
                       stop_price=Decimal("70000"), quantity=None, close_position=True, price_protect=True,
                       working_type=WorkingType.CONTRACT_PRICE)

    assert prepare_futures_order(order, RULES).params == (
        ("symbol", "BTCUSDT"),
        ("side", "SELL"),
        ("type", "TAKE_PROFIT_MARKET"),
        ("stopPrice", "70000"),
        ("closePosition", "true"),
        ("workingType", "CONTRACT_PRICE"),
        ("priceProtect", "TRUE"),
        ("newClientOrderId", "tp"),
        ("newOrderRespType", "RESULT"),
    )


def test_take_profit_limit_is_asters_take_profit_type_with_time_in_force(make_order):
    order = make_order(client_order_id="tl", order_type=OrderType.TAKE_PROFIT, side=Side.SELL,
                       price=Decimal("70100"), stop_price=Decimal("70000"), time_in_force=TimeInForce.GTC)

    assert prepare_futures_order(order).params[:7] == (
        ("symbol", "BTCUSDT"), ("side", "SELL"), ("type", "TAKE_PROFIT"), ("timeInForce", "GTC"),
        ("quantity", "1.5"), ("price", "70100"), ("stopPrice", "70000"))


def test_spot_market_buy_with_a_quote_amount_sends_quote_order_qty_and_no_quantity(make_order):
    order = make_order(client_order_id="q1", market_type=MarketType.SPOT, order_type=OrderType.MARKET, price=None,
                       leverage=None, quantity=None, quote_order_qty=Decimal("100.50"))

    assert prepare_spot_order(order, RULES).params == (
        ("symbol", "BTCUSDT"),
        ("side", "BUY"),
        ("type", "MARKET"),
        ("quoteOrderQty", "100.5"),
        ("newClientOrderId", "q1"),
        ("newOrderRespType", "RESULT"),
    )


def test_futures_only_fields_are_never_sent_to_spot(make_order):
    order = make_order(market_type=MarketType.SPOT, order_type=OrderType.STOP_MARKET, price=None,
                       stop_price=Decimal("70000"), leverage=None, working_type=WorkingType.MARK_PRICE)

    with pytest.raises(PreconditionFailed, match="working_type") as raised:
        prepare_spot_order(order)

    assert raised.value.reason == "ORDER_NOT_REPRESENTABLE"


def test_post_only_limit_order_is_sent_as_gtx(make_order):
    order = make_order(post_only=True)

    assert dict(prepare_futures_order(order).params)["timeInForce"] == "GTX"


@pytest.mark.parametrize("time_in_force", [TimeInForce.IOC, TimeInForce.FOK])
@pytest.mark.parametrize("market_type", [MarketType.FUTURES, MarketType.SPOT])
def test_a_post_only_order_that_must_not_rest_is_refused_not_sent_as_gtx(make_order, time_in_force, market_type):
    # GTX rests what it does not fill; an IOC or FOK post-only order never rests (it can
    # only expire): sent as GTX it would be another order.
    order = make_order(post_only=True, time_in_force=time_in_force, market_type=market_type)

    with pytest.raises(PreconditionFailed) as raised:
        prepare_futures_order(order) if market_type is MarketType.FUTURES else prepare_spot_order(order)

    assert raised.value.reason == "ORDER_NOT_REPRESENTABLE"
    assert "post_only" in str(raised.value) and time_in_force.value in str(raised.value)


def test_spot_order_goes_to_the_spot_path(make_order):
    order = make_order(client_order_id="sp", market_type=MarketType.SPOT, symbol="ETHUSDT", price=Decimal("3000"))

    request = prepare_spot_order(order)

    assert (request.method, request.path, request.signed) == ("POST", "/api/v1/order", True)
    assert request.params[:3] == (("symbol", "ETHUSDT"), ("side", "BUY"), ("type", "LIMIT"))
    assert ("newClientOrderId", "sp") in request.params


def test_gtd_order_cannot_be_represented_and_is_refused_before_sending(make_order):
    order = make_order(time_in_force=TimeInForce.GTD)

    with pytest.raises(PreconditionFailed) as raised:
        prepare_futures_order(order)

    assert raised.value.reason == "ORDER_NOT_REPRESENTABLE"


def test_cancel_order_is_a_signed_delete_by_client_order_id():
    assert prepare_cancel_order("ETHUSDT", "cid-9") == VenueRequest(
        "DELETE", "/fapi/v1/order", (("symbol", "ETHUSDT"), ("origClientOrderId", "cid-9")), signed=True
    )
    assert prepare_cancel_order("ETHUSDT", "cid-9", MarketType.SPOT).path == "/api/v1/order"


def test_cancel_all_is_a_signed_delete_of_all_open_orders_for_the_symbol():
    assert prepare_cancel_all("BTCUSDT") == VenueRequest(
        "DELETE", "/fapi/v1/allOpenOrders", (("symbol", "BTCUSDT"),), signed=True
    )


def test_emergency_cancel_all_cancels_each_symbol_once_in_name_order():
    requests = prepare_emergency_cancel_all(["SOLUSDT", "BTCUSDT", "SOLUSDT"])

    assert [r.param("symbol") for r in requests] == ["BTCUSDT", "SOLUSDT"]
    assert all(r.path == "/fapi/v1/allOpenOrders" and r.method == "DELETE" for r in requests)


def test_leverage_and_margin_type_requests():
    assert prepare_set_leverage("BTCUSDT", 5) == VenueRequest(
        "POST", "/fapi/v1/leverage", (("symbol", "BTCUSDT"), ("leverage", "5")), signed=True
    )
    assert prepare_set_margin_type("BTCUSDT", "ISOLATED") == VenueRequest(
        "POST", "/fapi/v1/marginType", (("symbol", "BTCUSDT"), ("marginType", "ISOLATED")), signed=True
    )


def test_reads_are_idempotent_and_carry_their_weight():
    query = prepare_query_order("BTCUSDT", "cid-1")
    trades = prepare_user_trades("BTCUSDT", from_id=42)
    by_order = prepare_user_trades("BTCUSDT", MarketType.SPOT, venue_order_id=7, limit=100)

    assert query == VenueRequest(
        "GET", "/fapi/v1/order", (("symbol", "BTCUSDT"), ("origClientOrderId", "cid-1")), signed=True
    )
    assert trades.params == (("symbol", "BTCUSDT"), ("fromId", "42"), ("limit", "1000")) and trades.weight == 5
    assert by_order.path == "/api/v1/userTrades"
    assert by_order.params == (("symbol", "BTCUSDT"), ("orderId", "7"), ("limit", "100"))
    assert prepare_open_orders("BTCUSDT").path == "/fapi/v1/openOrders"
    assert all(r.idempotent and not r.is_trading for r in (query, trades, by_order))


def test_public_market_data_requests_are_unsigned():
    for request in (prepare_ticker_price("BTCUSDT"), prepare_book_ticker("BTCUSDT"), prepare_depth("BTCUSDT")):
        assert not request.signed and request.method == "GET"
    assert prepare_book_ticker("ETHUSDT", MarketType.SPOT).path == "/api/v1/ticker/bookTicker"
    assert prepare_depth("BTCUSDT").params == (("symbol", "BTCUSDT"), ("limit", "20"))
    assert prepare_depth("BTCUSDT").weight == 2


# -- fitting to the symbol's rules ------------------------------------------------------------
@pytest.mark.parametrize(
    ("side", "price", "sent"),
    [(Side.BUY, "65000.07", "65000"), (Side.SELL, "65000.01", "65000.1"), (Side.BUY, "65000.1", "65000.1")],
)
def test_limit_prices_round_to_the_tick_in_the_orders_favour(make_order, side, price, sent):
    order = make_order(side=side, price=Decimal(price), quantity=Decimal("0.01"))

    assert dict(prepare_futures_order(order, RULES).params)["price"] == sent


@pytest.mark.parametrize(
    ("quantity", "problem"),
    [
        ("0.0105", "not a multiple of the step size"),
        ("0.0001", "not a multiple of the step size"),
        ("2000", "above the maximum"),
        ("0.00005", "not a multiple"),
    ],
)
def test_an_unrepresentable_quantity_is_refused_before_sending(make_order, quantity, problem):
    order = make_order(quantity=Decimal(quantity), price=Decimal("65000"))

    with pytest.raises(PreconditionFailed) as raised:
        prepare_futures_order(order, RULES)

    assert raised.value.reason == "ORDER_NOT_REPRESENTABLE"
    assert problem in str(raised.value)


def test_an_order_below_the_minimum_notional_is_refused(make_order):
    order = make_order(quantity=Decimal("0.001"), price=Decimal("100"))

    with pytest.raises(PreconditionFailed, match="notional"):
        prepare_futures_order(order, RULES)


def test_a_quantity_on_the_step_is_sent_normalised(make_order):
    order = make_order(quantity=Decimal("0.0100"), price=Decimal("65000"))

    assert dict(prepare_futures_order(order, RULES).params)["quantity"] == "0.01"
