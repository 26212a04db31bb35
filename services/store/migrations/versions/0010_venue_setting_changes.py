"""The history of venue-setting changes.

Adds ``venue_setting_changes``: one row per change of a venue setting (an account's
position mode, a futures symbol's leverage or margin mode), written in the same
transaction as the ``venue_settings`` row it changes: what it set, who (the operator's
authenticated principal, or ``venue`` when the Exchange read it from the venue), the
operator's comment, and when. ``venue_settings`` keeps only the latest value. A new
table: the previous release keeps writing ``venue_settings`` during a rolling update.

Revision ID: 0010_venue_setting_changes
Revises: 0009_fills_owed
Create Date: 2027-01-12
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from services.store.types import UTCDateTime

revision = "0010_venue_setting_changes"
down_revision = "0009_fills_owed"
branch_labels = None
depends_on = None

NAME = sa.String(128)
CODE = sa.String(32)


def upgrade() -> None:
    op.create_table(
        "venue_setting_changes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("account", NAME, nullable=False),
        sa.Column("symbol", NAME, nullable=False),
        sa.Column("leverage", sa.Integer(), nullable=True),
        sa.Column("margin_mode", CODE, nullable=True),
        sa.Column("position_mode", CODE, nullable=True),
        sa.Column("principal", NAME, nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("changed_time", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_venue_setting_changes"),
    )
    op.create_index("ix_venue_setting_changes_account_id", "venue_setting_changes", ["account", "id"])


def downgrade() -> None:
    op.drop_index("ix_venue_setting_changes_account_id", table_name="venue_setting_changes")
    op.drop_table("venue_setting_changes")
