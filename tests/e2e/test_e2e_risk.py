"""Pre-trade risk over the real processes: the ledger of fills, REDUCING, HALTED, the daily
loss limit tripping the kill switch, and every violation of an order listed together.

These tests run their own stack (tight limits, its own SQLite file) so they can change
the global trading state; each test restores ACTIVE before it ends, and each uses fresh
accounts, since positions, the throttle and the daily loss are per account.
"""

from __future__ import annotations

import contextlib
import time
from decimal import Decimal
from typing import Any, Iterator

import grpc
import pytest

import tessera_e2e as e2e
from services.cli.stack import ServiceProcess, Stack
from tessera.common.v1 import types_pb2 as pb
from tessera.oms.v1 import oms_pb2
from tessera.risk.v1 import risk_pb2, risk_pb2_grpc

LIMITS_ENV = {
    "TESSERA_RISK_MAX_POSITION": "1000",  # 0.015 BTC at 65,000 is 975
    "TESSERA_RISK_DAILY_LOSS_LIMIT": "50",
    "TESSERA_RISK_ORDER_RATE_LIMIT": "8",
}
STATES = {pb.TRADING_STATE_ACTIVE: "ACTIVE", pb.TRADING_STATE_REDUCING: "REDUCING", pb.TRADING_STATE_HALTED: "HALTED"}


@pytest.fixture(scope="module")
def risk_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    return e2e.sqlite_url(tmp_path_factory.mktemp("risk-db") / "tessera.db")


