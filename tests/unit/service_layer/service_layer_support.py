"""What the service-layer tests share besides their fixtures (see ``conftest.py``)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import order_factory

import core_ext
from services.domain import Order, OrderType

SECRET = b"service-layer-test-secret-0123456789"
KEY_ID = "sl1"
#: The risk token's lifetime the OMS is given: five minutes.
TTL = 300


def approve(db: Any, keyring: "core_ext.KeyRing", at: dt.datetime, *, nonce: str | None = None,
            **fields: Any) -> tuple[Order, str]:
    """What Risk does for an order it approves at ``at``: its first two events, a token
    issued then (with ``nonce``; random when None), the order stored. Returns the order as
    a client sends it, and its token."""
    order = order_factory.build_order(**{"quantity": Decimal("0.01"), "price": Decimal("66000"),
                                         "order_time": at, "updated_time": at, **fields})
    order.record_approval(at)
    token = core_ext.sign_token(keyring, order.token_body(), int(at.timestamp()), nonce)
    order.token_nonce = token.split(".")[3]
    db.run_sync(lambda uow: uow.orders.add(order))
    return order_factory.build_order(**{name: getattr(order, name) for name in (
        "order_id", "client_order_id", "account", "venue", "market_type", "symbol", "side", "order_type",
        "quantity", "price", "stop_price", "time_in_force", "reduce_only", "post_only", "leverage",
        "order_manager_id", "expire_time", "order_time", "updated_time")}), token


#: A BUY this far below the market rests (ACCEPTED) at the fake venue.
RESTING = {"order_type": OrderType.LIMIT, "price": Decimal("60000")}
