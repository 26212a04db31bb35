"""Initial schema: order managers, orders, order events, trades, trading state, anomalies.

Hand-written; constraint and index names follow ``models.NAMING_CONVENTION`` so later
revisions can address them on every backend.

Revision ID: 0001_initial
Revises:
Create Date: 2025-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from services.store.types import DecimalString, JSONType, UTCDateTime

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
ID = sa.String(36)
NAME = sa.String(128)
CODE = sa.String(32)


def _index(table: str, *columns: str) -> None:
    op.create_index(f"ix_{table}_{'_'.join(columns)}", table, list(columns))


def upgrade() -> None:
    op.create_table(
        "order_managers",
        sa.Column("id", ID, nullable=False),
        sa.Column("unique_identifier", sa.String(255), nullable=False),
        sa.Column("target_account_uid", NAME, nullable=False),
        sa.Column("target_time", UTCDateTime(), nullable=False),
        sa.Column("order_received_time", UTCDateTime(), nullable=True),
        sa.Column("execution_end", UTCDateTime(), nullable=True),
        sa.Column("status", CODE, nullable=False),
        sa.Column("metadata", JSONType, nullable=False),
        sa.Column("created_time", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_order_managers"),
        sa.UniqueConstraint("unique_identifier", name="uq_order_managers_unique_identifier"),
    )

    op.create_table(
        "orders_ts",
        sa.Column("order_id", ID, nullable=False),
        sa.Column("client_order_id", NAME, nullable=False),
        sa.Column("account", NAME, nullable=False),
        sa.Column("venue", NAME, nullable=False),
        sa.Column("market_type", CODE, nullable=False),
        sa.Column("symbol", NAME, nullable=False),
        sa.Column("side", CODE, nullable=False),
        sa.Column("order_type", CODE, nullable=False),
        sa.Column("quantity", DecimalString(), nullable=False),
        sa.Column("price", DecimalString(), nullable=True),
        sa.Column("stop_price", DecimalString(), nullable=True),
        sa.Column("time_in_force", CODE, nullable=False),
        sa.Column("reduce_only", sa.Boolean(), nullable=False),
        sa.Column("post_only", sa.Boolean(), nullable=False),
        sa.Column("leverage", DecimalString(), nullable=True),
        sa.Column("order_manager_id", sa.String(255), nullable=True),
        sa.Column("expire_time", UTCDateTime(), nullable=True),
        sa.Column("status", CODE, nullable=False),
        sa.Column("previous_status", CODE, nullable=True),
        sa.Column("filled_quantity", DecimalString(), nullable=False),
        sa.Column("average_fill_price", DecimalString(), nullable=True),
        sa.Column("remote_order_id", NAME, nullable=True),
        sa.Column("order_time", UTCDateTime(), nullable=False),
        sa.Column("updated_time", UTCDateTime(), nullable=False),
        sa.Column("reject_reasons", JSONType, nullable=False),
        sa.Column("token_nonce", NAME, nullable=True),
        sa.Column("raw_venue_payload", JSONType, nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("last_sequence", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("order_id", name="pk_orders_ts"),
        sa.UniqueConstraint(
            "account", "client_order_id", name="uq_orders_ts_account_client_order_id"
        ),
        sa.ForeignKeyConstraint(
            ["order_manager_id"],
            ["order_managers.unique_identifier"],
            name="fk_orders_ts_order_manager_id_order_managers",
        ),
    )
    _index("orders_ts", "status")
    _index("orders_ts", "symbol", "status")
    _index("orders_ts", "order_time")
    _index("orders_ts", "order_manager_id")
    _index("orders_ts", "remote_order_id")

    op.create_table(
        "order_events_ts",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("order_id", ID, nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("event_time", UTCDateTime(), nullable=False),
        sa.Column("from_status", CODE, nullable=True),
        sa.Column("to_status", CODE, nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("payload", JSONType, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_order_events_ts"),
        sa.UniqueConstraint("order_id", "sequence", name="uq_order_events_ts_order_id_sequence"),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders_ts.order_id"], name="fk_order_events_ts_order_id_orders_ts"
        ),
        sqlite_autoincrement=True,
    )
    _index("order_events_ts", "event_time")

    op.create_table(
        "trades_ts",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("trade_id", NAME, nullable=False),
        sa.Column("venue", NAME, nullable=False),
        sa.Column("order_id", ID, nullable=False),
        sa.Column("client_order_id", NAME, nullable=True),
        sa.Column("account", NAME, nullable=False),
        sa.Column("symbol", NAME, nullable=False),
        sa.Column("side", CODE, nullable=False),
        sa.Column("quantity", DecimalString(), nullable=False),
        sa.Column("price", DecimalString(), nullable=False),
        sa.Column("commission", DecimalString(), nullable=False),
        sa.Column("commission_asset", NAME, nullable=True),
        sa.Column("liquidity_side", CODE, nullable=True),
        sa.Column("trade_time", UTCDateTime(), nullable=False),
        sa.Column("raw_payload", JSONType, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_trades_ts"),
        sa.UniqueConstraint("venue", "trade_id", name="uq_trades_ts_venue_trade_id"),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders_ts.order_id"], name="fk_trades_ts_order_id_orders_ts"
        ),
    )
    _index("trades_ts", "order_id")
    _index("trades_ts", "account")
    _index("trades_ts", "trade_time")

    op.create_table(
        "trading_state",
        sa.Column("scope", CODE, nullable=False),
        sa.Column("state", CODE, nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("operator", NAME, nullable=False),
        sa.Column("updated_time", UTCDateTime(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("scope", name="pk_trading_state"),
    )

    op.create_table(
        "trading_state_events",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("scope", CODE, nullable=False),
        sa.Column("from_state", CODE, nullable=True),
        sa.Column("to_state", CODE, nullable=False),
        sa.Column("operator", NAME, nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("event_time", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_trading_state_events"),
    )
    _index("trading_state_events", "scope", "id")

    op.create_table(
        "execution_anomalies",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("order_id", ID, nullable=True),
        sa.Column("venue", NAME, nullable=False),
        sa.Column("kind", CODE, nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("payload", JSONType, nullable=True),
        sa.Column("observed_time", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_execution_anomalies"),
    )
    _index("execution_anomalies", "order_id")
    _index("execution_anomalies", "observed_time")


def downgrade() -> None:
    for table in (
        "execution_anomalies",
        "trading_state_events",
        "trading_state",
        "trades_ts",
        "order_events_ts",
        "orders_ts",
        "order_managers",
    ):
        op.drop_table(table)
