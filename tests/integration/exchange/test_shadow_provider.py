"""Shadow mode against the venue simulator: real books, simulated fills, never an order request."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from services.domain import LiquiditySide, OrderStatus, OrderType, Side
from services.domain.errors import PreconditionFailed
from services.exchange.aster.requests import prepare_cancel_all
from services.exchange.providers.shadow import ShadowProvider

from venue_sim_support import running_venue


def test_shadow_fills_against_the_venue_book_and_never_calls_an_order_endpoint(make_order):
    async def scenario():
        async with running_venue() as venue:
            venue.sim.forbid_orders = True  # any order endpoint call is recorded as a violation
            provider = ShadowProvider(venue.transport(public_only=True), poll_seconds=0)
            market = await provider.execute(make_order(quantity=Decimal("0.8")))
            resting = make_order(order_type=OrderType.LIMIT, side=Side.SELL, price=Decimal("65100"), quantity=Decimal("0.2"))
            accepted = await provider.execute(resting)
            venue.sim.state.set_price(None, "BTCUSDT", Decimal("65200"))
            later = await provider.match_resting()
            cancel_all = await provider.cancel_all("BTCUSDT")
            await provider.close()
            return market, accepted, later, cancel_all, venue.sim.violations, venue.sim.requests, venue.sim.state.orders

    market, accepted, later, cancel_all, violations, requests, venue_orders = asyncio.run(scenario())

    fills = [r.fill for r in market if r.fill]
    assert [f.quantity for f in fills] == [Decimal("0.5"), Decimal("0.3")]  # the venue's real depth
    assert fills[0].price == Decimal("65006.5")  # its best ask (2 bps spread around 65000)
    assert [r.order_status for r in accepted] == [OrderStatus.ACCEPTED]
    assert [(r.fill.price, r.fill.liquidity_side) for r in later] == [(Decimal("65100"), LiquiditySide.MAKER)]
    assert cancel_all == []
    assert violations == [] and venue_orders == {}
    assert {(r["method"], r["path"]) for r in requests} == {("GET", "/fapi/v1/depth")}


def test_the_shadow_transport_refuses_anything_but_public_reads():
    async def scenario():
        async with running_venue() as venue:
            transport = venue.transport(public_only=True)
            with pytest.raises(PreconditionFailed) as refused:
                await transport.send(prepare_cancel_all("BTCUSDT"))
            await transport.close()
            return refused.value, venue.sim.requests

    refused, requests = asyncio.run(scenario())

    assert refused.reason == "SHADOW_MODE_READ_ONLY"
    assert requests == []


def test_shadow_triggers_take_profit_and_trailing_stops_on_the_venues_book_and_never_sends_them(make_order):
    async def scenario():
        async with running_venue() as venue:
            venue.sim.forbid_orders = True
            provider = ShadowProvider(venue.transport(public_only=True), poll_seconds=0)
            take_profit = make_order(order_type=OrderType.TAKE_PROFIT_MARKET, side=Side.SELL,
                                     stop_price=Decimal("65500"), quantity=Decimal("0.1"))
            trailing = make_order(order_type=OrderType.TRAILING_STOP_MARKET, side=Side.BUY, quantity=Decimal("0.1"),
                                  callback_rate=Decimal("1"))
            accepted = await provider.execute(take_profit) + await provider.execute(trailing)
            moves = []
            for price in ("64000", "64600", "64700", "65600"):   # the trail's low: 64000, + 1 %: 64640
                venue.sim.state.set_price(None, "BTCUSDT", Decimal(price))
                moves.append({(r.order_id, r.order_status) for r in await provider.match_resting()})
            await provider.close()
            return take_profit, trailing, accepted, moves, venue.sim.violations, venue.sim.state.orders

    take_profit, trailing, accepted, moves, violations, venue_orders = asyncio.run(scenario())

    assert [r.order_status for r in accepted] == [OrderStatus.ACCEPTED, OrderStatus.ACCEPTED]
    assert moves == [set(), set(), {(trailing.order_id, OrderStatus.FILLED)},
                     {(take_profit.order_id, OrderStatus.FILLED)}]
    assert violations == [] and venue_orders == {}
