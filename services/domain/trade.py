"""Trades (fills) and order-manager intent rows."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal
from typing import Any

from .enums import LiquiditySide, Side


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
