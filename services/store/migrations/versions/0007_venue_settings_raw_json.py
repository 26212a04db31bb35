"""Venue settings that survive restarts, and the venue's payloads as exact JSON text.

Adds the ``venue_settings`` table (per account: the position mode on the row with symbol
``""``, and each futures symbol's leverage and margin mode; where it came from and when),
and a nullable ``raw_venue_json`` text column to ``orders_ts``, ``order_events_ts`` and
``trades_ts``: the venue's request and answer (or stream message) as the exact text the
venue sent, which a JSON column would not keep (PostgreSQL's JSONB reorders keys, and
integers read back through other layers as floats). All nullable: the previous release
keeps writing during a rolling update.

Revision ID: 0007_venue_settings_raw_json
Revises: 0006_exchange_executions
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from services.store.types import UTCDateTime

revision = "0007_venue_settings_raw_json"
down_revision = "0006_exchange_executions"
branch_labels = None
depends_on = None

NAME = sa.String(128)
CODE = sa.String(32)
TABLES = ("orders_ts", "order_events_ts", "trades_ts")


def upgrade() -> None:
    op.create_table(
        "venue_settings",
        sa.Column("account", NAME, nullable=False),
        sa.Column("symbol", NAME, nullable=False),
        sa.Column("leverage", sa.Integer(), nullable=True),
        sa.Column("margin_mode", CODE, nullable=True),
        sa.Column("position_mode", CODE, nullable=True),
        sa.Column("source", NAME, nullable=False),
        sa.Column("updated_time", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("account", "symbol", name="pk_venue_settings"),
    )
    for table in TABLES:
        op.add_column(table, sa.Column("raw_venue_json", sa.Text(), nullable=True))


def downgrade() -> None:
    """Drops ``venue_settings`` (the previous release reads the settings from the venue
    at start) and the venue's raw JSON of every order, event and trade (the previous
    release has no column for it): both are lost."""
    bind = op.get_bind()
    for table in reversed(TABLES):
        if bind.dialect.name == "sqlite":
            # SQLite's own DROP COLUMN (3.35+), not batch mode's copy of the table: the copy
            # drops orders_ts, which fails once order events and trades refer to its rows
            # (foreign keys cannot be turned off inside the migration's transaction).
            bind.exec_driver_sql(f"ALTER TABLE {table} DROP COLUMN raw_venue_json")
        else:
            op.drop_column(table, "raw_venue_json")
    op.drop_table("venue_settings")
