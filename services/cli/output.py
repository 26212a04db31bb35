"""Plain-text output of the ``tessera`` command: aligned tables, enum names, UTC times.

Decimals are shown exactly as the services return them (strings); an unset one shows
as ``-``. Times are UTC in ISO 8601 with milliseconds and a ``Z``.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, Iterable, Sequence

import grpc

from tessera.common.v1 import types_pb2 as pb

_PREFIXES = {
    "status": (pb.OrderStatus, "ORDER_STATUS_"),
    "side": (pb.Side, "SIDE_"),
    "order_type": (pb.OrderType, "ORDER_TYPE_"),
    "time_in_force": (pb.TimeInForce, "TIME_IN_FORCE_"),
    "market_type": (pb.MarketType, "MARKET_TYPE_"),
    "liquidity_side": (pb.LiquiditySide, "LIQUIDITY_SIDE_"),
    "execution_mode": (pb.ExecutionMode, "EXECUTION_MODE_"),
    "trading_state": (pb.TradingState, "TRADING_STATE_"),
    "working_type": (pb.WorkingType, "WORKING_TYPE_"),
}

EMPTY = "-"


def enum_name(kind: str, value: int) -> str:
    """``ORDER_STATUS_FILLED`` as ``FILLED``; UNSPECIFIED as ``-``; unknown numbers as ``?7``."""
    wrapper, prefix = _PREFIXES[kind]
    try:
        name = wrapper.Name(value)
    except ValueError:
        return f"?{value}"
    if name.endswith("_UNSPECIFIED"):
        return EMPTY
    return name[len(prefix):] if name.startswith(prefix) else name


def status(value: int) -> str:
    return enum_name("status", value)


def text(value: str) -> str:
    return value if value else EMPTY


def timestamp(message: Any, field: str) -> str:
    """A Timestamp field as ``2024-05-01T12:00:00.123Z``, or ``-`` when unset."""
    if not message.HasField(field):
        return EMPTY
    return iso(getattr(message, field).ToDatetime(tzinfo=dt.timezone.utc))


def iso(value: dt.datetime) -> str:
    return value.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, empty: str = "(none)") -> str:
    """An aligned plain-text table; numbers-like columns are right-aligned."""
    body = [[EMPTY if cell is None or cell == "" else str(cell) for cell in row] for row in rows]
    if not body:
        return empty
    widths = [len(h) for h in headers]
    for row in body:
        for index, cell in enumerate(row):
            widths[index] = max(widths[index], len(cell))
    numeric = [
        all(_looks_numeric(row[index]) for row in body) and any(row[index] != EMPTY for row in body)
        for index in range(len(headers))
    ]

    def render(cells: Sequence[str]) -> str:
        parts = [
            cell.rjust(widths[i]) if numeric[i] else cell.ljust(widths[i]) for i, cell in enumerate(cells)
        ]
        return "  ".join(parts).rstrip()

    lines = [render(headers), "  ".join("-" * w for w in widths)]
    lines.extend(render(row) for row in body)
    return "\n".join(lines)


def _looks_numeric(cell: str) -> bool:
    if cell == EMPTY:
        return True
    try:
        float(cell)
    except ValueError:
        return False
    return True


def fields(pairs: Iterable[tuple[str, Any]]) -> str:
    """``name: value`` lines with the names aligned."""
    items = [(name, EMPTY if value is None or value == "" else str(value)) for name, value in pairs]
    width = max((len(name) for name, _ in items), default=0)
    return "\n".join(f"{name + ':':<{width + 1}} {value}" for name, value in items)


# -- Tessera messages -----------------------------------------------------------------
ORDER_HEADERS = ("order_id", "client_order_id", "account", "symbol", "side", "type", "quantity", "price",
                 "status", "filled", "avg_price", "order_time")


def order_row(order: pb.Order) -> list[str]:
    price = order.price or (f"stop {order.stop_price}" if order.stop_price else "")
    if order.price and order.stop_price:
        price = f"{order.price} (stop {order.stop_price})"
    return [
        order.order_id,
        order.client_order_id,
        order.account,
        order.symbol,
        enum_name("side", order.side),
        enum_name("order_type", order.order_type),
        order.quantity,
        price,
        status(order.status),
        order.filled_quantity,
        order.average_fill_price,
        timestamp(order, "order_time"),
    ]


def orders_table(orders: Iterable[pb.Order]) -> str:
    return table(ORDER_HEADERS, (order_row(o) for o in orders), empty="(no orders)")


def order_details(order: pb.Order) -> str:
    owed = []
    if order.venue_executed_quantity:  # a closed order whose fills are still on their way
        owed = [("fills_owed", f"{Decimal(order.venue_executed_quantity) - Decimal(order.filled_quantity or '0')} "
                               f"(the venue executed {order.venue_executed_quantity})")]
    return fields(
        [
            ("order_id", order.order_id),
            ("client_order_id", order.client_order_id),
            ("status", status(order.status)),
            ("account", order.account),
            ("venue", order.venue),
            ("market", enum_name("market_type", order.market_type)),
            ("symbol", order.symbol),
            ("side", enum_name("side", order.side)),
            ("type", enum_name("order_type", order.order_type)),
            ("quantity", order.quantity),
            ("price", order.price),
            ("stop_price", order.stop_price),
            ("time_in_force", enum_name("time_in_force", order.time_in_force)),
            ("reduce_only", "yes" if order.reduce_only else "no"),
            ("post_only", "yes" if order.post_only else "no"),
            ("leverage", order.leverage),
            *_conditional_details(order),
            ("order_manager", order.order_manager_id),
            ("filled_quantity", order.filled_quantity),
            ("average_fill_price", order.average_fill_price),
            *owed,
            ("remote_order_id", order.remote_order_id),
            ("order_time", timestamp(order, "order_time")),
            ("updated_time", timestamp(order, "updated_time")),
            ("reject_reasons", ", ".join(order.reject_reasons)),
        ]
    )


def _conditional_details(order: pb.Order) -> list[tuple[str, str]]:
    """The fields of take-profit, trailing-stop, close-position and quote-amount orders, those set."""
    shown = [("close_position", "yes" if order.close_position else ""),
             ("working_type", enum_name("working_type", order.working_type) if order.working_type else ""),
             ("price_protect", "yes" if order.price_protect else ""),
             ("activation_price", order.activation_price), ("callback_rate", order.callback_rate),
             ("quote_order_qty", order.quote_order_qty)]
    return [(name, value) for name, value in shown if value]


EVENT_HEADERS = ("seq", "event_time", "from", "to", "reason")


def event_row(event: pb.OrderEvent) -> list[str]:
    return [
        str(event.sequence),
        timestamp(event, "event_time"),
        status(event.from_status),
        status(event.to_status),
        event.reason,
    ]


def events_table(events: Iterable[pb.OrderEvent]) -> str:
    return table(EVENT_HEADERS, (event_row(e) for e in events), empty="(no events)")


TRADE_HEADERS = ("trade_id", "order_id", "account", "symbol", "side", "quantity", "price", "commission",
                 "asset", "liquidity", "trade_time")


def trade_row(trade: pb.Trade) -> list[str]:
    return [
        trade.trade_id,
        trade.order_id,
        trade.account,
        trade.symbol,
        enum_name("side", trade.side),
        trade.quantity,
        trade.price,
        trade.commission,
        trade.commission_asset,
        enum_name("liquidity_side", trade.liquidity_side),
        timestamp(trade, "trade_time"),
    ]


def trades_table(trades: Iterable[pb.Trade]) -> str:
    return table(TRADE_HEADERS, (trade_row(t) for t in trades), empty="(no trades)")


def violations_table(violations: Iterable[pb.RiskViolation]) -> str:
    return table(("code", "message"), ((v.code, v.message) for v in violations), empty="(no violations)")


def event_line(event: pb.OrderEvent, order: pb.Order | None = None) -> str:
    """One line per event for ``tessera watch``."""
    parts = [
        timestamp(event, "event_time"),
        f"#{event.cursor}" if event.cursor else "#-",
        event.order_id,
        text(event.symbol or (order.symbol if order is not None else "")),
        text(event.account or (order.account if order is not None else "")),
        f"{status(event.from_status)} -> {status(event.to_status)}",
    ]
    fills = (pb.ORDER_STATUS_PARTIALLY_FILLED, pb.ORDER_STATUS_FILLED)
    if order is not None and event.to_status in fills and order.filled_quantity:
        # The order as the stream sends it (its latest state for a historic event).
        parts.append(f"filled={order.filled_quantity}@{text(order.average_fill_price)}")
    if event.reason:
        parts.append(f"({event.reason})")
    return "  ".join(parts)


# -- errors ---------------------------------------------------------------------------
def rpc_error(error: grpc.RpcError, what: str = "") -> str:
    """``UNAUTHENTICATED: TOKEN_EXPIRED: ...`` for a failed call."""
    code = error.code() if hasattr(error, "code") else None
    details = error.details() if hasattr(error, "details") else str(error)
    name = code.name if code is not None else "UNKNOWN"
    prefix = f"{what} failed: " if what else ""
    if details and details.startswith(f"{name}:"):
        return f"{prefix}{details}"
    return f"{prefix}{name}: {details}"
