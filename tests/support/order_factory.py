"""One builder of test orders, shared by the suites (each passes its own defaults)."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from services.domain import MarketType, Order, OrderType, Side, new_id


def build_order(**overrides: Any) -> Order:
    """A PENDING LIMIT BUY of 1.5 BTCUSDT @ 50000 on FUTURES for ``acct-1``, no events;
    ``overrides`` replace any field."""
    fields: dict[str, Any] = dict(
        order_id=new_id(),
        client_order_id=f"cid-{uuid.uuid4().hex[:12]}",
        account="acct-1",
        venue="paper",
        market_type=MarketType.FUTURES,
        symbol="BTCUSDT",
        side=Side.BUY,
        order_type=OrderType.LIMIT,
        quantity=Decimal("1.5"),
        price=Decimal("50000"),
    )
    fields.update(overrides)
    return Order(**fields)
