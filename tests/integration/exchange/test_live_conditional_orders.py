"""Take-profit, trailing-stop, close-position and quote-amount orders in live mode against
the simulator, with V1 (HMAC) and V3 (API wallet) credentials: the parameters as Aster's
New Order names them (the simulator refuses any other), triggered and filled by the venue,
reported once, FILLED on the venue's word where the venue decides the quantity."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from services.domain import MarginMode, MarketType, OrderStatus, OrderType, Side, WorkingType
from services.exchange.aster.errors import VenueRejected
from services.exchange.providers.live import LiveProvider
from services.exchange.venue import OrderRef

from conftest import WALLET_A, running_venue, wallet

SIGNINGS = ["v1", "v3"]


def run(scenario):
    return asyncio.run(scenario())


def provider_for(venue, signing: str) -> LiveProvider:
    if signing == "v3":
        venue.register(WALLET_A)
        return LiveProvider(venue.transport(credentials=wallet()), poll_seconds=0)
    return LiveProvider(venue.transport(), poll_seconds=0)


def account_of(venue, signing: str):
    return venue.sim.state.accounts[WALLET_A[0] if signing == "v3" else "default"]


async def ready(provider):
    await provider.set_leverage("BTCUSDT", 10)
    await provider.set_margin_mode("BTCUSDT", MarginMode.ISOLATED)


def placement(venue, order) -> tuple[str, dict[str, str]]:
    """The path and parameters (authentication left out) of the venue's placement of ``order``."""
    for request in venue.sim.requests:
        if request.get("params", {}).get("newClientOrderId") == order.client_order_id:
            return request["path"], request["params"]
    raise AssertionError(f"no placement of {order.client_order_id}")


@pytest.mark.parametrize("signing", SIGNINGS)
def test_a_take_profit_market_buy_rests_until_the_price_falls_to_its_stop_then_fills(make_order, signing):
    async def scenario():
        async with running_venue() as venue:
            provider = provider_for(venue, signing)
            await ready(provider)
            order = make_order(order_type=OrderType.TAKE_PROFIT_MARKET, stop_price=Decimal("64000"),
                               quantity=Decimal("0.2"), working_type=WorkingType.CONTRACT_PRICE)
            accepted = await provider.execute(order)
            venue.sim.state.set_price("futures", "BTCUSDT", Decimal("64500"))
            still = await provider.poll_once()
            venue.sim.state.set_price("futures", "BTCUSDT", Decimal("63990"))
            filled = await provider.poll_once()
            await provider.close()
            return accepted, still, filled, placement(venue, order)

    accepted, still, filled, (path, params) = run(scenario)

    assert [r.order_status for r in accepted] == [OrderStatus.ACCEPTED]
    assert (params["type"], params["stopPrice"], params["quantity"], params["workingType"]) == (
        "TAKE_PROFIT_MARKET", "64000", "0.2", "CONTRACT_PRICE")
    assert path == ("/fapi/v3/order" if signing == "v3" else "/fapi/v1/order")
    assert still == []
    assert filled[-1].order_status is OrderStatus.FILLED
    assert sum(r.fill.quantity for r in filled if r.fill) == Decimal("0.2")


@pytest.mark.parametrize("signing", SIGNINGS)
def test_a_protected_take_profit_limit_sends_price_protect_and_becomes_a_limit_order(make_order, signing):
    async def scenario():
        async with running_venue() as venue:
            provider = provider_for(venue, signing)
            await ready(provider)
            order = make_order(order_type=OrderType.TAKE_PROFIT, side=Side.SELL, stop_price=Decimal("66000"),
                               price=Decimal("66100"), quantity=Decimal("0.1"), price_protect=True)
            accepted = await provider.execute(order)
            venue.sim.state.set_price("futures", "BTCUSDT", Decimal("66000"))   # triggered: rests at 66100
            resting = await provider.poll_once()
            venue.sim.state.set_price("futures", "BTCUSDT", Decimal("66200"))
            filled = await provider.poll_once()
            await provider.close()
            return accepted, resting, filled, placement(venue, order)[1]

    accepted, resting, filled, params = run(scenario)

    assert (params["type"], params["price"], params["stopPrice"], params["timeInForce"], params["priceProtect"]) == (
        "TAKE_PROFIT", "66100", "66000", "GTC", "TRUE")
    assert resting == []
    assert [(r.fill.price, r.order_status) for r in filled if r.fill] == [(Decimal("66100"), OrderStatus.FILLED)]


