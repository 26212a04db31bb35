"""The Risk replicas running, and the replica count each decides with.

Adds ``risk_replicas``: one row per running Risk process (a random instance id), with
its ordinal, its replica count (``TESSERA_RISK_SHARDS``), its host name, when it started
and when it was last seen. Each replica writes its row at start and every second and
deletes it as it stops; a replica does not decide while another one seen within the
lease runs with another count, since two shard maps at once would give some accounts
two owners (docs/risk-sharding.md). A new table: the previous release ignores it during
a rolling update.

Revision ID: 0011_risk_replicas
Revises: 0010_venue_setting_changes
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from services.store.types import UTCDateTime

revision = "0011_risk_replicas"
down_revision = "0010_venue_setting_changes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "risk_replicas",
        sa.Column("instance", sa.String(36), nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("shards", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(128), nullable=False),
        sa.Column("started_time", UTCDateTime(), nullable=False),
        sa.Column("seen_time", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("instance", name="pk_risk_replicas"),
    )


def downgrade() -> None:
    op.drop_table("risk_replicas")
