"""Fixtures of the services' unit tests: orders, a key ring and signed tokens.

No database and no network here; every fixture builds plain domain objects.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any, Callable

import order_factory
import pytest

import core_ext
from services.domain import Order, OrderStatus

SECRET = b"services-unit-test-secret-0123456789"  # 36 bytes
KEY_ID = "unit1"
T0 = dt.datetime(2025, 3, 4, 5, 6, 7, 890123, tzinfo=dt.timezone.utc)

#: A legal path from PENDING to each status (the last element is the target).
PATHS: dict[OrderStatus, tuple[OrderStatus, ...]] = {
    OrderStatus.PENDING: (),
    OrderStatus.APPROVED: (OrderStatus.APPROVED,),
    OrderStatus.REJECTED: (OrderStatus.REJECTED,),
    OrderStatus.SUBMITTED: (OrderStatus.APPROVED, OrderStatus.SUBMITTED),
    OrderStatus.ACCEPTED: (OrderStatus.APPROVED, OrderStatus.SUBMITTED, OrderStatus.ACCEPTED),
    OrderStatus.PARTIALLY_FILLED: (
        OrderStatus.APPROVED,
        OrderStatus.SUBMITTED,
        OrderStatus.PARTIALLY_FILLED,
    ),
    OrderStatus.FILLED: (OrderStatus.APPROVED, OrderStatus.SUBMITTED, OrderStatus.FILLED),
    OrderStatus.PENDING_CANCEL: (
        OrderStatus.APPROVED,
        OrderStatus.SUBMITTED,
        OrderStatus.ACCEPTED,
        OrderStatus.PENDING_CANCEL,
    ),
    OrderStatus.CANCELLED: (OrderStatus.APPROVED, OrderStatus.CANCELLED),
    OrderStatus.EXPIRED: (OrderStatus.APPROVED, OrderStatus.EXPIRED),
}


def build_order(**overrides: Any) -> Order:
    """A valid LIMIT BUY of 1.5 BTCUSDT @ 50000 on FUTURES, status PENDING, no events."""
    return order_factory.build_order(**{"order_time": T0, "updated_time": T0, **overrides})


def drive_to(order: Order, status: OrderStatus) -> Order:
    """Record the creation event and walk a legal path to ``status``."""
    order.record_creation()
    for step in PATHS[status]:
        order.transition(step)
    assert order.status is status
    return order


@pytest.fixture
def make_order() -> Callable[..., Order]:
    return build_order


@pytest.fixture
def order_in() -> Callable[..., Order]:
    """``order_in(status, **overrides)``: an order walked to ``status`` along a legal path."""

    def make(status: OrderStatus, **overrides: Any) -> Order:
        return drive_to(build_order(**overrides), status)

    return make


@pytest.fixture
def keyring() -> "core_ext.KeyRing":
    return core_ext.KeyRing(KEY_ID, SECRET)


@pytest.fixture
def sign(keyring: "core_ext.KeyRing") -> Callable[..., str]:
    """``sign(order, issued_at=now, keyring=the fixture's)``: a risk token for the order."""

    def make(order: Order, issued_at: int | None = None, with_keyring: "core_ext.KeyRing | None" = None) -> str:
        when = int(time.time()) if issued_at is None else issued_at
        return core_ext.sign_token(with_keyring or keyring, order.token_body(), when)

    return make
