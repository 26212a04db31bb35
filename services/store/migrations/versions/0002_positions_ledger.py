"""The position ledger (positions, ledger entries) and the indexes pre-trade risk reads by.

Hand-written; names follow ``models.NAMING_CONVENTION``. Existing databases get empty
ledger tables: positions build up from the fills applied after the upgrade (replaying
``trades_ts`` into them is a one-off operator step, not done here).

Revision ID: 0002_positions_ledger
Revises: 0001_initial
Create Date: 2025-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from services.store.types import DecimalString, UTCDateTime

revision = "0002_positions_ledger"
down_revision = "0001_initial"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
NAME = sa.String(128)
CODE = sa.String(32)


def upgrade() -> None:
    op.create_table(
        "positions",
        sa.Column("account", NAME, nullable=False),
        sa.Column("symbol", NAME, nullable=False),
        sa.Column("quantity", DecimalString(), nullable=False),
        sa.Column("cost_basis", DecimalString(), nullable=False),
        sa.Column("average_entry_price", DecimalString(), nullable=True),
        sa.Column("realised_pnl", DecimalString(), nullable=False),
        sa.Column("commission", DecimalString(), nullable=False),
        sa.Column("updated_time", UTCDateTime(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("account", "symbol", name="pk_positions"),
    )

    op.create_table(
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
        sa.PrimaryKeyConstraint("id", name="pk_ledger_entries"),
        sa.UniqueConstraint("venue", "trade_id", name="uq_ledger_entries_venue_trade_id"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_ledger_entries_account_trade_time", "ledger_entries", ["account", "trade_time"])

    op.create_index("ix_orders_ts_account_order_time", "orders_ts", ["account", "order_time"])
    op.create_index("ix_orders_ts_account_status", "orders_ts", ["account", "status"])


def downgrade() -> None:
    op.drop_index("ix_orders_ts_account_status", table_name="orders_ts")
    op.drop_index("ix_orders_ts_account_order_time", table_name="orders_ts")
    op.drop_table("ledger_entries")
    op.drop_table("positions")
