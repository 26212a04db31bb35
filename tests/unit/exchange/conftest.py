"""Fixtures of the exchange unit tests: orders as the services build them."""

from __future__ import annotations

from typing import Any, Callable

import order_factory
import pytest

from services.domain import Order


def build_order(**overrides: Any) -> Order:
    """A LIMIT BUY of 1.5 BTCUSDT @ 50000 on FUTURES (status PENDING)."""
    return order_factory.build_order(**{"venue": "aster", **overrides})


@pytest.fixture
def make_order() -> Callable[..., Order]:
    return build_order
