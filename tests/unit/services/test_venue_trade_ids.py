"""The ids live venue trades are stored under: unique per venue however the venue numbers them."""

from __future__ import annotations

import pytest

from services.domain import MarketType, Side
from services.domain.trade import legacy_venue_trade_id, venue_trade_id


def test_one_number_in_two_symbols_or_on_two_sides_or_in_two_markets_is_four_ids():
    ids = {
        venue_trade_id(MarketType.FUTURES, "BTCUSDT", Side.BUY, 1042),
        venue_trade_id(MarketType.FUTURES, "ETHUSDT", Side.BUY, 1042),
        venue_trade_id(MarketType.FUTURES, "BTCUSDT", Side.SELL, 1042),
        venue_trade_id(MarketType.SPOT, "BTCUSDT", Side.BUY, 1042),
    }
    assert ids == {"BTCUSDT:1042:BUY", "ETHUSDT:1042:BUY", "BTCUSDT:1042:SELL", "spot:BTCUSDT:1042:BUY"}


def test_the_venue_record_side_as_text_gives_the_same_id_as_the_order_side():
    assert venue_trade_id(MarketType.SPOT, "ETHUSDT", "SELL", "77") == venue_trade_id(
        MarketType.SPOT, "ETHUSDT", Side.SELL, 77) == "spot:ETHUSDT:77:SELL"


@pytest.mark.parametrize(("trade_id", "legacy"), [
    ("BTCUSDT:1042:BUY", "1042"),
    ("spot:BTCUSDT:1042:SELL", "spot-1042"),
    ("paper-3f2a9c", None),
    ("sim-run-12", None),
    ("1042", None),
])
def test_the_id_a_live_trade_had_before_is_its_number_or_spot_and_its_number(trade_id, legacy):
    assert legacy_venue_trade_id(trade_id) == legacy
