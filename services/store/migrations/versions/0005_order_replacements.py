"""ReplaceOrder's links between an order and its replacement.

Adds ``orders_ts.replaces_order_id`` (set by Risk on a replacement it approves) and
``orders_ts.replaced_by_order_id`` (set by the OMS when the replace of an order starts),
both nullable, so the previous release keeps writing during a rolling update (its
orders have no replacement).

Revision ID: 0005_order_replacements
Revises: 0004_ledger_by_market
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_order_replacements"
down_revision = "0004_ledger_by_market"
branch_labels = None
depends_on = None

ID = sa.String(36)


def upgrade() -> None:
    op.add_column("orders_ts", sa.Column("replaces_order_id", ID, nullable=True))
    op.add_column("orders_ts", sa.Column("replaced_by_order_id", ID, nullable=True))


def downgrade() -> None:
    op.drop_column("orders_ts", "replaced_by_order_id")
    op.drop_column("orders_ts", "replaces_order_id")
