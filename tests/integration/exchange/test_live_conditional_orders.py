"""Take-profit, trailing-stop, close-position and quote-amount orders in live mode against
the simulator, with V1 (HMAC) and V3 (API wallet) credentials: the parameters as Aster's
New Order names them (the simulator refuses any other), triggered and filled by the venue,
reported once, FILLED on the venue's word where the venue decides the quantity."""

from __future__ import annotations

import asyncio
import dataclasses
from decimal import Decimal
from typing import Any

import pytest

from services.domain import MarginMode, MarketType, Order, OrderStatus, OrderType, Side, WorkingType
from services.domain.execution import ExecutionReport
from services.exchange.aster.errors import VenueRejected
from services.exchange.providers.live import LiveProvider
from services.exchange.venue import OrderRef, VenueOrderState
from services.reliability.venue import VenueRecord

from venue_sim_support import WALLET_A, running_venue, streaming_provider, wallet

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


@dataclasses.dataclass
class Trip:
    """What :func:`trade_through` saw."""

    placed: list[ExecutionReport]
    steps: list[list[ExecutionReport]]
    path: str
    params: dict[str, str]
    state: VenueOrderState
    account: Any

    @property
    def reports(self) -> list[ExecutionReport]:
        return [report for step in self.steps for report in step]


def trade_through(signing: str, order: Order, moves: tuple[tuple[str, str], ...] = (), *,
                  opening: Order | None = None) -> Trip:
    """Place ``order`` (after ``opening``, an order that fills first), then move the futures
    price (``("price", "64000")``) or the mark price (``("mark", ...)``) a step at a time,
    polling the venue after each; the venue's word on the order at the end."""
    async def scenario() -> Trip:
        async with running_venue() as venue:
            provider = provider_for(venue, signing)
            try:
                if order.market_type is MarketType.FUTURES:
                    await ready(provider)
                if opening is not None:
                    await provider.execute(opening)
                placed = await provider.execute(order)
                steps = []
                for kind, price in moves:
                    if kind == "mark":
                        venue.sim.state.set_mark("BTCUSDT", Decimal(price))
                    else:
                        venue.sim.state.set_price("futures", "BTCUSDT", Decimal(price))
                    steps.append(await provider.poll_once())
                state = await provider.query_order(OrderRef.of(order))
            finally:
                await provider.close()
            return Trip(placed, steps, *placement(venue, order), state, account_of(venue, signing))

    return run(scenario)


@pytest.mark.parametrize("signing", SIGNINGS)
def test_a_take_profit_market_buy_rests_until_the_price_falls_to_its_stop_then_fills(make_order, signing):
    order = make_order(order_type=OrderType.TAKE_PROFIT_MARKET, stop_price=Decimal("64000"),
                       quantity=Decimal("0.2"), working_type=WorkingType.CONTRACT_PRICE)

    trip = trade_through(signing, order, (("price", "64500"), ("price", "63990")))

    assert [r.order_status for r in trip.placed] == [OrderStatus.ACCEPTED]
    assert (trip.params["type"], trip.params["stopPrice"], trip.params["quantity"], trip.params["workingType"]) == (
        "TAKE_PROFIT_MARKET", "64000", "0.2", "CONTRACT_PRICE")
    assert trip.path == ("/fapi/v3/order" if signing == "v3" else "/fapi/v1/order")
    still, filled = trip.steps
    assert still == []
    assert filled[-1].order_status is OrderStatus.FILLED
    assert sum(r.fill.quantity for r in filled if r.fill) == Decimal("0.2")


@pytest.mark.parametrize("signing", SIGNINGS)
def test_a_protected_take_profit_limit_sends_price_protect_and_becomes_a_limit_order(make_order, signing):
    order = make_order(order_type=OrderType.TAKE_PROFIT, side=Side.SELL, stop_price=Decimal("66000"),
                       price=Decimal("66100"), quantity=Decimal("0.1"), price_protect=True)

    # At 66000 it triggers and rests as a limit SELL at 66100, which 66200 crosses.
    trip = trade_through(signing, order, (("price", "66000"), ("price", "66200")))

    assert (trip.params["type"], trip.params["price"], trip.params["stopPrice"], trip.params["timeInForce"],
            trip.params["priceProtect"]) == ("TAKE_PROFIT", "66100", "66000", "GTC", "TRUE")
    resting, filled = trip.steps
    assert resting == []
    assert [(r.fill.price, r.order_status) for r in filled if r.fill] == [(Decimal("66100"), OrderStatus.FILLED)]


