"""A restarted live Exchange takes the leverage and margin mode the venue holds for the
symbols ``TESSERA_VENUE_SETTINGS_SYMBOLS`` names (set before the restart), and only
those: it takes their orders at once, and still refuses the others' until SetLeverage
and SetMarginMode (against the venue simulator, real HTTP on loopback)."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from services.common.config import ConfigError
from services.domain import MarginMode
from services.domain.errors import PreconditionFailed
from services.exchange.__main__ import restore_settings, settings_symbols
from services.exchange.providers.live import LiveProvider

from conftest import running_venue


def test_a_restarted_provider_takes_the_venues_settings_for_the_symbols_named_and_only_those(make_order):
    async def scenario():
        async with running_venue() as venue:
            before = LiveProvider(venue.transport(), poll_seconds=0)  # the Exchange before its restart
            for symbol in ("BTCUSDT", "ETHUSDT"):
                await before.set_leverage(symbol, 7)
                await before.set_margin_mode(symbol, MarginMode.ISOLATED)
            await before.close()

            after = LiveProvider(venue.transport(), poll_seconds=0)  # the restarted one
            await restore_settings(after, ["BTCUSDT", "SOLUSDT"])
            reports = await after.execute(make_order(quantity=Decimal("0.01")))
            with pytest.raises(PreconditionFailed) as not_named:  # set at the venue, but not named
                await after.execute(make_order(symbol="ETHUSDT", quantity=Decimal("0.01"), price=Decimal("3200")))
            with pytest.raises(PreconditionFailed) as mismatch:
                await after.execute(make_order(quantity=Decimal("0.01"), leverage=Decimal(3)))
            session = after.session(None)
            settings = dict(session.leverage), dict(session.margin_modes)
            await after.close()
            return reports, not_named.value, mismatch.value, settings

    reports, not_named, mismatch, (leverage, margin_modes) = asyncio.run(scenario())

    assert reports and reports[-1].order_status.value in ("ACCEPTED", "FILLED", "PARTIALLY_FILLED")
    assert not_named.reason == "LEVERAGE_NOT_SET"
    assert mismatch.reason == "LEVERAGE_MISMATCH"  # the venue's leverage (7) taken, not a default
    assert leverage["BTCUSDT"] == 7 and margin_modes["BTCUSDT"] is MarginMode.ISOLATED
    assert "ETHUSDT" not in leverage


def test_a_venue_that_does_not_answer_leaves_the_symbols_unset(make_order):
    async def scenario():
        async with running_venue() as venue:
            provider = LiveProvider(venue.transport(), poll_seconds=0)
        # the venue is gone now
        await restore_settings(provider, ["BTCUSDT"])
        with pytest.raises(PreconditionFailed) as refused:
            await provider.execute(make_order(quantity=Decimal("0.01")))
        await provider.close()
        return refused.value

    refused = asyncio.run(scenario())

    assert refused.reason == "LEVERAGE_NOT_SET"


def test_the_symbols_variable_is_read_strictly():
    assert settings_symbols({"TESSERA_VENUE_SETTINGS_SYMBOLS": " btcusdt, ETHUSDT ,"}) == ["BTCUSDT", "ETHUSDT"]
    assert settings_symbols({}) == []
    with pytest.raises(ConfigError, match="not a symbol: BTC/USDT"):
        settings_symbols({"TESSERA_VENUE_SETTINGS_SYMBOLS": "BTC/USDT"})
