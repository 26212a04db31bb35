"""Enumerations of the order domain.

Values are the bare names used in the risk token's canonical encoding and in the
database (``"BUY"``, ``"LIMIT"``); the protobuf enums carry the same names behind
their buf-style prefix (``SIDE_BUY``), see :mod:`services.common.convert`.
"""

from __future__ import annotations

import enum


class OrderStatus(str, enum.Enum):
    PENDING = "PENDING"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"
    SUBMITTED = "SUBMITTED"
    ACCEPTED = "ACCEPTED"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    PENDING_CANCEL = "PENDING_CANCEL"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES

    @property
    def is_open(self) -> bool:
        """Working at (or on its way to) a venue: may still fill."""
        return self in OPEN_STATUSES


TERMINAL_STATUSES = frozenset(
    {OrderStatus.REJECTED, OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.EXPIRED}
)
OPEN_STATUSES = frozenset(
    {
        OrderStatus.SUBMITTED,
        OrderStatus.ACCEPTED,
        OrderStatus.PARTIALLY_FILLED,
        OrderStatus.PENDING_CANCEL,
    }
)


class Side(str, enum.Enum):
    BUY = "BUY"
    SELL = "SELL"

    @property
    def sign(self) -> int:
        return 1 if self is Side.BUY else -1


class OrderType(str, enum.Enum):
    MARKET = "MARKET"
    LIMIT = "LIMIT"
    STOP_MARKET = "STOP_MARKET"
    STOP_LIMIT = "STOP_LIMIT"
    TAKE_PROFIT = "TAKE_PROFIT"
    TAKE_PROFIT_MARKET = "TAKE_PROFIT_MARKET"
    TRAILING_STOP_MARKET = "TRAILING_STOP_MARKET"

    @property
    def needs_price(self) -> bool:
        return self in _LIMITED

    @property
    def needs_stop_price(self) -> bool:
        return self in _STOPPED

    @property
    def is_conditional(self) -> bool:
        """Rests untriggered until the market reaches a price (a stop, a take-profit, a trailing stop)."""
        return self in _CONDITIONAL

    @property
    def is_take_profit(self) -> bool:
        """Triggered the other way from a stop: a BUY when the price falls to the stop price."""
        return self in (OrderType.TAKE_PROFIT, OrderType.TAKE_PROFIT_MARKET)

    @property
    def is_market_like(self) -> bool:
        """Trades at the market (once triggered): never rests on the book."""
        return self in (OrderType.MARKET, OrderType.STOP_MARKET, OrderType.TAKE_PROFIT_MARKET,
                        OrderType.TRAILING_STOP_MARKET)


_LIMITED = frozenset({OrderType.LIMIT, OrderType.STOP_LIMIT, OrderType.TAKE_PROFIT})
_STOPPED = frozenset({OrderType.STOP_MARKET, OrderType.STOP_LIMIT, OrderType.TAKE_PROFIT,
                      OrderType.TAKE_PROFIT_MARKET})
_CONDITIONAL = _STOPPED | {OrderType.TRAILING_STOP_MARKET}


class WorkingType(str, enum.Enum):
    """The price that triggers a futures conditional order (the venue's ``workingType``)."""

    MARK_PRICE = "MARK_PRICE"
    CONTRACT_PRICE = "CONTRACT_PRICE"


class TimeInForce(str, enum.Enum):
    GTC = "GTC"
    IOC = "IOC"
    FOK = "FOK"
    GTD = "GTD"


class MarketType(str, enum.Enum):
    FUTURES = "FUTURES"
    SPOT = "SPOT"


class MarginMode(str, enum.Enum):
    ISOLATED = "ISOLATED"
    CROSSED = "CROSSED"


class ExecutionMode(str, enum.Enum):
    PAPER = "PAPER"
    SHADOW = "SHADOW"
    LIVE = "LIVE"


class TradingState(str, enum.Enum):
    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    HALTED = "HALTED"


class LiquiditySide(str, enum.Enum):
    MAKER = "MAKER"
    TAKER = "TAKER"
