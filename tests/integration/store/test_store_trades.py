"""The trade repository: de-duplication by venue trade id, lookups and pages."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from services.domain import LiquiditySide
from services.store import InvalidPage
from services.store.models import trades_table

T1 = dt.datetime(2025, 1, 2, 4, 0, tzinfo=dt.timezone.utc)


def test_second_add_of_the_same_venue_trade_id_returns_false_and_stores_one_row(
    store, make_order, make_trade, add_orders
):
    order = make_order()
    add_orders(store, order)
    trade = make_trade(order, trade_id="T-1", liquidity_side=LiquiditySide.MAKER, raw_payload={"q": "0.5"})
    with store.uow() as uow:
        assert uow.trades.add_if_absent(trade) is True
        uow.commit()
    with store.uow() as uow:
        assert uow.trades.add_if_absent(trade) is False
        # Same trade id on another venue is another trade.
        assert uow.trades.add_if_absent(make_trade(order, trade_id="T-1", venue="other")) is True
        uow.commit()
    with store.uow() as uow:
        assert uow.session.execute(select(func.count()).select_from(trades_table)).scalar_one() == 2
        assert uow.trades.get(order.venue, "T-1") == trade
        assert uow.trades.get(order.venue, "T-unknown") is None


def test_trade_decimals_round_trip_exactly(store, make_order, make_trade, add_orders):
    order = make_order()
    add_orders(store, order)
    trade = make_trade(order, quantity=Decimal("0.000000012345678901"), commission=Decimal("0"))
    with store.uow() as uow:
        uow.trades.add_if_absent(trade)
        uow.commit()
    with store.uow() as uow:
        loaded = uow.trades.get(trade.venue, trade.trade_id)
    assert loaded.quantity == trade.quantity and loaded.commission == Decimal(0)
    assert loaded.liquidity_side is None and loaded.raw_payload is None


def test_trades_for_an_order_come_back_oldest_first(store, make_order, make_trade, add_orders):
    order, other = make_order(), make_order()
    add_orders(store, order, other)
    late = make_trade(order, trade_time=T1 + dt.timedelta(seconds=5))
    early = make_trade(order, trade_time=T1)
    with store.uow() as uow:
        for trade in (late, early, make_trade(other)):
            uow.trades.add_if_absent(trade)
        uow.commit()
    with store.uow() as uow:
        assert [t.trade_id for t in uow.trades.for_order(order.order_id)] == [early.trade_id, late.trade_id]


def test_trade_list_pages_and_filters(store, make_order, make_trade, add_orders):
    btc, eth = make_order(), make_order(account="acct-2", symbol="ETHUSDT")
    add_orders(store, btc, eth)
    trades = [make_trade(btc, trade_time=T1 + dt.timedelta(seconds=i % 3)) for i in range(5)]
    trades.append(make_trade(eth))
    with store.uow() as uow:
        for trade in trades:
            uow.trades.add_if_absent(trade)
        uow.commit()

    with store.uow(read_only=True) as uow:
        seen, cursor = [], None
        while True:
            page, cursor = uow.trades.list(order_id=btc.order_id, limit=2, cursor=cursor)
            seen += page
            if cursor is None:
                break
        assert sorted(t.trade_id for t in seen) == sorted(t.trade_id for t in trades[:5])
        assert [t.trade_time for t in seen] == sorted(t.trade_time for t in seen)
        assert [t.trade_id for t in uow.trades.list(account="acct-2")[0]] == [trades[5].trade_id]
        assert [t.trade_id for t in uow.trades.list(symbol="ETHUSDT")[0]] == [trades[5].trade_id]


def test_malformed_or_foreign_cursor_is_an_invalid_page(store, make_order, add_orders):
    add_orders(store, make_order(), make_order())
    with store.uow(read_only=True) as uow:
        _, order_cursor = uow.orders.list(limit=1)
        assert order_cursor is not None
        with pytest.raises(InvalidPage):
            uow.trades.list(cursor=order_cursor)
        with pytest.raises(InvalidPage):
            uow.orders.list(cursor="not-a-cursor!")
        with pytest.raises(InvalidPage):
            uow.orders.list(limit=0)


def test_a_cursor_with_a_key_of_the_wrong_type_is_an_invalid_page(store, make_order, add_orders):
    import base64
    import json

    def forged(kind, key):
        raw = json.dumps([kind, "2025-01-01T00:00:00+00:00", key]).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    add_orders(store, make_order(), make_order())
    for kind, key in (("orders", 5), ("orders", ["x"]), ("orders", None), ("trades", "abc"), ("trades", 1.5),
                      ("trades", True), ("trades", {"id": 1})):
        with store.uow(read_only=True) as uow:
            listing = uow.orders.list if kind == "orders" else uow.trades.list
            with pytest.raises(InvalidPage):
                listing(cursor=forged(kind, key))