@pytest.fixture(scope="module")
def risk_stack(risk_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = e2e.start_stack(risk_db, tmp_path_factory.mktemp("risk-logs"), **LIMITS_ENV)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def ledger(risk_stack: Stack, risk_db: str) -> Iterator[e2e.StoreView]:
    view = e2e.StoreView(risk_db)
    try:
        yield view
    finally:
        view.close()


def validate(risk: Any, **fields: Any) -> risk_pb2.ValidateOrderResponse:
    return risk.ValidateOrder(risk_pb2.ValidateOrderRequest(order=e2e.intent(**fields)), timeout=e2e.RPC_TIMEOUT)


def codes(answer: risk_pb2.ValidateOrderResponse) -> list[str]:
    assert answer.order.status == pb.ORDER_STATUS_REJECTED and not answer.risk_token
    assert list(answer.order.reject_reasons) == [v.code for v in answer.violations]
    return [v.code for v in answer.violations]


def filled(stack: Stack, **fields: Any) -> pb.Order:
    """Approve and submit a market order; insist the paper venue filled it, and wait until
    Risk's book holds the fill (it follows the store: within milliseconds, it writes the
    ledger entry once it applied it)."""
    approved = e2e.approve(stack, **fields)
    answer = stack.oms.SubmitOrder(approved.request(), timeout=e2e.RPC_TIMEOUT)
    assert answer.order.status == pb.ORDER_STATUS_FILLED, answer.order
    view = e2e.StoreView(stack.env["TESSERA_DATABASE_URL"])
    try:
        def in_ledger() -> bool:
            with view.uow() as uow:
                entries = {e.trade_id for e in uow.positions.entries(answer.order.account)}
            return {t.trade_id for t in answer.trades} <= entries

        assert e2e.wait_until(in_ledger, timeout=10), "Risk never applied the fill"
    finally:
        view.close()
    return answer.order


def set_state(stack: Stack, state: int, reason: str) -> None:
    stack.risk.SetTradingState(
        risk_pb2.SetTradingStateRequest(state=state, reason=reason), timeout=e2e.RPC_TIMEOUT
    )


def trading_state(risk: Any) -> risk_pb2.GetTradingStateResponse:
    return risk.GetTradingState(risk_pb2.GetTradingStateRequest(), timeout=e2e.RPC_TIMEOUT)


@contextlib.contextmanager
def restoring_active(stack: Stack) -> Iterator[None]:
    try:
        yield
    finally:
        set_state(stack, pb.TRADING_STATE_ACTIVE, "e2e: restore after the test")


def test_a_fill_moves_the_ledger_so_a_later_order_breaches_max_position(risk_stack, ledger):
    account = e2e.new_account()
    order = filled(risk_stack, account=account, quantity="0.015")

    with ledger.uow() as uow:
        position = uow.positions.get(account, "BTCUSDT")
    breach = validate(risk_stack.risk, account=account, quantity="0.01")  # 0.025 BTC: 1625 > 1000
    reducing = validate(risk_stack.risk, account=account, side=pb.SIDE_SELL, quantity="0.01")

    assert position.quantity == Decimal("0.015")
    assert position.average_entry_price == Decimal(order.average_fill_price)
    assert position.commission > 0
    assert codes(breach) == ["MAX_POSITION_EXCEEDED"]
    assert "would be 0.025" in breach.violations[0].message
    assert reducing.order.status == pb.ORDER_STATUS_APPROVED


def test_reducing_admits_a_reducing_order_and_refuses_opening_and_flipping_ones(risk_stack, ledger):
    account = e2e.new_account()
    filled(risk_stack, account=account, quantity="0.01")

    with restoring_active(risk_stack):
        set_state(risk_stack, pb.TRADING_STATE_REDUCING, "e2e: unwind only")
        state = trading_state(risk_stack.risk)
        reduced = filled(risk_stack, account=account, side=pb.SIDE_SELL, quantity="0.004")
        flipping = validate(risk_stack.risk, account=account, side=pb.SIDE_SELL, quantity="0.007")
        adding = validate(risk_stack.risk, account=account, side=pb.SIDE_BUY, quantity="0.001")
        opening = validate(risk_stack.risk, account=e2e.new_account(), quantity="0.001")
        cancelled = risk_stack.oms.CancelOrder(
            oms_pb2.CancelOrderRequest(order_id=e2e.approve(risk_stack, account=account, side=pb.SIDE_SELL,
                                                            quantity="0.001").order.order_id),
            timeout=e2e.RPC_TIMEOUT,
        )

    with ledger.uow() as uow:
        position = uow.positions.get(account, "BTCUSDT")
    # Who changed it: the caller's authenticated principal (the suite's token, "local").
    assert (STATES[state.state], state.operator, state.reason) == ("REDUCING", "local", "e2e: unwind only")
    assert reduced.side == pb.SIDE_SELL and position.quantity == Decimal("0.006")
    assert codes(flipping) == ["REDUCING_ONLY"] and "flip through zero" in flipping.violations[0].message
    assert codes(adding) == ["REDUCING_ONLY"] and "would add to the long" in adding.violations[0].message
    assert codes(opening) == ["REDUCING_ONLY"] and "holds no BTCUSDT position" in opening.violations[0].message
    assert cancelled.order.status == pb.ORDER_STATUS_CANCELLED  # cancels still pass


def test_halted_refuses_every_new_order_even_a_reducing_one(risk_stack):
    account = e2e.new_account()
    filled(risk_stack, account=account, quantity="0.01")

    with restoring_active(risk_stack):
        set_state(risk_stack, pb.TRADING_STATE_HALTED, "e2e: incident")
        state = trading_state(risk_stack.risk)
        opening = validate(risk_stack.risk, account=account, quantity="0.001")
        reducing = validate(risk_stack.risk, account=account, side=pb.SIDE_SELL, quantity="0.005")
    after = validate(risk_stack.risk, account=account, side=pb.SIDE_SELL, quantity="0.005")

    assert (STATES[state.state], state.reason) == ("HALTED", "e2e: incident")
    assert codes(opening) == ["TRADING_HALTED"]
    assert codes(reducing) == ["TRADING_HALTED"]
    assert after.order.status == pb.ORDER_STATUS_APPROVED


def test_a_daily_loss_breach_trips_the_kill_switch_for_every_replica(risk_stack, risk_db, ledger, tmp_path):
    """The market falls 10 %: a second Risk process on the same store, whose reference
    price source says so (as a live source would), finds the account's loss beyond the
    limit, rejects the order and halts trading; the first Risk process sees HALTED too."""
    account = e2e.new_account()
    filled(risk_stack, account=account, quantity="0.015")  # 975 at 65,000
    moved = e2e.base_env(**LIMITS_ENV, TESSERA_DATABASE_URL=risk_db, TESSERA_RISK_PORT="0",
                         TESSERA_PRICES="BTCUSDT=58500,ETHUSDT=3200,SOLUSDT=150")
    replica = ServiceProcess("risk", moved, tmp_path)
    replica.start()
    try:
        with restoring_active(risk_stack):
            with e2e.channel(replica.wait_ready(30)) as channel:
                falling_risk = risk_pb2_grpc.RiskServiceStub(channel)
                breach = validate(falling_risk, account=account, symbol="ETHUSDT", quantity="0.01")
                seen_by_replica = trading_state(falling_risk)
            seen_by_first = trading_state(risk_stack.risk)
            time.sleep(e2e.TRADING_STATE_BOUND)  # every replica obeys a change within this bound
            next_order = validate(risk_stack.risk, account=e2e.new_account(), quantity="0.001")
            with ledger.uow() as uow:
                (change, *_) = uow.trading_state.history()
    finally:
        replica.stop()

    assert codes(breach) == ["DAILY_LOSS_LIMIT"]
    assert "today's loss is 97.89" in breach.violations[0].message  # 0.015 x 6,500 + 0.39 commission
    for state in (seen_by_replica, seen_by_first):
        assert STATES[state.state] == "HALTED" and state.operator == "risk"
        assert state.reason.startswith("DAILY_LOSS_LIMIT: account " + account)
    assert codes(next_order) == ["TRADING_HALTED"]
    assert (change.from_state.value, change.to_state.value, change.operator) == ("ACTIVE", "HALTED", "risk")


def test_every_violation_of_an_order_is_listed_together(risk_stack, ledger):
    answer = validate(
        risk_stack.risk, order_type=pb.ORDER_TYPE_LIMIT, quantity="10", price="100000", leverage="50",
    )

    assert codes(answer) == [
        "MAX_NOTIONAL_EXCEEDED",  # 1,000,000 at its limit price
        "PRICE_BAND_EXCEEDED",  # 53.85 % above 65,000
        "MAX_POSITION_EXCEEDED",  # 650,000 at the reference
        "MAX_LEVERAGE_EXCEEDED",  # it asks for 50
    ]
    assert len({v.message for v in answer.violations}) == 4
    assert ledger.statuses(answer.order.order_id) == ["PENDING", "REJECTED"]
    assert ledger.order(answer.order.order_id).reject_reasons == [v.code for v in answer.violations]


def test_get_limits_reports_the_configured_controls(risk_stack):
    limits = risk_stack.risk.GetLimits(risk_pb2.GetLimitsRequest(), timeout=e2e.RPC_TIMEOUT).limits
    by_name = {(limit.name, limit.violation_code): limit.value for limit in limits}

    assert by_name[("max_position", "MAX_POSITION_EXCEEDED")] == "1000"
    assert by_name[("daily_loss_limit", "DAILY_LOSS_LIMIT")] == "50"
    assert by_name[("price_band", "PRICE_BAND_EXCEEDED")] == "0.1"
    assert ("trading_state", "REDUCING_ONLY") in by_name


def test_the_order_rate_throttle_counts_an_accounts_orders(risk_stack):
    account = e2e.new_account()
    answers = [validate(risk_stack.risk, account=account, quantity="0.0001") for _ in range(9)]

    assert [a.order.status for a in answers[:8]] == [pb.ORDER_STATUS_APPROVED] * 8
    assert codes(answers[8]) == ["ORDER_RATE_EXCEEDED"]
