"""A restarted live Exchange reads the venue's settings before it serves when
``TESSERA_VENUE_SETTINGS_SYMBOLS`` names the symbols it trades: every symbol's leverage
and margin mode (set before the restart) is taken, each named symbol the venue has none
for is reported, and the provider's start does not read them a second time (against the
venue simulator, real HTTP on loopback)."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from services.common.config import ConfigError
from services.domain import MarginMode
from services.domain.errors import PreconditionFailed
from services.exchange.__main__ import restore_settings, settings_symbols
from services.exchange.providers.live import LiveProvider

from venue_sim_support import running_venue

SETTINGS_PATHS = ("/fapi/v1/positionSide/dual", "/fapi/v2/positionRisk")


def test_a_restarted_provider_takes_the_venues_settings_before_serving_and_reads_them_once(make_order):
    async def scenario():
        async with running_venue() as venue:
            before = LiveProvider(venue.transport(), poll_seconds=0)  # the Exchange before its restart
            for symbol in ("BTCUSDT", "ETHUSDT"):
                await before.set_leverage(symbol, 7)
                await before.set_margin_mode(symbol, MarginMode.ISOLATED)
            await before.close()

            after = LiveProvider(venue.transport(), poll_seconds=0)  # the restarted one
            missing = await after.restore_settings(["BTCUSDT", "SOLUSDT"])
            read_before_serving = [r["path"] for r in venue.sim.requests if r["path"] in SETTINGS_PATHS]
            await after.start(lambda reports: asyncio.sleep(0))
            settings_reads = [r["path"] for r in venue.sim.requests if r["path"] in SETTINGS_PATHS]
            reports = await after.execute(make_order(quantity=Decimal("0.01")))
            # Set at the venue but not named: taken too, as the start would take it.
            others = await after.execute(make_order(symbol="ETHUSDT", quantity=Decimal("0.01"), price=Decimal("3200")))
            with pytest.raises(PreconditionFailed) as mismatch:
                await after.execute(make_order(quantity=Decimal("0.01"), leverage=Decimal(3)))
            session = after.session(None)
            settings = dict(session.leverage), dict(session.margin_modes)
            await after.close()
            return missing, read_before_serving, settings_reads, reports, others, mismatch.value, settings

    missing, read_before_serving, settings_reads, reports, others, mismatch, (leverage, margin_modes) = \
        asyncio.run(scenario())

    assert missing == ["SOLUSDT"]  # named, but the venue has no leverage or margin mode for it
    assert sorted(read_before_serving) == sorted(SETTINGS_PATHS)
    assert sorted(settings_reads) == sorted(SETTINGS_PATHS)  # each read once: the start did not read again
    for answered in (reports, others):
        assert answered and answered[-1].order_status.value in ("ACCEPTED", "FILLED", "PARTIALLY_FILLED")
    assert mismatch.reason == "LEVERAGE_MISMATCH"  # the venue's leverage (7) taken, not a default
    assert leverage["BTCUSDT"] == leverage["ETHUSDT"] == 7
    assert margin_modes["BTCUSDT"] is margin_modes["ETHUSDT"] is MarginMode.ISOLATED


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


def test_orders_arriving_while_the_start_reads_the_settings_share_its_one_read(make_order):
    async def scenario():
        async with running_venue() as venue:
            before = LiveProvider(venue.transport(), poll_seconds=0)
            await before.set_leverage("BTCUSDT", 7)
            await before.set_margin_mode("BTCUSDT", MarginMode.ISOLATED)
            await before.close()
            venue.sim.requests.clear()

            after = LiveProvider(venue.transport(), poll_seconds=0)  # restarted, orders already waiting
            starting = asyncio.create_task(after.start(lambda reports: asyncio.sleep(0)))
            answers = await asyncio.gather(*(after.execute(make_order(quantity=Decimal("0.01"))) for _ in range(5)))
            await starting
            reads = [r["path"] for r in venue.sim.requests if r["path"] in SETTINGS_PATHS]
            await after.close()
            return answers, reads

    answers, reads = asyncio.run(scenario())

    assert all(reports and reports[-1].order_status.value == "FILLED" for reports in answers)  # none refused
    assert sorted(reads) == sorted(SETTINGS_PATHS)  # one read for the start and the five orders
