"""The request-weight budget and the backoff after a rate-limit answer."""

from __future__ import annotations

import pytest

from services.exchange.aster.errors import VenueRateLimited
from services.exchange.aster.transport import WeightGate


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_requests_within_the_budget_go_at_once_and_reserve_their_weight():
    gate = WeightGate(100, headroom=0.9, clock=Clock(1_000_020.0))

    assert [gate.wait_before(5) for _ in range(18)] == [0.0] * 18
    assert gate.used == 90


def test_a_request_that_would_pass_the_budget_waits_for_the_next_minute():
    clock = Clock(60 * 1000 + 45.0)
    gate = WeightGate(100, headroom=0.9, clock=clock)
    gate.observe({"X-MBX-USED-WEIGHT-1M": "88"})

    wait = gate.wait_before(5)

    assert 15.0 <= wait <= 15.1
    clock.now += wait
    assert gate.wait_before(5) == 0.0  # a new minute, a new budget


def test_the_header_can_only_raise_the_count_within_a_minute():
    gate = WeightGate(100, clock=Clock(120.0))
    gate.wait_before(10)
    gate.observe({"X-MBX-USED-WEIGHT-1M": "4"})
    assert gate.used == 10
    gate.observe({"X-MBX-USED-WEIGHT-1M": "40"})
    assert gate.used == 40


def test_after_a_block_nothing_goes_until_it_has_passed():
    clock = Clock(500.0)
    gate = WeightGate(100, clock=clock)
    gate.block(3, "VENUE_IP_BANNED")

    with pytest.raises(VenueRateLimited) as raised:
        gate.wait_before(1)

    assert raised.value.reason == "VENUE_IP_BANNED"
    assert 2.9 < raised.value.retry_after <= 3
    clock.now += 3.01
    assert gate.wait_before(1) == 0.0


def test_a_wait_longer_than_allowed_is_refused_instead():
    gate = WeightGate(10, headroom=1.0, max_wait=1.0, clock=Clock(30.0))
    gate.observe({"X-MBX-USED-WEIGHT-1M": "10"})

    with pytest.raises(VenueRateLimited):
        gate.wait_before(1)


def test_market_data_is_refused_past_its_share_of_the_budget_and_orders_still_go():
    clock = Clock(60 * 1000 + 30.0)
    gate = WeightGate(100, headroom=0.9, clock=clock)  # a budget of 90, market data up to 45
    assert [gate.wait_before(2, market_data=True) for _ in range(22)] == [0.0] * 22

    with pytest.raises(VenueRateLimited) as refused:
        gate.wait_before(2, market_data=True)

    assert refused.value.reason == "VENUE_RATE_LIMITED" and 30.0 <= refused.value.retry_after <= 30.1
    assert "kept for orders" in str(refused.value)
    assert gate.used == 44  # the refused request reserved nothing
    assert [gate.wait_before(1) for _ in range(46)] == [0.0] * 46  # the rest of the budget: orders
