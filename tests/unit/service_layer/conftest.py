"""Fixtures of the service-layer tests: the OMS's handlers over a fake store, with a
fake clock (see ``tests/support/fakes.py`` and ``docs/testing.md``).

Nothing here sleeps, opens a socket or a file: time moves when a test says
``clock.advance(...)``.
"""

from __future__ import annotations

from typing import Any, Callable

import pytest
from fakes import FakeClock, FakeDatabase, FakeGateway
from service_layer_support import KEY_ID, SECRET, TTL, approve

import core_ext
from services.domain import Order
from services.oms.cancels import Cancels
from services.oms.submission import Submitter


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def keyring() -> "core_ext.KeyRing":
    return core_ext.KeyRing(KEY_ID, SECRET)


@pytest.fixture
def db(clock: FakeClock) -> FakeDatabase:
    return FakeDatabase(clock=clock.now)


@pytest.fixture
def gateway(clock: FakeClock) -> FakeGateway:
    return FakeGateway(clock=clock.now)


@pytest.fixture
def submitter(db: FakeDatabase, keyring: Any, gateway: FakeGateway, clock: FakeClock) -> Submitter:
    return Submitter(db, keyring, gateway, ttl_seconds=TTL, clock=clock.now, wall=clock.time)  # type: ignore[arg-type]


@pytest.fixture
def cancels(submitter: Submitter, gateway: FakeGateway, clock: FakeClock) -> Cancels:
    return Cancels(submitter, gateway, ttl_seconds=TTL, clock=clock.now)  # type: ignore[arg-type]


@pytest.fixture
def approved(db: FakeDatabase, keyring: Any, clock: FakeClock) -> Callable[..., tuple[Order, str]]:
    """``approved(**fields)``: an order approved now by the fake clock, and its token."""
    return lambda **fields: approve(db, keyring, clock.now(), **fields)
