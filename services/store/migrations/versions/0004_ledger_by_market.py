"""The ledger by market type, rebuilt from the trades.

A spot holding and a futures position in the same symbol are different instruments;
until now the ledger netted them into one row per (account, symbol), and an existing
database got an empty ledger when 0002 created it (positions built up only from the
fills applied after the upgrade). This revision:

* recreates ``positions`` keyed by (account, market_type, symbol), with ``fees`` (the
  commissions by the asset they were charged in), and ``ledger_entries`` with
  ``market_type`` and ``commission_asset``;
* replays every stored trade into them, in the order the trades were stored, with the
  one accounting Risk uses (:func:`services.domain.ledger.apply_fill`), each trade's
  market type being its order's. Afterwards the ledger holds an entry per trade and the
  positions they add up to, exactly what Risk would have written had it applied them.

Rolling update: a Risk pod of the previous release writes positions by (account,
symbol), which the new key refuses; its ledger writes fail and stay in its memory until
the pod is replaced, and the new pod of the same ordinal applies at start every trade
the ledger does not hold (as after any stop). Its decisions are made from memory and
are unaffected. Downgrade recreates the previous, empty tables (the previous release's
Risk fills them from the trades at start the same way).

Revision ID: 0004_ledger_by_market
Revises: 0003_event_hash_chain
Create Date: 2026-12-06
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from alembic import op

from services.domain import MarketType, Side, utcnow
from services.domain.ledger import Position, apply_fill
from services.store.types import DecimalString, JSONType, UTCDateTime

revision = "0004_ledger_by_market"
down_revision = "0003_event_hash_chain"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
NAME = sa.String(128)
CODE = sa.String(32)
#: Trades read (and ledger entries written) per round trip.
BATCH = 5000


def _positions(*, by_market: bool) -> sa.Table:
    keys = [sa.Column("account", NAME, nullable=False)]
    if by_market:
        keys.append(sa.Column("market_type", CODE, nullable=False))
    keys.append(sa.Column("symbol", NAME, nullable=False))
    extra = [sa.Column("fees", JSONType, nullable=False)] if by_market else []
    return op.create_table(
        "positions",
        *keys,
        sa.Column("quantity", DecimalString(), nullable=False),
        sa.Column("cost_basis", DecimalString(), nullable=False),
        sa.Column("average_entry_price", DecimalString(), nullable=True),
        sa.Column("realised_pnl", DecimalString(), nullable=False),
        sa.Column("commission", DecimalString(), nullable=False),
        *extra,
        sa.Column("updated_time", UTCDateTime(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(*[c.name for c in keys], name="pk_positions"),
    )


def _ledger_entries(*, by_market: bool) -> sa.Table:
    extra = ([sa.Column("market_type", CODE, nullable=False), sa.Column("commission_asset", NAME, nullable=True)]
             if by_market else [])
    table = op.create_table(
        "ledger_entries",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("account", NAME, nullable=False),
        sa.Column("symbol", NAME, nullable=False),
        sa.Column("venue", NAME, nullable=False),
        sa.Column("trade_id", NAME, nullable=False),
        sa.Column("side", CODE, nullable=False),
        sa.Column("quantity", DecimalString(), nullable=False),
        sa.Column("price", DecimalString(), nullable=False),
        sa.Column("realised_pnl", DecimalString(), nullable=False),
        sa.Column("commission", DecimalString(), nullable=False),
        sa.Column("position_quantity", DecimalString(), nullable=False),
        sa.Column("trade_time", UTCDateTime(), nullable=False),
        sa.Column("applied_time", UTCDateTime(), nullable=False),
        *extra,
        sa.PrimaryKeyConstraint("id", name="pk_ledger_entries"),
        sa.UniqueConstraint("venue", "trade_id", name="uq_ledger_entries_venue_trade_id"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_ledger_entries_account_trade_time", "ledger_entries", ["account", "trade_time"])
    return table


def upgrade() -> None:
    op.drop_index("ix_ledger_entries_account_trade_time", table_name="ledger_entries")
    op.drop_table("ledger_entries")
    op.drop_table("positions")
    positions = _positions(by_market=True)
    entries = _ledger_entries(by_market=True)
    replay_trades(op.get_bind(), positions, entries)


def replay_trades(connection: sa.Connection, positions: sa.Table, entries: sa.Table) -> int:
    """Apply every stored trade to the (empty) ledger; returns how many."""
    trades = sa.table(
        "trades_ts", sa.column("id", sa.BigInteger()), sa.column("trade_id", sa.String()),
        sa.column("venue", sa.String()), sa.column("order_id", sa.String()), sa.column("account", sa.String()),
        sa.column("symbol", sa.String()), sa.column("side", sa.String()), sa.column("quantity", DecimalString()),
        sa.column("price", DecimalString()), sa.column("commission", DecimalString()),
        sa.column("commission_asset", sa.String()), sa.column("trade_time", UTCDateTime()),
    )
    orders = sa.table("orders_ts", sa.column("order_id", sa.String()), sa.column("market_type", sa.String()))
    held: dict[tuple[str, MarketType, str], Position] = {}
    applied_time = utcnow()
    after, count = 0, 0
    while True:
        rows = connection.execute(
            sa.select(trades, orders.c.market_type)
            .join(orders, orders.c.order_id == trades.c.order_id)
            .where(trades.c.id > after).order_by(trades.c.id).limit(BATCH)
        ).mappings().all()
        if not rows:
            break
        batch: list[dict[str, Any]] = []
        for row in rows:
            market = MarketType(row["market_type"])
            key = (row["account"], market, row["symbol"])
            current = held.get(key) or Position(row["account"], row["symbol"], market_type=market)
            commission = row["commission"] or Decimal(0)
            update = apply_fill(current, Side(row["side"]), row["quantity"], row["price"], commission,
                                row["trade_time"], row["commission_asset"])
            held[key] = update.position
            batch.append({
                "account": row["account"], "market_type": market.value, "symbol": row["symbol"],
                "venue": row["venue"], "trade_id": row["trade_id"], "side": row["side"],
                "quantity": row["quantity"], "price": row["price"], "realised_pnl": update.realised_pnl,
                "commission": commission, "commission_asset": row["commission_asset"],
                "position_quantity": update.position.quantity, "trade_time": row["trade_time"],
                "applied_time": applied_time,
            })
        connection.execute(entries.insert(), batch)
        after, count = rows[-1]["id"], count + len(rows)
    values = [{
        "account": p.account, "market_type": p.market_type.value, "symbol": p.symbol, "quantity": p.quantity,
        "cost_basis": p.cost_basis, "average_entry_price": p.average_entry_price, "realised_pnl": p.realised_pnl,
        "commission": p.commission, "fees": {asset: str(amount) for asset, amount in p.fees},
        "updated_time": p.updated_time or applied_time, "version": 1,
    } for p in held.values()]
    for start in range(0, len(values), BATCH):
        connection.execute(positions.insert(), values[start:start + BATCH])
    return count


def downgrade() -> None:
    op.drop_index("ix_ledger_entries_account_trade_time", table_name="ledger_entries")
    op.drop_table("ledger_entries")
    op.drop_table("positions")
    _positions(by_market=False)
    _ledger_entries(by_market=False)
