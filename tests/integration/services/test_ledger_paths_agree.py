"""The ledger has one accounting (services.domain.ledger.apply_fill) and four ways to it:
Risk's book following the fill events, the ledger Risk writes from it, a replica that
starts from the store, and migration 0004's replay of the stored trades (and
PositionRepository.apply_trade, the same one trade at a time). Over random sequences of
fills (Decimal quantities and prices, spot and futures in one symbol, fees in the quote,
in a fee token or unnamed, trade times either side of the daily reset and out of order)
they all hold the same positions and today's realised PnL.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from decimal import Decimal

import pytest
from sqlalchemy import delete

from services.domain import LiquiditySide, MarketType, OrderStatus, Side
from services.domain.execution import ExecutionReport, Fill
from services.domain.ledger import Position
from services.oms.fill_tracker import apply_report
from services.risk.context import last_reset
from services.risk.engine import RiskEngine
from services.store.models import ledger_entries_table, positions_table
from svc_harness import LIMITS

S = OrderStatus
D = Decimal
NOW = dt.datetime(2030, 1, 8, 12, 0, tzinfo=dt.timezone.utc)
RESET = last_reset(NOW, LIMITS.daily_reset_utc)
FEES = ("USDT", "BNB", None, "BTC")


def random_fills(seed: int, count: int) -> list[tuple[MarketType, Side, Decimal, Decimal, Decimal, str | None,
                                                      dt.datetime]]:
    rng = random.Random(seed)
    fills = []
    for index in range(count):
        quantity = D(rng.randint(1, 300_000_000)).scaleb(-8)  # up to 3, 8 decimals
        price = D(rng.randint(900_000, 1_100_000)).scaleb(-4)  # 90 to 110, 4 decimals
        commission = D(rng.randint(0, 5_000)).scaleb(-6)
        # Trade times from yesterday morning to now, some exactly at the reset or just before it.
        at = rng.choice([RESET, RESET - dt.timedelta(microseconds=1),
                         NOW - dt.timedelta(seconds=rng.randint(0, 30 * 3600))])
        fills.append((rng.choice([MarketType.FUTURES, MarketType.SPOT]), rng.choice([Side.BUY, Side.SELL]),
                      quantity, price, commission, rng.choice(FEES), at))
    return fills


def same(position: Position) -> tuple:
    """What the paths must agree on (not the version, nor the decimals' exponents)."""
    return (position.account, position.market_type, position.symbol, position.quantity, position.cost_basis,
            position.average_entry_price, position.realised_pnl, position.commission, position.fees,
            position.updated_time)


def positions_of(store) -> dict:
    with store.uow(read_only=True) as uow:
        return {p.key: same(p) for p in uow.positions.for_account("acct-1")}


def rebuilt_by_the_migration(store) -> tuple[dict, Decimal]:
    """The ledger migration 0004 builds from the stored trades, read in the transaction
    that built it (rolled back: the store keeps the ledger Risk wrote)."""
    from importlib import import_module

    migration = import_module("services.store.migrations.versions.0004_ledger_by_market")
    with store.uow() as uow:
        connection = uow.session.connection()
        connection.execute(delete(ledger_entries_table))
        connection.execute(delete(positions_table))
        migration.replay_trades(connection, positions_table, ledger_entries_table)
        rebuilt = {p.key: same(p) for p in uow.positions.for_account("acct-1")}
        realised = uow.positions.realised_since("acct-1", RESET)
        uow.rollback()
    return rebuilt, realised


def rebuilt_one_trade_at_a_time(store) -> dict:
    """PositionRepository.apply_trade over the stored trades, in the order they were
    stored, each in its order's market (rolled back as above)."""
    with store.uow() as uow:
        connection = uow.session.connection()
        connection.execute(delete(ledger_entries_table))
        connection.execute(delete(positions_table))
        stored = connection.exec_driver_sql(
            "SELECT t.venue, t.trade_id, o.market_type FROM trades_ts AS t "
            "JOIN orders_ts AS o ON o.order_id = t.order_id ORDER BY t.id").all()
        for venue, trade_id, market in stored:
            uow.positions.apply_trade(uow.trades.get(venue, trade_id), MarketType(market))
        rebuilt = {p.key: same(p) for p in uow.positions.for_account("acct-1")}
        uow.rollback()
    return rebuilt


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_book_the_ledger_a_restart_and_the_migration_agree_over_random_fills(db, store, keyring, stored_order,
                                                                                 seed):
    orders = {(market, side): stored_order(S.ACCEPTED, market_type=market, side=side, quantity=D("1000000"))
              for market in (MarketType.FUTURES, MarketType.SPOT) for side in (Side.BUY, Side.SELL)}
    risk = RiskEngine(db, keyring, LIMITS, clock=lambda: NOW, flush_seconds=0)
    asyncio.run(risk.sync())
    rng = random.Random(seed)

    for index, (market, side, quantity, price, commission, asset, at) in enumerate(random_fills(seed, 40)):
        order = orders[market, side]
        with store.uow() as uow:
            apply_report(uow, ExecutionReport(
                order_id=order.order_id, client_order_id=order.client_order_id, venue=order.venue,
                account=order.account, symbol=order.symbol, side=side, order_status=S.PARTIALLY_FILLED,
                transact_time=at, fill=Fill(f"t-{seed}-{index}", quantity, price, commission, asset,
                                            LiquiditySide.TAKER)))
            uow.commit()
        if rng.random() < 0.3:
            asyncio.run(risk.sync())  # the book follows now and then, as the service does
    asyncio.run(risk.sync())
    asyncio.run(risk.flush())

    account = risk.book.accounts["acct-1"]
    in_book = {key: same(p) for key, p in account.positions.items()}
    written = positions_of(store)
    restarted = RiskEngine(db, keyring, LIMITS, clock=lambda: NOW, flush_seconds=0)
    asyncio.run(restarted.start())
    migrated, migrated_today = rebuilt_by_the_migration(store)
    with store.uow(read_only=True) as uow:
        stored_today = uow.positions.realised_since("acct-1", RESET)

    assert set(in_book) == {(MarketType.FUTURES, "BTCUSDT"), (MarketType.SPOT, "BTCUSDT")}
    assert written == in_book
    assert {key: same(p) for key, p in restarted.book.accounts["acct-1"].positions.items()} == in_book
    assert migrated == in_book
    assert rebuilt_one_trade_at_a_time(store) == in_book
    today = account.realised_since(RESET)
    assert today == stored_today == migrated_today == restarted.book.accounts["acct-1"].realised_since(RESET)
