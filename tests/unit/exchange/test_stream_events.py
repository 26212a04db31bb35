"""User-data stream messages to execution reports: the docs' payloads, duplicates, disorder.

The futures message is the ``ORDER_TRADE_UPDATE`` example of Aster's V3 futures docs
("Event: Order Update": order 8886774, client order id ``TEST``), the spot one the
``executionReport`` example of the V3 spot docs ("Payload: Order Update": order 27).
"""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import pytest

from services.domain import LiquiditySide, MarketType, OrderStatus, Side
from services.exchange.aster.transport import AsterTransport
from services.exchange.providers.live import LiveProvider, Tracked
from services.exchange.venue import OrderRef

DOC_FUTURES_EVENT = {
    "e": "ORDER_TRADE_UPDATE", "E": 1568879465651, "T": 1568879465650,
    "o": {"s": "BTCUSDT", "c": "TEST", "S": "SELL", "o": "TRAILING_STOP_MARKET", "f": "GTC", "q": "0.001",
          "p": "0", "ap": "0", "sp": "7103.04", "x": "NEW", "X": "NEW", "i": 8886774, "l": "0", "z": "0",
          "L": "0", "N": "USDT", "n": "0", "T": 1568879465651, "t": 0, "b": "0", "a": "9.91", "m": False,
          "R": False, "wt": "CONTRACT_PRICE", "ot": "TRAILING_STOP_MARKET", "ps": "LONG", "cp": False,
          "AP": "7476.89", "cr": "5.0", "rp": "0"},
}
DOC_SPOT_EVENT = {
    "s": "ADA25SLP25", "c": "Xzh0gnxT41PStbwqOtXnjD", "S": "SELL", "o": "LIMIT", "f": "GTC", "q": "10.001000",
    "p": "19.1000000000", "ap": "19.0999999955550656", "P": "0", "x": "TRADE", "X": "PARTIALLY_FILLED", "i": 27,
    "l": "1", "z": "8.999000", "L": "19.1000000000", "n": "0.00382000", "N": "SLP25", "T": 1649926447190, "t": 18,
    "m": True, "ot": "LIMIT", "O": 0, "Z": "171.88089996", "Y": "19.1000000000000000", "Q": "0",
    "e": "executionReport", "E": 1649926447209,
}


def trade(event, *, trade_id, qty, price="7103.1", cumulative, status, commission="-0.0014", maker=False):
    body = dict(event["o"], x="TRADE", X=status, t=trade_id, l=qty, L=price, z=cumulative, n=commission, m=maker)
    return dict(event, o=body)


@pytest.fixture
def provider():
    live = LiveProvider(AsterTransport(futures_url="http://127.0.0.1:9"), poll_seconds=0, user_stream=False)
    yield live
    asyncio.run(live.transport.close())


def follow(provider, *, client_order_id, venue_order_id, quantity, market=MarketType.FUTURES, symbol="BTCUSDT",
           side=Side.SELL):
    ref = OrderRef("order-1", client_order_id, "acct", "aster", symbol, side, market)
    return provider._track(Tracked(ref, Decimal(quantity), None, provider.session()), venue_order_id)


def feed(provider, event, market=MarketType.FUTURES):
    return provider._on_event(provider.session(), market, event, json.dumps(event))


def test_the_docs_new_order_event_acknowledges_the_order_once(provider):
    follow(provider, client_order_id="TEST", venue_order_id=8886774, quantity="0.001")

    first = feed(provider, DOC_FUTURES_EVENT)
    again = feed(provider, DOC_FUTURES_EVENT)

    assert [r.order_status for r in first] == [OrderStatus.ACCEPTED] and again == []
    assert json.loads(first[0].raw_json)["event"]["o"]["i"] == 8886774


def test_trade_events_become_fills_once_each_with_the_commissions_sign(provider):
    follow(provider, client_order_id="TEST", venue_order_id=8886774, quantity="0.002")
    part = trade(DOC_FUTURES_EVENT, trade_id=101, qty="0.001", cumulative="0.001", status="PARTIALLY_FILLED")
    rest = trade(DOC_FUTURES_EVENT, trade_id=102, qty="0.001", cumulative="0.002", status="FILLED",
                 commission="0.0028", maker=True)

    reports = feed(provider, part) + feed(provider, part) + feed(provider, rest) + feed(provider, rest)

    assert [(r.fill.trade_id, r.order_status) for r in reports] == [
        ("BTCUSDT:101:SELL", OrderStatus.PARTIALLY_FILLED), ("BTCUSDT:102:SELL", OrderStatus.FILLED)]
    assert reports[0].fill.commission == Decimal("-0.0014")  # kept as the venue wrote it
    assert reports[1].fill.liquidity_side is LiquiditySide.MAKER
    assert reports[1].cumulative_quantity == Decimal("0.002")


def test_out_of_order_messages_never_take_an_order_back(provider):
    tracked = follow(provider, client_order_id="TEST", venue_order_id=8886774, quantity="0.001")
    filled = trade(DOC_FUTURES_EVENT, trade_id=7, qty="0.001", cumulative="0.001", status="FILLED")

    reports = feed(provider, filled) + feed(provider, DOC_FUTURES_EVENT)  # the NEW arrives last

    assert [r.order_status for r in reports] == [OrderStatus.FILLED]
    assert tracked.venue_status == "FILLED"


def test_a_cancel_after_a_partial_fill_ends_the_order_with_what_was_filled(provider):
    follow(provider, client_order_id="TEST", venue_order_id=8886774, quantity="0.002")
    part = trade(DOC_FUTURES_EVENT, trade_id=5, qty="0.001", cumulative="0.001", status="PARTIALLY_FILLED")
    cancelled = dict(DOC_FUTURES_EVENT, o=dict(DOC_FUTURES_EVENT["o"], x="CANCELED", X="CANCELED", z="0.001"))

    reports = feed(provider, part) + feed(provider, cancelled) + feed(provider, cancelled)

    assert [r.order_status for r in reports] == [OrderStatus.PARTIALLY_FILLED, OrderStatus.CANCELLED]
    assert reports[-1].cumulative_quantity == Decimal("0.001")


def test_messages_about_orders_placed_elsewhere_are_ignored(provider):
    assert feed(provider, DOC_FUTURES_EVENT) == []
    assert feed(provider, {"e": "ACCOUNT_UPDATE", "E": 1, "T": 1, "a": {"m": "ORDER", "B": [], "P": []}}) == []


def test_the_docs_spot_execution_report_is_a_fill_with_a_spot_trade_id(provider):
    follow(provider, client_order_id="Xzh0gnxT41PStbwqOtXnjD", venue_order_id=27, quantity="10.001",
           market=MarketType.SPOT, symbol="ADA25SLP25")

    (report,) = feed(provider, DOC_SPOT_EVENT, MarketType.SPOT)

    assert report.fill.trade_id == "spot:ADA25SLP25:18:SELL" and report.fill.quantity == Decimal("1")
    assert report.fill.price == Decimal("19.1") and report.fill.commission_asset == "SLP25"
    assert report.order_status is OrderStatus.PARTIALLY_FILLED
