"""Trades (fills) and order-manager intent rows."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal
from typing import Any

from .enums import LiquiditySide, MarketType, Side


def venue_trade_id(market_type: MarketType, symbol: str, side: Side | str, number: Any) -> str:
    """The id Tessera stores a live venue trade under: unique per venue, as the store keys
    trades by ``(venue, trade_id)``. Aster numbers its trades per market and symbol (a
    futures trade of BTCUSDT and one of ETHUSDT may carry the same number), and a trade
    between two of the venue's accounts is in both accounts' trades under one number,
    once on each side: so the id is the market, the symbol, the number and the side,
    ``BTCUSDT:1042:BUY`` on futures and ``spot:BTCUSDT:1042:SELL`` on spot."""
    side_name = side.value if isinstance(side, Side) else str(side)
    trade = f"{symbol}:{number}:{side_name}"
    return f"spot:{trade}" if market_type is MarketType.SPOT else trade


def legacy_venue_trade_id(trade_id: str) -> str | None:
    """The id a live venue trade was stored under before :func:`venue_trade_id` (the
    number alone on futures, ``spot-<number>`` on spot); None for an id of another form.
    A fill stored under it, reported again after an upgrade, is known by it."""
    parts = trade_id.split(":")
    if len(parts) == 4 and parts[0] == "spot":
        return f"spot-{parts[2]}"
    if len(parts) == 3:
        return parts[1]
    return None


@dataclasses.dataclass
class Trade:
    """One fill at a venue; ``trade_id`` is unique per venue."""

    trade_id: str
    venue: str
    order_id: str
    account: str
    symbol: str
    side: Side
    quantity: Decimal
    price: Decimal
    trade_time: dt.datetime
    commission: Decimal = Decimal(0)
    commission_asset: str | None = None
    liquidity_side: LiquiditySide | None = None
    client_order_id: str | None = None
    raw_payload: dict[str, Any] | None = None
    #: The venue payload the fill came from, as its exact JSON text.
    raw_venue_json: str | None = None

    @property
    def notional(self) -> Decimal:
        return self.quantity * self.price


@dataclasses.dataclass
class OrderManager:
    """An order-manager intent row: a batch of orders with one purpose and target."""

    id: str
    unique_identifier: str
    target_account_uid: str
    target_time: dt.datetime
    status: str
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)
    order_received_time: dt.datetime | None = None
    execution_end: dt.datetime | None = None
    created_time: dt.datetime | None = None
