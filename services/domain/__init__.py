"""Tessera's order domain: plain objects, no gRPC, no SQLAlchemy."""

from . import batches

from .enums import (
    ExecutionMode,
    LiquiditySide,
    MarginMode,
    MarketType,
    OPEN_STATUSES,
    OrderStatus,
    OrderType,
    Side,
    TERMINAL_STATUSES,
    TimeInForce,
    TradingState,
    WorkingType,
)
from .order import Order, OrderEvent, new_id, utcnow
from .trade import OrderManager, Trade

__all__ = [
    "ExecutionMode",
    "LiquiditySide",
    "MarginMode",
    "MarketType",
    "OPEN_STATUSES",
    "Order",
    "OrderEvent",
    "OrderManager",
    "OrderStatus",
    "OrderType",
    "Side",
    "TERMINAL_STATUSES",
    "TimeInForce",
    "Trade",
    "TradingState",
    "WorkingType",
    "new_id",
    "utcnow",
]
