"""The database schema as SQLAlchemy declarative models.

These rows are not the domain: the repositories convert them to and from the
dataclasses of :mod:`services.domain` (see :mod:`services.store.mapping`). The
migrations in :mod:`services.store.migrations` create exactly this schema; a test
compares the two on SQLite and PostgreSQL.

Status and enum columns hold the bare enum names (``"BUY"``, ``"FILLED"``). Every
money or quantity column is a :class:`~services.store.types.DecimalString`, every time
a :class:`~services.store.types.UTCDateTime`.
"""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from .types import JSONType, DecimalString, UTCDateTime

#: Deterministic constraint names, so migrations can refer to them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: A 64-bit autoincrement key; SQLite only autoincrements an INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")

ID = String(36)  # uuid strings
NAME = String(128)  # accounts, venue ids, symbols, client order ids
CODE = String(32)  # enum names
HASH = String(64)  # hex SHA-256


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class OrderManagerRow(Base):
    __tablename__ = "order_managers"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    unique_identifier: Mapped[str] = mapped_column(String(255), unique=True)
    target_account_uid: Mapped[str] = mapped_column(NAME)
    target_time: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    order_received_time: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    execution_end: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(CODE)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType)
    created_time: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class OrderRow(Base):
    __tablename__ = "orders_ts"
    __table_args__ = (
        UniqueConstraint("account", "client_order_id"),
        Index(None, "symbol", "status"),
        # Pre-trade risk counts an account's recent orders (the order-rate throttle)
        # and its open ones (max open orders) on every validation.
        Index(None, "account", "order_time"),
        Index(None, "account", "status"),
    )

    order_id: Mapped[str] = mapped_column(ID, primary_key=True)
    client_order_id: Mapped[str] = mapped_column(NAME)
    account: Mapped[str] = mapped_column(NAME)
    venue: Mapped[str] = mapped_column(NAME)
    market_type: Mapped[str] = mapped_column(CODE)
    symbol: Mapped[str] = mapped_column(NAME)
    side: Mapped[str] = mapped_column(CODE)
    order_type: Mapped[str] = mapped_column(CODE)
    # NULL for an order whose quantity the venue decides: close_position, quote_order_qty
    # (migration 0008).
    quantity: Mapped[Decimal | None] = mapped_column(DecimalString())
    price: Mapped[Decimal | None] = mapped_column(DecimalString())
    stop_price: Mapped[Decimal | None] = mapped_column(DecimalString())
    time_in_force: Mapped[str] = mapped_column(CODE)
    reduce_only: Mapped[bool] = mapped_column(Boolean())
    post_only: Mapped[bool] = mapped_column(Boolean())
    leverage: Mapped[Decimal | None] = mapped_column(DecimalString())
    order_manager_id: Mapped[str | None] = mapped_column(
        ForeignKey("order_managers.unique_identifier"), index=True
    )
    expire_time: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(CODE, index=True)
    previous_status: Mapped[str | None] = mapped_column(CODE)
    filled_quantity: Mapped[Decimal] = mapped_column(DecimalString())
    # A volume-weighted average: a quotient, rounded half-even to 18 decimal places.
    average_fill_price: Mapped[Decimal | None] = mapped_column(DecimalString(rounding=ROUND_HALF_EVEN))
    remote_order_id: Mapped[str | None] = mapped_column(NAME, index=True)
    order_time: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)
    updated_time: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    reject_reasons: Mapped[list[str]] = mapped_column(JSONType)
    token_nonce: Mapped[str | None] = mapped_column(NAME)
    raw_venue_payload: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # The venue's latest word on the order: the exact JSON text of the request and answer
    # (or stream message) that last changed it (migration 0006).
    raw_venue_json: Mapped[str | None] = mapped_column(Text())
    version: Mapped[int] = mapped_column(Integer())
    last_sequence: Mapped[int] = mapped_column(Integer())
    # The hash of the order's newest event: the head of its chain (see services.store.chain).
    last_event_hash: Mapped[str | None] = mapped_column(HASH)
    # ReplaceOrder's links: the order a replacement replaces, the replacement of an order.
    replaces_order_id: Mapped[str | None] = mapped_column(ID)
    replaced_by_order_id: Mapped[str | None] = mapped_column(ID)
    # Conditional and quote-amount orders (migration 0008), signed by the risk token with
    # the fields above: the flags default to false for the rows of earlier releases.
    close_position: Mapped[bool] = mapped_column(Boolean(), server_default=false())
    working_type: Mapped[str | None] = mapped_column(CODE)
    price_protect: Mapped[bool] = mapped_column(Boolean(), server_default=false())
    activation_price: Mapped[Decimal | None] = mapped_column(DecimalString())
    callback_rate: Mapped[Decimal | None] = mapped_column(DecimalString())
    quote_order_qty: Mapped[Decimal | None] = mapped_column(DecimalString())
    # The fills a CANCELLED or EXPIRED order still owes: the venue's executed quantity in
    # its answer to the close, while the order's fills fall short of it; NULL otherwise
    # (migration 0009). Indexed: the reconciler reads the few orders that have one.
    venue_executed_quantity: Mapped[Decimal | None] = mapped_column(DecimalString(), index=True)


