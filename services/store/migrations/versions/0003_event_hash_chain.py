"""Tamper evidence: a per-order hash chain over ``order_events_ts``.

Adds ``order_events_ts.prev_hash`` and ``hash`` and ``orders_ts.last_event_hash`` (the
chain's head), all nullable so the previous release keeps writing during a rolling
update (its events stay unchained, and ``tessera verify-store`` says so), then chains
every existing order's events in sequence order (see :mod:`services.store.chain`).

Revision ID: 0003_event_hash_chain
Revises: 0002_positions_ledger
Create Date: 2025-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from services.store.chain import chain_rows
from services.store.types import JSONType, UTCDateTime

revision = "0003_event_hash_chain"
down_revision = "0002_positions_ledger"
branch_labels = None
depends_on = None

HASH = sa.String(64)
_BATCH = 1000


def upgrade() -> None:
    op.add_column("order_events_ts", sa.Column("prev_hash", HASH, nullable=True))
    op.add_column("order_events_ts", sa.Column("hash", HASH, nullable=True))
    op.add_column("orders_ts", sa.Column("last_event_hash", HASH, nullable=True))
    _chain_existing_events()


def _chain_existing_events() -> None:
    connection = op.get_bind()
    events = sa.table(
        "order_events_ts",
        sa.column("id", sa.BigInteger()),
        sa.column("order_id", sa.String()),
        sa.column("sequence", sa.Integer()),
        sa.column("event_time", UTCDateTime()),
        sa.column("from_status", sa.String()),
        sa.column("to_status", sa.String()),
        sa.column("reason", sa.Text()),
        sa.column("payload", JSONType),
        sa.column("prev_hash", HASH),
        sa.column("hash", HASH),
    )
    orders = sa.table("orders_ts", sa.column("order_id", sa.String()), sa.column("last_event_hash", HASH))
    order_ids = connection.execute(sa.select(events.c.order_id).distinct()).scalars().all()
    for start in range(0, len(order_ids), _BATCH):
        chunk = order_ids[start:start + _BATCH]
        rows = connection.execute(
            sa.select(events).where(events.c.order_id.in_(chunk)).order_by(events.c.order_id, events.c.sequence)
        ).mappings().all()
        by_order: dict[str, list[dict]] = {}
        for row in rows:
            by_order.setdefault(row["order_id"], []).append(dict(row))
        for order_id, order_rows in by_order.items():
            chained, head = chain_rows(order_rows, None)
            for row in chained:
                connection.execute(
                    events.update().where(events.c.id == row["id"]).values(prev_hash=row["prev_hash"], hash=row["hash"])
                )
            connection.execute(orders.update().where(orders.c.order_id == order_id).values(last_event_hash=head))


def downgrade() -> None:
    op.drop_column("orders_ts", "last_event_hash")
    op.drop_column("order_events_ts", "hash")
    op.drop_column("order_events_ts", "prev_hash")
