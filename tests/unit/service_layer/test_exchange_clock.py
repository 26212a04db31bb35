"""The Exchange service's engine on a fake wall clock: it checks the risk token and the
OMS's per-call credential at the time it is given, and lets an executed order id go once
no token for it could still verify, without a test waiting for either."""

from __future__ import annotations

import asyncio
import dataclasses
from decimal import Decimal

import order_factory
import pytest
from fakes import FakeClock

import core_ext
from services.common.tokens import oms_call_metadata
from services.domain.errors import TokenRejected, TokenReplayed
from services.exchange.engine import ExchangeEngine
from services.exchange.providers.paper import PaperProvider

TTL = 300
SKEW = core_ext.DEFAULT_SKEW_SECONDS
KEYRING = core_ext.KeyRing("ex1", b"exchange-clock-test-secret-0123456789")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def engine(clock) -> ExchangeEngine:
    return ExchangeEngine(KEYRING, PaperProvider({"BTCUSDT": Decimal("65000")}), ttl_seconds=TTL, wall=clock.time)


def signed(clock: FakeClock, **fields):
    order = order_factory.build_order(**{"quantity": Decimal("0.01"), "price": Decimal("66000"), **fields})
    return order, core_ext.sign_token(KEYRING, order.token_body(), int(clock.time()))


def execute(engine, clock, order, token, *, credential_at=None):
    """As the OMS calls it: with its call credential, signed at ``credential_at`` (now)."""
    metadata = oms_call_metadata(KEYRING, "ExecuteOrder", token,
                                 now=clock.time() if credential_at is None else credential_at)
    return asyncio.run(engine.execute(order, token, metadata))


def test_a_token_is_executed_until_its_lifetime_and_skew_are_over(engine, clock):
    order, token = signed(clock)
    late, late_token = signed(clock)
    clock.advance(TTL + SKEW - 1)
    reports = execute(engine, clock, order, token)
    clock.advance(1)

    with pytest.raises(TokenRejected) as refused:
        execute(engine, clock, late, late_token)

    assert reports and reports[-1].order_id == order.order_id
    assert refused.value.reason == "TOKEN_EXPIRED"


def test_the_oms_credential_is_checked_at_the_engines_time(engine, clock):
    order, token = signed(clock)
    stale_credential = clock.time() - 120  # a credential lives 60 s
    with pytest.raises(TokenRejected) as refused:
        execute(engine, clock, order, token, credential_at=stale_credential)
    assert refused.value.reason == "CALLER_NOT_OMS"
    assert execute(engine, clock, order, token)  # the same order with a fresh credential


def test_an_executed_order_id_is_refused_while_a_token_for_it_could_verify_then_let_go(engine, clock):
    order, token = signed(clock)
    execute(engine, clock, order, token)
    clock.advance(TTL)
    again, again_token = order, core_ext.sign_token(KEYRING, order.token_body(), int(clock.time()))
    with pytest.raises(TokenReplayed):
        execute(engine, clock, dataclasses.replace(again), again_token)
    held = order.order_id in engine._executed
    clock.advance(TTL + 60 + 1)  # past the last token's lifetime and the margin kept after it
    other, other_token = signed(clock)
    execute(engine, clock, other, other_token)  # an execution lets the expired ids go

    assert held
    assert order.order_id not in engine._executed and other.order_id in engine._executed
