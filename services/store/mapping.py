"""Conversions between table rows and the domain dataclasses, in one place.

Rows are read as Core mappings (column name -> value) and written as dicts; enums are
stored by value (``"BUY"``) and come back as the domain's enums.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

import core_ext
from services.domain import (
    LiquiditySide,
    MarketType,
    Order,
    OrderEvent,
    OrderManager,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
    Trade,
    WorkingType,
)

from .models import order_managers_table, orders_table, trades_table

_ORDER_ENUMS: dict[str, type[enum.Enum]] = {
    "market_type": MarketType,
    "side": Side,
    "order_type": OrderType,
    "time_in_force": TimeInForce,
    "status": OrderStatus,
    "previous_status": OrderStatus,
    "working_type": WorkingType,
}
_TRADE_ENUMS: dict[str, type[enum.Enum]] = {"side": Side, "liquidity_side": LiquiditySide}

#: Every column of ``orders_ts``; each is an attribute of :class:`Order` of the same name.
ORDER_COLUMNS: tuple[str, ...] = tuple(column.name for column in orders_table.columns)

#: Fixed when the order is added: its identity, its creation time and the economic
#: fields the risk token signs (:meth:`Order.token_fields`). ``save`` never rewrites them.
ORDER_FIXED_COLUMNS: tuple[str, ...] = (*core_ext.ORDER_FIELDS, "order_time")

#: What ``OrderRepository.save`` writes (``version`` is bumped by the statement itself).
ORDER_LIFECYCLE_COLUMNS: tuple[str, ...] = tuple(
    name for name in ORDER_COLUMNS if name not in ORDER_FIXED_COLUMNS and name != "version"
)

TRADE_COLUMNS: tuple[str, ...] = tuple(c.name for c in trades_table.columns if c.name != "id")
EVENT_COLUMNS = ("order_id", "sequence", "event_time", "from_status", "to_status", "reason", "payload",
                 "raw_venue_json")


def _to_db(value: Any) -> Any:
    return value.value if isinstance(value, enum.Enum) else value


def _from_db(values: dict[str, Any], enums: Mapping[str, type[enum.Enum]]) -> dict[str, Any]:
    for name, enum_type in enums.items():
        if values.get(name) is not None:
            values[name] = enum_type(values[name])
    return values


def order_to_row(order: Order, columns: tuple[str, ...] = ORDER_COLUMNS) -> dict[str, Any]:
    row = {name: _to_db(getattr(order, name)) for name in columns}
    if "reject_reasons" in row:
        row["reject_reasons"] = list(row["reject_reasons"] or [])
    return row


def order_from_row(row: Mapping[str, Any]) -> Order:
    values = {name: row[name] for name in ORDER_COLUMNS}
    values["reject_reasons"] = list(values["reject_reasons"] or [])
    return Order(**_from_db(values, _ORDER_ENUMS))


def event_to_row(event: OrderEvent) -> dict[str, Any]:
    row = {name: _to_db(getattr(event, name)) for name in EVENT_COLUMNS}
    row["payload"] = dict(row["payload"] or {})
    return row


def event_from_row(row: Mapping[str, Any]) -> OrderEvent:
    values = {name: row[name] for name in EVENT_COLUMNS}
    values["payload"] = values["payload"] or {}
    return OrderEvent(**_from_db(values, {"from_status": OrderStatus, "to_status": OrderStatus}))


def trade_to_row(trade: Trade) -> dict[str, Any]:
    return {name: _to_db(getattr(trade, name)) for name in TRADE_COLUMNS}


def trade_from_row(row: Mapping[str, Any]) -> Trade:
    return Trade(**_from_db({name: row[name] for name in TRADE_COLUMNS}, _TRADE_ENUMS))


def manager_to_row(manager: OrderManager) -> dict[str, Any]:
    row = {column.name: getattr(manager, column.name) for column in order_managers_table.columns}
    row["metadata"] = dict(manager.metadata or {})
    return row


def manager_from_row(row: Mapping[str, Any]) -> OrderManager:
    values = {column.name: row[column.name] for column in order_managers_table.columns}
    values["metadata"] = values["metadata"] or {}
    return OrderManager(**values)
