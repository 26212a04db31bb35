"""Fixtures of the exchange unit tests: orders as the services build them."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any, Callable

import pytest

from services.domain import MarketType, Order, OrderType, Side, new_id


def build_order(**overrides: Any) -> Order:
    """A LIMIT BUY of 1.5 BTCUSDT @ 50000 on FUTURES (status PENDING)."""
    fields: dict[str, Any] = dict(
        order_id=new_id(),
        client_order_id=f"cid-{uuid.uuid4().hex[:12]}",
        account="acct-1",
        venue="aster",
        market_type=MarketType.FUTURES,
        symbol="BTCUSDT",
        side=Side.BUY,
        order_type=OrderType.LIMIT,
        quantity=Decimal("1.5"),
        price=Decimal("50000"),
    )
    fields.update(overrides)
    return Order(**fields)


@pytest.fixture
def make_order() -> Callable[..., Order]:
    return build_order
