"""Positions as ListPositions answers them: valued at Risk's reference prices, with the
unrealised PnL left empty where the price source has no price; page tokens."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from services.domain import MarketType
from services.domain.errors import InvalidOrder
from services.domain.ledger import Position
from services.risk import positions
from services.risk.prices import StaticPrices
from tessera.common.v1 import types_pb2 as common_pb

D = Decimal
AT = dt.datetime(2026, 3, 1, 9, 30, tzinfo=dt.timezone.utc)


def held(symbol: str, quantity: str, cost: str, market: MarketType = MarketType.FUTURES, **fields) -> Position:
    return Position("acct-1", symbol, D(quantity), D(cost), market_type=market, updated_time=AT, **fields)


def test_long_and_short_positions_are_valued_at_the_reference_price():
    prices = StaticPrices({"BTCUSDT": D("66000"), "ETHUSDT": D("3000")})
    long_btc = held("BTCUSDT", "0.5", "32500", realised_pnl=D("120"), commission=D("13"),
                    fees=(("BNB", D("0.01")), ("USDT", D("13"))))
    short_eth = held("ETHUSDT", "-2", "6400", MarketType.SPOT)

    answers = [positions.to_proto(v) for v in positions.value([long_btc, short_eth], prices)]

    btc, eth = answers
    assert (btc.mark_price, btc.unrealised_pnl, btc.average_entry_price) == ("66000", "500", "65000")
    assert (btc.realised_pnl, btc.commission, btc.net_realised_pnl) == ("120", "13", "107")
    assert [(f.asset, f.amount) for f in btc.fees] == [("BNB", "0.01"), ("USDT", "13")]
    assert (eth.market_type, eth.quantity, eth.unrealised_pnl) == (common_pb.MARKET_TYPE_SPOT, "-2", "400")
    assert btc.updated_time.ToDatetime(tzinfo=dt.timezone.utc) == AT


def test_without_a_reference_price_mark_and_unrealised_are_empty():
    (answer,) = [positions.to_proto(v) for v in positions.value([held("DOGEUSDT", "10", "1")], StaticPrices({}))]

    assert (answer.mark_price, answer.unrealised_pnl, answer.quantity) == ("", "", "10")


def test_a_page_token_continues_after_its_position_and_a_forged_one_is_refused():
    token = positions.page_token(held("BTCUSDT", "1", "1", MarketType.SPOT))

    assert positions.after_token(token) == ("acct-1", "BTCUSDT", "SPOT")
    assert positions.after_token("") is None
    for forged in ("not-a-token", token[:-3], "WyJhIiwiYiIsIkNPSU4iXQ"):  # the last: ["a","b","COIN"]
        with pytest.raises(InvalidOrder, match="page_token"):
            positions.after_token(forged)


@pytest.mark.parametrize("size, expected", [(0, 100), (1, 1), (1000, 1000)])
def test_page_size_defaults_to_100_and_is_capped(size, expected):
    assert positions.page_size(size) == expected


@pytest.mark.parametrize("size", [-1, 1001])
def test_a_page_size_out_of_range_is_refused(size):
    with pytest.raises(InvalidOrder, match="page_size"):
        positions.page_size(size)
