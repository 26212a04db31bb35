"""Rows for the store's tests: orders and trades to store (imported by name, not from
``conftest``, whose name every test directory shares)."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import order_factory

from services.domain import Order, Trade

T0 = dt.datetime(2025, 1, 2, 3, 4, 5, 123456, tzinfo=dt.timezone.utc)


def new_order(**overrides: Any) -> Order:
    """A LIMIT BUY order on ``acct-1`` carrying its creation event."""
    order = order_factory.build_order(
        **{"price": Decimal("50000.25"), "order_time": T0, "updated_time": T0, **overrides}
    )
    order.record_creation()
    return order


def new_trade(order: Order, **overrides: Any) -> Trade:
    fields: dict[str, Any] = dict(
        trade_id=f"t-{uuid.uuid4().hex[:12]}",
        venue=order.venue,
        order_id=order.order_id,
        account=order.account,
        symbol=order.symbol,
        side=order.side,
        quantity=Decimal("0.5"),
        price=Decimal("50000.25"),
        trade_time=T0,
        commission=Decimal("0.0125"),
        commission_asset="USDT",
        client_order_id=order.client_order_id,
    )
    fields.update(overrides)
    return Trade(**fields)