@pytest.mark.parametrize("signing", SIGNINGS)
def test_a_trailing_stop_on_the_mark_price_activates_trails_and_triggers_on_its_callback(make_order, signing):
    order = make_order(order_type=OrderType.TRAILING_STOP_MARKET, side=Side.SELL, quantity=Decimal("0.1"),
                       callback_rate=Decimal("1"), activation_price=Decimal("65500"),
                       working_type=WorkingType.MARK_PRICE)

    # Active at 65600, the high 66500, 1 % back: 65835.
    marks = ("65400", "65600", "66500", "65900", "65830")
    trip = trade_through(signing, order, tuple(("mark", mark) for mark in marks))

    assert (trip.params["type"], trip.params["callbackRate"], trip.params["activationPrice"],
            trip.params["workingType"]) == ("TRAILING_STOP_MARKET", "1", "65500", "MARK_PRICE")
    assert "stopPrice" not in trip.params and "price" not in trip.params
    assert trip.steps[:-1] == [[]] * 4
    assert trip.steps[-1][-1].order_status is OrderStatus.FILLED
    venue_order = next(iter(trip.account.orders.values())).to_json()
    assert (venue_order["priceRate"], venue_order["activatePrice"]) == ("1", "65500")


@pytest.mark.parametrize("signing", SIGNINGS)
def test_a_trailing_stop_whose_activation_price_is_passed_is_refused_by_the_venue(make_order, signing):
    order = make_order(order_type=OrderType.TRAILING_STOP_MARKET, side=Side.BUY, quantity=Decimal("0.1"),
                       callback_rate=Decimal("0.5"), activation_price=Decimal("65100"))

    with pytest.raises(VenueRejected) as refused:
        trade_through(signing, order)

    assert (refused.value.reason, refused.value.venue_code) == ("ORDER_WOULD_IMMEDIATELY_TRIGGER", -2021)


@pytest.mark.parametrize("signing", SIGNINGS)
def test_a_close_position_take_profit_closes_the_whole_position_and_ends_filled(make_order, signing):
    order = make_order(order_type=OrderType.TAKE_PROFIT_MARKET, side=Side.SELL, stop_price=Decimal("66000"),
                       quantity=None, close_position=True)

    trip = trade_through(signing, order, (("price", "66000"),), opening=make_order(quantity=Decimal("0.7")))

    assert (trip.params["type"], trip.params["closePosition"]) == ("TAKE_PROFIT_MARKET", "true")
    assert "quantity" not in trip.params and "reduceOnly" not in trip.params
    fills = [r for r in trip.reports if r.fill]
    assert sum(r.fill.quantity for r in fills) == Decimal("0.7")
    assert trip.account.position("BTCUSDT", "BOTH").amount == 0
    # One report per trade, then FILLED on the venue's word (the order had no quantity of its own).
    assert len({r.fill.trade_id for r in fills}) == len(fills) > 1
    assert trip.reports[-1].order_status is OrderStatus.FILLED
    assert trip.reports[-1].cumulative_quantity == Decimal("0.7")
    assert all(r.order_status is OrderStatus.PARTIALLY_FILLED for r in fills[:-1])
    assert trip.state.status is OrderStatus.FILLED and trip.state.executed_quantity == Decimal("0.7")


@pytest.mark.parametrize("signing", SIGNINGS)
def test_a_spot_market_buy_of_a_quote_amount_buys_what_it_buys_and_ends_filled(make_order, signing):
    order = make_order(market_type=MarketType.SPOT, symbol="ETHUSDT", quantity=None, quote_order_qty=Decimal("1000"))

    trip = trade_through(signing, order)

    assert trip.params["quoteOrderQty"] == "1000" and "quantity" not in trip.params
    assert trip.path == ("/api/v3/order" if signing == "v3" else "/api/v1/order")
    fills = [r for r in trip.placed if r.fill]
    assert [r.fill.trade_id for r in fills] == [VenueRecord.trade_id(t) for t in trip.account.trades]
    spent = sum(r.fill.quantity * r.fill.price for r in fills)
    assert Decimal(1000) - Decimal("3.21") < spent <= Decimal(1000)      # whole 0.001 steps at ~3200
    assert trip.placed[-1].order_status is OrderStatus.FILLED
    assert trip.state.status is OrderStatus.FILLED


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
            provider, credentials, streamed = await streaming_provider(venue)
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