class OrderEventRow(Base):
    __tablename__ = "order_events_ts"
    # AUTOINCREMENT on SQLite: ids are never reused, so a streaming cursor only moves on.
    __table_args__ = (UniqueConstraint("order_id", "sequence"), {"sqlite_autoincrement": True})

    # A global, increasing cursor for streaming (``events_after``).
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders_ts.order_id"))
    sequence: Mapped[int] = mapped_column(Integer())
    event_time: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)
    from_status: Mapped[str | None] = mapped_column(CODE)
    to_status: Mapped[str] = mapped_column(CODE)
    reason: Mapped[str] = mapped_column(Text())
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    # The per-order hash chain (services.store.chain); NULL prev_hash on an order's first event.
    prev_hash: Mapped[str | None] = mapped_column(HASH)
    hash: Mapped[str | None] = mapped_column(HASH)
    # The venue payload that made this change, as its exact JSON text (migration 0006).
    raw_venue_json: Mapped[str | None] = mapped_column(Text())


class TradeRow(Base):
    __tablename__ = "trades_ts"
    __table_args__ = (UniqueConstraint("venue", "trade_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    trade_id: Mapped[str] = mapped_column(NAME)
    venue: Mapped[str] = mapped_column(NAME)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders_ts.order_id"), index=True)
    client_order_id: Mapped[str | None] = mapped_column(NAME)
    account: Mapped[str] = mapped_column(NAME, index=True)
    symbol: Mapped[str] = mapped_column(NAME)
    side: Mapped[str] = mapped_column(CODE)
    quantity: Mapped[Decimal] = mapped_column(DecimalString())
    price: Mapped[Decimal] = mapped_column(DecimalString())
    commission: Mapped[Decimal] = mapped_column(DecimalString())
    commission_asset: Mapped[str | None] = mapped_column(NAME)
    liquidity_side: Mapped[str | None] = mapped_column(CODE)
    trade_time: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)
    raw_payload: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # The venue payload the fill came from, as its exact JSON text (migration 0006).
    raw_venue_json: Mapped[str | None] = mapped_column(Text())


class VenueSettingRow(Base):
    """A venue setting of an account: its position mode (symbol ``""``), or a futures
    symbol's leverage and margin mode. Read from the venue when the Exchange starts, and
    set by operators (SetVenueSetting)."""

    __tablename__ = "venue_settings"

    account: Mapped[str] = mapped_column(NAME, primary_key=True)
    symbol: Mapped[str] = mapped_column(NAME, primary_key=True)
    leverage: Mapped[int | None] = mapped_column(Integer())
    margin_mode: Mapped[str | None] = mapped_column(CODE)
    position_mode: Mapped[str | None] = mapped_column(CODE)
    source: Mapped[str] = mapped_column(NAME)
    updated_time: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class VenueSettingChangeRow(Base):
    """One change of a venue setting (migration 0010), written in the transaction that
    changes its ``venue_settings`` row: what it set (the other columns NULL), who (the
    operator's principal, or ``venue``), the operator's comment, when."""

    __tablename__ = "venue_setting_changes"
    __table_args__ = (Index(None, "account", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account: Mapped[str] = mapped_column(NAME)
    symbol: Mapped[str] = mapped_column(NAME)
    leverage: Mapped[int | None] = mapped_column(Integer())
    margin_mode: Mapped[str | None] = mapped_column(CODE)
    position_mode: Mapped[str | None] = mapped_column(CODE)
    principal: Mapped[str] = mapped_column(NAME)
    comment: Mapped[str] = mapped_column(Text())
    changed_time: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class TradingStateRow(Base):
    """The kill switch: one row per scope ("global"); no row means ACTIVE."""

    __tablename__ = "trading_state"

    scope: Mapped[str] = mapped_column(CODE, primary_key=True)
    state: Mapped[str] = mapped_column(CODE)
    reason: Mapped[str] = mapped_column(Text())
    operator: Mapped[str] = mapped_column(NAME)
    updated_time: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    version: Mapped[int] = mapped_column(Integer())


class RiskReplicaRow(Base):
    """A running Risk replica and the replica count it decides with: each writes its row
    at start and every second, and deletes it as it stops; a replica does not decide
    while another seen within the lease runs with another count (docs/risk-sharding.md)."""

    __tablename__ = "risk_replicas"

    instance: Mapped[str] = mapped_column(ID, primary_key=True)
    ordinal: Mapped[int] = mapped_column(Integer())
    shards: Mapped[int] = mapped_column(Integer())
    host: Mapped[str] = mapped_column(NAME)
    started_time: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    seen_time: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class TradingStateEventRow(Base):
    """The audit trail of trading-state changes."""

    __tablename__ = "trading_state_events"
    __table_args__ = (Index(None, "scope", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    scope: Mapped[str] = mapped_column(CODE)
    from_state: Mapped[str | None] = mapped_column(CODE)
    to_state: Mapped[str] = mapped_column(CODE)
    operator: Mapped[str] = mapped_column(NAME)
    reason: Mapped[str] = mapped_column(Text())
    event_time: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class ExecutionAnomalyRow(Base):
    """A venue report refused rather than applied (overfill, unknown order, ...)."""

    __tablename__ = "execution_anomalies"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    order_id: Mapped[str | None] = mapped_column(ID, index=True)
    venue: Mapped[str] = mapped_column(NAME)
    kind: Mapped[str] = mapped_column(CODE)
    detail: Mapped[str] = mapped_column(Text())
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    observed_time: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)


class ExchangeExecutionRow(Base):
    """An order the Exchange service sent to its provider (paper, shadow or live), once.

    Written by the Exchange before the provider executes the order, in the same group
    commit as the other executions of the moment: the primary key makes a second
    execution of an order id impossible, whatever the Exchange's memory lost (a restart).
    """

    __tablename__ = "exchange_executions"

    order_id: Mapped[str] = mapped_column(ID, primary_key=True)
    client_order_id: Mapped[str] = mapped_column(NAME)
    account: Mapped[str] = mapped_column(NAME)
    venue: Mapped[str] = mapped_column(NAME)
    symbol: Mapped[str] = mapped_column(NAME)
    mode: Mapped[str] = mapped_column(CODE)
    executed_time: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class PositionRow(Base):
    """The ledger: one account's net position in one symbol of one market type (spot and
    futures apart), from its fills.

    ``cost_basis`` is ``|quantity| x average entry price`` (exact; see
    :mod:`services.domain.ledger`); ``average_entry_price`` is derived from it, stored
    for readers. PnL and ``commission`` are in the symbol's quote currency; ``fees`` holds
    the commissions by the asset they were charged in (a JSON object of decimal text).
    """

    __tablename__ = "positions"

    account: Mapped[str] = mapped_column(NAME, primary_key=True)
    market_type: Mapped[str] = mapped_column(CODE, primary_key=True)
    symbol: Mapped[str] = mapped_column(NAME, primary_key=True)
    quantity: Mapped[Decimal] = mapped_column(DecimalString())
    cost_basis: Mapped[Decimal] = mapped_column(DecimalString())
    average_entry_price: Mapped[Decimal | None] = mapped_column(DecimalString(rounding=ROUND_HALF_EVEN))
    realised_pnl: Mapped[Decimal] = mapped_column(DecimalString())
    commission: Mapped[Decimal] = mapped_column(DecimalString())
    fees: Mapped[dict[str, Any]] = mapped_column(JSONType)
    updated_time: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    version: Mapped[int] = mapped_column(Integer())


class LedgerEntryRow(Base):
    """One fill as the ledger applied it: what it realised and the position after it.

    At most one entry per venue trade, so a trade is never applied twice; the daily
    loss limit sums an account's entries since the last reset.
    """

    __tablename__ = "ledger_entries"
    __table_args__ = (
        UniqueConstraint("venue", "trade_id"),
        Index(None, "account", "trade_time"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account: Mapped[str] = mapped_column(NAME)
    market_type: Mapped[str] = mapped_column(CODE)
    symbol: Mapped[str] = mapped_column(NAME)
    venue: Mapped[str] = mapped_column(NAME)
    trade_id: Mapped[str] = mapped_column(NAME)
    side: Mapped[str] = mapped_column(CODE)
    quantity: Mapped[Decimal] = mapped_column(DecimalString())
    price: Mapped[Decimal] = mapped_column(DecimalString())
    realised_pnl: Mapped[Decimal] = mapped_column(DecimalString())
    commission: Mapped[Decimal] = mapped_column(DecimalString())
    commission_asset: Mapped[str | None] = mapped_column(NAME)
    position_quantity: Mapped[Decimal] = mapped_column(DecimalString())
    trade_time: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    applied_time: Mapped[dt.datetime] = mapped_column(UTCDateTime())


orders_table = OrderRow.__table__
order_events_table = OrderEventRow.__table__
trades_table = TradeRow.__table__
order_managers_table = OrderManagerRow.__table__
trading_state_table = TradingStateRow.__table__
trading_state_events_table = TradingStateEventRow.__table__
risk_replicas_table = RiskReplicaRow.__table__
anomalies_table = ExecutionAnomalyRow.__table__
exchange_executions_table = ExchangeExecutionRow.__table__
positions_table = PositionRow.__table__
ledger_entries_table = LedgerEntryRow.__table__
venue_settings_table = VenueSettingRow.__table__
venue_setting_changes_table = VenueSettingChangeRow.__table__
