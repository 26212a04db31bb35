"""Migration 0004 builds the ledger from the trades an existing database already holds:
positions by market type (spot and futures apart), one ledger entry per trade with what
it realised, fees by asset; the netted rows of the previous schema are replaced."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from store_rows import new_order, new_trade
from sqlalchemy import MetaData, Table, text

from services.domain import MarketType, OrderStatus, Side
from services.domain.ledger import Position, apply_fill
from services.reliability.invariants import check_store
from services.store import Store, upgrade
from services.store.mapping import order_to_row, trade_to_row
from services.store.models import orders_table, trades_table

D = Decimal
BEFORE = "0003_event_hash_chain"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def old_database(request, tmp_path):
    """A database at the revision before the ledger by market type."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/old.db"
    else:
        url = request.getfixturevalue("create_postgres_database")()
    upgrade(url, revision=BEFORE)
    store = Store.from_url(url, migrate=False)
    yield store
    store.dispose()


def add_orders_at_that_revision(store: Store, *orders: Any) -> None:
    """The orders as the schema of that revision holds them (later revisions add columns
    to orders_ts), written with the column types the store uses."""
    present = set(Table("orders_ts", MetaData(), autoload_with=store.engine).c.keys())
    table = Table("orders_ts", MetaData(), *(c._copy() for c in orders_table.columns if c.name in present))
    with store.engine.begin() as connection:
        for order in orders:
            row = order_to_row(order)
            connection.execute(table.insert().values({name: row[name] for name in present}))


def add_trades_at_that_revision(store: Store, *trades: Any) -> None:
    """The trades as the schema of that revision holds them (a later revision adds
    trades_ts.raw_venue_json)."""
    present = set(Table("trades_ts", MetaData(), autoload_with=store.engine).c.keys())
    table = Table("trades_ts", MetaData(), *(c._copy() for c in trades_table.columns if c.name in present))
    with store.engine.begin() as connection:
        for trade in trades:
            row = trade_to_row(trade)
            connection.execute(table.insert().values({name: row[name] for name in present if name in row}))


def stored_fills(store: Store) -> list:
    """Futures and spot orders in BTCUSDT, filled in several trades, as the OMS stored them."""
    futures = new_order(market_type=MarketType.FUTURES, quantity=D("3"))
    spot = new_order(market_type=MarketType.SPOT, side=Side.SELL, quantity=D("0.5"))
    trades = [
        new_trade(futures, side=Side.BUY, quantity=D("1"), price=D("100"), commission=D("0.04"), trade_id="f-1"),
        new_trade(futures, side=Side.BUY, quantity=D("2"), price=D("103"), commission=D("0.08"), trade_id="f-2"),
        new_trade(spot, side=Side.SELL, quantity=D("0.5"), price=D("110"), commission=D("0.0005"),
                  commission_asset="BTC", trade_id="s-1"),
    ]
    for order in (futures, spot):
        order.transition(OrderStatus.APPROVED)
    add_orders_at_that_revision(store, futures, spot)
    add_trades_at_that_revision(store, *trades)
    # What the previous schema held: one netted row for the symbol.
    with store.engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO positions (account, symbol, quantity, cost_basis, average_entry_price, realised_pnl, "
            "commission, updated_time, version) VALUES ('acct-1', 'BTCUSDT', '2.5', '251', '100.4', '0', '0.1205', "
            "'2025-01-02 03:04:05', 3)"))
    return trades


def test_the_upgrade_replays_every_trade_into_positions_by_market_type(old_database):
    trades = stored_fills(old_database)

    upgrade(old_database.engine)

    with old_database.uow(read_only=True) as uow:
        futures = uow.positions.get("acct-1", "BTCUSDT", MarketType.FUTURES)
        spot = uow.positions.get("acct-1", "BTCUSDT", MarketType.SPOT)
        listed = uow.positions.for_account("acct-1")
        entries = uow.positions.entries("acct-1")
    expected = Position("acct-1", "BTCUSDT")
    for trade in trades[:2]:
        expected = apply_fill(expected, trade.side, trade.quantity, trade.price, trade.commission,
                              trade.trade_time, trade.commission_asset).position
    assert (futures.quantity, futures.cost_basis, futures.average_entry_price) == (D("3"), D("306"), D("102"))
    assert (futures.commission, futures.fees) == (expected.commission, (("USDT", D("0.12")),))
    assert (spot.quantity, spot.cost_basis, spot.fees) == (D("-0.5"), D("55"), (("BTC", D("0.0005")),))
    assert len(listed) == 2  # the netted row is gone
    assert [(e.trade_id, e.market_type, e.commission_asset, e.position_quantity) for e in entries] == [
        ("f-1", MarketType.FUTURES, "USDT", D("1")),
        ("f-2", MarketType.FUTURES, "USDT", D("3")),
        ("s-1", MarketType.SPOT, "BTC", D("-0.5")),
    ]
    report = check_store(old_database.engine, require_ledger=True)
    assert [v for v in report.violations if v.kind.startswith(("LEDGER", "POSITION"))] == []
    assert report.ledger_pending == 0


def test_a_closed_round_trip_realises_exactly_through_the_migration(old_database):
    order = new_order(market_type=MarketType.FUTURES, quantity=D("2"))
    order.transition(OrderStatus.APPROVED)
    add_orders_at_that_revision(old_database, order)
    add_trades_at_that_revision(old_database, *(
        new_trade(order, side=side, quantity=D("1"), price=D(price), commission=D("0"), trade_id=trade_id)
        for trade_id, side, price in (("r-1", Side.BUY, "100"), ("r-2", Side.SELL, "130"))))

    upgrade(old_database.engine)

    with old_database.uow(read_only=True) as uow:
        held = uow.positions.get("acct-1", "BTCUSDT", MarketType.FUTURES)
    assert (held.quantity, held.realised_pnl, held.average_entry_price) == (D("0"), D("30"), None)
