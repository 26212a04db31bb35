"""What a venue says about an order: acknowledgements, fills, cancels, refusals."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal
from typing import Any

from .enums import LiquiditySide, OrderStatus, Side


@dataclasses.dataclass
class Fill:
    trade_id: str
    quantity: Decimal
    price: Decimal
    commission: Decimal
    commission_asset: str | None
    liquidity_side: LiquiditySide


@dataclasses.dataclass
class ExecutionReport:
    """One venue message about one order; ``fill`` is set when it carries a trade."""

    order_id: str
    client_order_id: str
    venue: str
    account: str
    symbol: str
    side: Side
    order_status: OrderStatus
    transact_time: dt.datetime
    remote_order_id: str | None = None
    fill: Fill | None = None
    cumulative_quantity: Decimal | None = None
    reason: str = ""
    raw_payload: dict[str, Any] | None = None
    sequence: int = 0
    #: The venue payload this report came from, as exact JSON text (integers stay
    #: integers): a request and its answer, a stream message, a trade of a REST answer.
    raw_json: str | None = None
