"""The fills a closed order still owes.

Adds ``orders_ts.venue_executed_quantity`` (a decimal, nullable, indexed): set when a
CANCELLED or EXPIRED order's close came with a venue answer saying more was executed
than the order had filled, and cleared once its fills after close make that up. The
OMS's reconciler reads the orders that have one (the index keeps that read small) and
asks the venue for their fills; clients see it on ``Order``.

The orders closed before this migration that still owe fills get theirs from their
close event's payload (``venue_executed_quantity``, written since fills after close
are recorded). Nullable: the previous release keeps writing during a rolling update
(it never sets it).

Revision ID: 0009_fills_owed
Revises: 0008_conditional_orders
Create Date: 2026-12-07
"""

from __future__ import annotations

from decimal import Decimal

import sqlalchemy as sa
from alembic import op

from services.store.types import DecimalString, JSONType

revision = "0009_fills_owed"
down_revision = "0008_conditional_orders"
branch_labels = None
depends_on = None

INDEX = "ix_orders_ts_venue_executed_quantity"
CLOSED = ("CANCELLED", "EXPIRED")


def upgrade() -> None:
    op.add_column("orders_ts", sa.Column("venue_executed_quantity", DecimalString(), nullable=True))
    op.create_index(INDEX, "orders_ts", ["venue_executed_quantity"])
    _backfill(op.get_bind())


def _backfill(bind: sa.engine.Connection) -> None:
    orders = sa.table("orders_ts", sa.column("order_id", sa.String()), sa.column("status", sa.String()),
                      sa.column("filled_quantity", DecimalString()),
                      sa.column("venue_executed_quantity", DecimalString()))
    events = sa.table("order_events_ts", sa.column("order_id", sa.String()), sa.column("from_status", sa.String()),
                      sa.column("to_status", sa.String()), sa.column("payload", JSONType))
    executed = events.c.payload["venue_executed_quantity"].as_string()
    closes = bind.execute(
        sa.select(orders.c.order_id, orders.c.filled_quantity, executed)
        .join(events, events.c.order_id == orders.c.order_id)
        .where(orders.c.status.in_(CLOSED), events.c.to_status == orders.c.status,
               events.c.from_status != events.c.to_status, executed.is_not(None))
    ).all()
    for order_id, filled, text in closes:
        if Decimal(text) > filled:
            bind.execute(orders.update().where(orders.c.order_id == order_id)
                         .values(venue_executed_quantity=Decimal(text)))


def downgrade() -> None:
    op.drop_index(INDEX, table_name="orders_ts")
    if op.get_bind().dialect.name == "sqlite":
        # SQLite's own DROP COLUMN (3.35+), not batch mode's copy of the table, which cannot
        # drop orders_ts while order events and trades reference it (as in 0008).
        op.get_bind().exec_driver_sql("ALTER TABLE orders_ts DROP COLUMN venue_executed_quantity")
    else:
        op.drop_column("orders_ts", "venue_executed_quantity")
