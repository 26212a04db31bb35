"""The Exchange service's record of the orders it executed.

Adds ``exchange_executions``: one row per order id the Exchange sent to its provider,
written before the provider is called, so an order is never executed twice, whatever
the Exchange forgot (a restart). A new table: the previous release does not use it.

Revision ID: 0006_exchange_executions
Revises: 0005_order_replacements
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from services.store.types import UTCDateTime

revision = "0006_exchange_executions"
down_revision = "0005_order_replacements"
branch_labels = None
depends_on = None

ID = sa.String(36)
NAME = sa.String(128)
CODE = sa.String(32)


def upgrade() -> None:
    op.create_table(
        "exchange_executions",
        sa.Column("order_id", ID, nullable=False),
        sa.Column("client_order_id", NAME, nullable=False),
        sa.Column("account", NAME, nullable=False),
        sa.Column("venue", NAME, nullable=False),
        sa.Column("symbol", NAME, nullable=False),
        sa.Column("mode", CODE, nullable=False),
        sa.Column("executed_time", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("order_id", name=op.f("pk_exchange_executions")),
    )


def downgrade() -> None:
    op.drop_table("exchange_executions")