@pytest.mark.parametrize("signing", SIGNINGS)
def test_a_trailing_stop_on_the_mark_price_activates_trails_and_triggers_on_its_callback(make_order, signing):
    async def scenario():
        async with running_venue() as venue:
            provider = provider_for(venue, signing)
            await ready(provider)
            order = make_order(order_type=OrderType.TRAILING_STOP_MARKET, side=Side.SELL, quantity=Decimal("0.1"),
                               callback_rate=Decimal("1"), activation_price=Decimal("65500"),
                               working_type=WorkingType.MARK_PRICE)
            accepted = await provider.execute(order)
            quiet = []
            for mark in ("65400", "65600", "66500", "65900"):   # active at 65600, high 66500, 1 %: 65835
                venue.sim.state.set_mark("BTCUSDT", Decimal(mark))
                quiet += await provider.poll_once()
            venue.sim.state.set_mark("BTCUSDT", Decimal("65830"))
            filled = await provider.poll_once()
            venue_order = next(iter(account_of(venue, signing).orders.values()))
            await provider.close()
            return accepted, quiet, filled, venue_order, placement(venue, order)[1]

    accepted, quiet, filled, venue_order, params = run(scenario)

    assert (params["type"], params["callbackRate"], params["activationPrice"], params["workingType"]) == (
        "TRAILING_STOP_MARKET", "1", "65500", "MARK_PRICE")
    assert "stopPrice" not in params and "price" not in params
    assert quiet == []
    assert filled[-1].order_status is OrderStatus.FILLED
    assert venue_order.to_json()["priceRate"] == "1" and venue_order.to_json()["activatePrice"] == "65500"


@pytest.mark.parametrize("signing", SIGNINGS)
def test_a_trailing_stop_whose_activation_price_is_passed_is_refused_by_the_venue(make_order, signing):
    async def scenario():
        async with running_venue() as venue:
            provider = provider_for(venue, signing)
            await ready(provider)
            order = make_order(order_type=OrderType.TRAILING_STOP_MARKET, side=Side.BUY, quantity=Decimal("0.1"),
                               callback_rate=Decimal("0.5"), activation_price=Decimal("65100"))
            with pytest.raises(VenueRejected) as refused:
                await provider.execute(order)
            await provider.close()
            return refused.value

    refused = run(scenario)

    assert (refused.reason, refused.venue_code) == ("ORDER_WOULD_IMMEDIATELY_TRIGGER", -2021)


@pytest.mark.parametrize("signing", SIGNINGS)
def test_a_close_position_take_profit_closes_the_whole_position_and_ends_filled(make_order, signing):
    async def scenario():
        async with running_venue() as venue:
            provider = provider_for(venue, signing)
            await ready(provider)
            opened = await provider.execute(make_order(quantity=Decimal("0.7")))
            order = make_order(order_type=OrderType.TAKE_PROFIT_MARKET, side=Side.SELL, stop_price=Decimal("66000"),
                               quantity=None, close_position=True)
            accepted = await provider.execute(order)
            venue.sim.state.set_price("futures", "BTCUSDT", Decimal("66000"))
            filled = await provider.poll_once()
            position = account_of(venue, signing).position("BTCUSDT", "BOTH").amount
            state = await provider.query_order(OrderRef.of(order))
            await provider.close()
            return opened, accepted, filled, position, state, placement(venue, order)[1]

    opened, accepted, filled, position, state, params = run(scenario)

    assert (params["type"], params["closePosition"]) == ("TAKE_PROFIT_MARKET", "true")
    assert "quantity" not in params and "reduceOnly" not in params
    fills = [r for r in filled if r.fill]
    assert sum(r.fill.quantity for r in fills) == Decimal("0.7") and position == 0
    # One report per trade, then FILLED on the venue's word (the order had no quantity of its own).
    assert len({r.fill.trade_id for r in fills}) == len(fills) > 1
    assert filled[-1].order_status is OrderStatus.FILLED and filled[-1].cumulative_quantity == Decimal("0.7")
    assert all(r.order_status is OrderStatus.PARTIALLY_FILLED for r in fills[:-1])
    assert state.status is OrderStatus.FILLED and state.executed_quantity == Decimal("0.7")


@pytest.mark.parametrize("signing", SIGNINGS)
def test_a_spot_market_buy_of_a_quote_amount_buys_what_it_buys_and_ends_filled(make_order, signing):
    async def scenario():
        async with running_venue() as venue:
            provider = provider_for(venue, signing)
            order = make_order(market_type=MarketType.SPOT, symbol="ETHUSDT", quantity=None,
                               quote_order_qty=Decimal("1000"))
            reports = await provider.execute(order)
            trades = account_of(venue, signing).trades
            await provider.close()
            return reports, trades, placement(venue, order)

    reports, trades, (path, params) = run(scenario)

    assert params["quoteOrderQty"] == "1000" and "quantity" not in params
    assert path == ("/api/v3/order" if signing == "v3" else "/api/v1/order")
    fills = [r for r in reports if r.fill]
    assert [r.fill.trade_id for r in fills] == [f"spot-{t['id']}" for t in trades]
    spent = sum(r.fill.quantity * r.fill.price for r in fills)
    assert Decimal(1000) - Decimal("3.21") < spent <= Decimal(1000)      # whole 0.001 steps at ~3200
    assert reports[-1].order_status is OrderStatus.FILLED


