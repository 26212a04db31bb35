"""Shadow mode against the venue simulator: real books, simulated fills, never an order request."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from services.domain import LiquiditySide, OrderStatus, OrderType, Side
from services.domain.errors import PreconditionFailed
from services.exchange.aster.requests import prepare_cancel_all
from services.exchange.providers.shadow import ShadowProvider

from conftest import running_venue


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