@pytest.mark.parametrize(
    ("params", "code"),
    [({"type": "TAKE_PROFIT_MARKET", "stopPrice": "66000", "closePosition": "true", "quantity": "1"}, -4137),
     ({"type": "TAKE_PROFIT_MARKET", "stopPrice": "66000", "closePosition": "true", "reduceOnly": "true"}, -1106),
     ({"type": "LIMIT", "price": "60000", "timeInForce": "GTC", "closePosition": "true"}, -1106),
     ({"type": "TRAILING_STOP_MARKET", "quantity": "0.1", "callbackRate": "5.5"}, -1102),
     ({"type": "TRAILING_STOP_MARKET", "quantity": "0.1"}, -1102),
     ({"type": "STOP_MARKET", "quantity": "0.1", "stopPrice": "60000", "workingType": "LAST"}, -4031),
     ({"type": "MARKET", "quoteOrderQty": "100"}, -1103)],
    ids=["close-with-quantity", "close-with-reduce-only", "close-on-limit", "callback-above-5", "callback-missing",
         "unknown-working-type", "quote-amount-on-futures"],
)
def test_the_simulator_refuses_futures_orders_as_the_docs_say(params, code):
    async def scenario():
        async with running_venue() as venue:
            transport = venue.transport()
            from services.exchange.aster.requests import VenueRequest

            request = VenueRequest("POST", "/fapi/v1/order", tuple({"symbol": "BTCUSDT", "side": "SELL",
                                                                   **params}.items()), signed=True)
            with pytest.raises(VenueRejected) as refused:
                await transport.send(request)
            await transport.close()
            return refused.value

    assert run(scenario).venue_code == code


@pytest.mark.parametrize(
    ("params", "code"),
    [({"type": "MARKET", "side": "SELL", "quoteOrderQty": "100"}, -1106),
     ({"type": "MARKET", "side": "BUY", "quoteOrderQty": "100", "quantity": "0.1"}, -1106),
     ({"type": "TRAILING_STOP_MARKET", "side": "BUY", "quantity": "0.1", "callbackRate": "1"}, -1116),
     ({"type": "TAKE_PROFIT_MARKET", "side": "BUY", "quantity": "1", "stopPrice": "3100", "closePosition": "true"},
      -1106)],
    ids=["quote-amount-on-a-sell", "quote-amount-and-quantity", "trailing-on-spot", "close-position-on-spot"],
)
def test_the_simulator_refuses_spot_orders_as_the_docs_say(params, code):
    async def scenario():
        async with running_venue() as venue:
            transport = venue.transport()
            from services.exchange.aster.requests import VenueRequest

            request = VenueRequest("POST", "/api/v1/order", tuple({"symbol": "ETHUSDT", **params}.items()),
                                   signed=True)
            with pytest.raises(VenueRejected) as refused:
                await transport.send(request)
            await transport.close()
            return refused.value

    assert run(scenario).venue_code == code


def test_on_the_user_stream_a_close_position_orders_fills_end_filled_once(make_order):
    async def scenario():
        async with running_venue() as venue:
            venue.register(WALLET_A)
            credentials = wallet()
            provider = LiveProvider(venue.transport(credentials=credentials), poll_seconds=0)
            streamed = []

            async def sink(reports):
                streamed.extend(reports)

            await provider.start(sink)
            await ready(provider)
            await provider.execute(make_order(quantity=Decimal("0.7")))
            order = make_order(order_type=OrderType.STOP_MARKET, side=Side.SELL, stop_price=Decimal("64000"),
                               quantity=None, close_position=True)
            accepted = await provider.execute(order)
            stream = provider.sessions[credentials.account_key].streams[MarketType.FUTURES]
            assert await stream.wait_connected(5)
            venue.sim.state.set_price("futures", "BTCUSDT", Decimal("63900"))
            deadline = asyncio.get_running_loop().time() + 5
            while not any(r.order_status is OrderStatus.FILLED and r.order_id == order.order_id for r in streamed):
                assert asyncio.get_running_loop().time() < deadline, streamed
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)
            polled = await provider.poll_once()      # nothing more to say
            await provider.close()
            return accepted, [r for r in streamed if r.order_id == order.order_id], polled

    accepted, reports, polled = run(scenario)

    assert [r.order_status for r in accepted] == [OrderStatus.ACCEPTED]
    fills = [r for r in reports if r.fill]
    assert sum(r.fill.quantity for r in fills) == Decimal("0.7")
    assert [r.order_status for r in reports if r.order_status is OrderStatus.FILLED] == [OrderStatus.FILLED]
    assert reports[-1].order_status is OrderStatus.FILLED and polled == []
