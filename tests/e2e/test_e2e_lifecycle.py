"""The order lifecycle over the real services: order types, cancels, expiry, idempotency,
the kill switch and order-manager batches."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import time
from decimal import Decimal
from typing import Any, Iterator

import grpc
import pytest

from services.cli.stack import Stack
from tessera.common.v1 import types_pb2 as pb
from tessera.oms.v1 import oms_pb2
from tessera.risk.v1 import risk_pb2
from tessera_e2e import (
    RPC_TIMEOUT,
    TRADING_STATE_BOUND,
    StoreView,
    approve,
    expect_error,
    intent,
    new_account,
    run_cli,
    wait_until,
)

pytestmark = pytest.mark.e2e

BELOW_MARKET = "60000"  # BTCUSDT trades at 65000: a BUY limit here rests
ABOVE_MARKET = "70000"


def submit(stack: Stack, **fields) -> pb.Order:  # type: ignore[no-untyped-def]
    approved = approve(stack, **fields)
    return stack.oms.SubmitOrder(approved.request(), timeout=RPC_TIMEOUT).order


def get(stack: Stack, order_id: str) -> oms_pb2.GetOrderResponse:
    return stack.oms.GetOrder(oms_pb2.GetOrderRequest(order_id=order_id), timeout=RPC_TIMEOUT)


def path(store: StoreView, order_id: str) -> list[str]:
    return store.statuses(order_id)


@contextlib.contextmanager
def restoring_active(stack: Stack) -> Iterator[None]:
    """The session's stack is shared: whatever a test halts, it sets ACTIVE again."""
    try:
        yield
    finally:
        stack.risk.SetTradingState(
            risk_pb2.SetTradingStateRequest(state=pb.TRADING_STATE_ACTIVE, operator="e2e", reason="test cleanup"),
            timeout=RPC_TIMEOUT,
        )


# -- order types and time in force ------------------------------------------------------------------
def test_a_limit_order_below_the_market_rests_accepted(stack, store):
    order = submit(stack, order_type=pb.ORDER_TYPE_LIMIT, price=BELOW_MARKET)

    assert order.status == pb.ORDER_STATUS_ACCEPTED
    assert path(store, order.order_id) == ["PENDING", "APPROVED", "SUBMITTED", "ACCEPTED"]
    assert store.trades(order.order_id) == []


@pytest.mark.parametrize("tif", [pb.TIME_IN_FORCE_IOC, pb.TIME_IN_FORCE_FOK])
def test_an_ioc_or_fok_order_that_cannot_trade_expires(stack, store, tif):
    order = submit(stack, order_type=pb.ORDER_TYPE_LIMIT, price=BELOW_MARKET, time_in_force=tif)

    assert order.status == pb.ORDER_STATUS_EXPIRED
    assert path(store, order.order_id) == ["PENDING", "APPROVED", "SUBMITTED", "EXPIRED"]


def test_a_marketable_limit_order_fills_at_the_market_not_worse_than_its_limit(stack, store):
    order = submit(stack, order_type=pb.ORDER_TYPE_LIMIT, price=ABOVE_MARKET, time_in_force=pb.TIME_IN_FORCE_IOC)

    assert order.status == pb.ORDER_STATUS_FILLED
    assert order.average_fill_price == "65000"


def test_a_stop_order_not_triggered_rests_and_a_triggered_one_fills(stack, store):
    resting = submit(stack, order_type=pb.ORDER_TYPE_STOP_MARKET, stop_price=ABOVE_MARKET)
    triggered = submit(stack, order_type=pb.ORDER_TYPE_STOP_MARKET, stop_price=BELOW_MARKET)

    assert resting.status == pb.ORDER_STATUS_ACCEPTED
    assert triggered.status == pb.ORDER_STATUS_FILLED


def test_take_profit_and_trailing_stop_orders_rest_or_trigger_as_the_venue_triggers_them(stack, store):
    resting_tp = submit(stack, order_type=pb.ORDER_TYPE_TAKE_PROFIT_MARKET, stop_price=BELOW_MARKET)  # BUY: falls to
    triggered_tp = submit(stack, order_type=pb.ORDER_TYPE_TAKE_PROFIT_MARKET, stop_price=ABOVE_MARKET)
    limit_tp = submit(stack, order_type=pb.ORDER_TYPE_TAKE_PROFIT, side=pb.SIDE_SELL, stop_price=BELOW_MARKET,
                      price="64000", time_in_force=pb.TIME_IN_FORCE_IOC, price_protect=True)
    trailing = submit(stack, order_type=pb.ORDER_TYPE_TRAILING_STOP_MARKET, callback_rate="0.5",
                      activation_price="64000", working_type=pb.WORKING_TYPE_MARK_PRICE)

    assert resting_tp.status == pb.ORDER_STATUS_ACCEPTED
    assert triggered_tp.status == pb.ORDER_STATUS_FILLED
    assert limit_tp.status == pb.ORDER_STATUS_FILLED and limit_tp.price_protect
    assert trailing.status == pb.ORDER_STATUS_ACCEPTED
    assert (trailing.callback_rate, trailing.activation_price, trailing.working_type) == (
        "0.5", "64000", pb.WORKING_TYPE_MARK_PRICE)
    stored = store.order(trailing.order_id)
    assert (stored.callback_rate, stored.activation_price, stored.working_type.value) == (
        Decimal("0.5"), Decimal(64000), "MARK_PRICE")


def test_a_close_position_order_closes_what_the_account_holds_and_ends_filled(stack, store):
    account = new_account()
    opened = submit(stack, account=account, quantity="0.03")
    closing = submit(stack, account=account, order_type=pb.ORDER_TYPE_TAKE_PROFIT_MARKET, side=pb.SIDE_SELL,
                     stop_price=BELOW_MARKET, quantity="", close_position=True)

    assert opened.status == pb.ORDER_STATUS_FILLED
    assert (closing.status, closing.quantity, closing.filled_quantity, closing.close_position) == (
        pb.ORDER_STATUS_FILLED, "", "0.03", True)
    assert store.order(closing.order_id).quantity is None


def test_a_spot_market_buy_of_a_quote_amount_fills_what_the_amount_buys(stack, store):
    order = submit(stack, market_type=pb.MARKET_TYPE_SPOT, symbol="ETHUSDT", quantity="", quote_order_qty="320")

    assert (order.status, order.quantity, order.quote_order_qty) == (pb.ORDER_STATUS_FILLED, "", "320")
    assert Decimal(order.filled_quantity) == Decimal("0.1") and Decimal(order.average_fill_price) == 3200
    assert [str(t.quantity) for t in store.trades(order.order_id)] == ["0.1"]


def test_a_post_only_order_that_would_take_is_rejected_by_the_venue(stack, store):
    order = submit(stack, order_type=pb.ORDER_TYPE_LIMIT, price=ABOVE_MARKET, post_only=True)

    assert order.status == pb.ORDER_STATUS_REJECTED
    assert path(store, order.order_id)[-1] == "REJECTED"
    assert store.trades(order.order_id) == []


# -- cancels --------------------------------------------------------------------------------------------
def test_cancel_of_a_resting_order_goes_through_pending_cancel(stack, store):
    order = submit(stack, order_type=pb.ORDER_TYPE_LIMIT, price=BELOW_MARKET)

    cancelled = stack.oms.CancelOrder(oms_pb2.CancelOrderRequest(order_id=order.order_id), timeout=RPC_TIMEOUT).order

    assert cancelled.status == pb.ORDER_STATUS_CANCELLED
    assert path(store, order.order_id)[-3:] == ["ACCEPTED", "PENDING_CANCEL", "CANCELLED"]


def test_cancel_by_client_order_id_of_an_approved_order_never_reaches_the_venue(stack, store):
    approved = approve(stack)
    cancelled = stack.oms.CancelOrder(
        oms_pb2.CancelOrderRequest(account=approved.order.account, client_order_id=approved.order.client_order_id),
        timeout=RPC_TIMEOUT,
    ).order

    assert cancelled.status == pb.ORDER_STATUS_CANCELLED
    assert path(store, approved.order.order_id) == ["PENDING", "APPROVED", "CANCELLED"]
    expect_error(lambda: stack.oms.SubmitOrder(approved.request(), timeout=RPC_TIMEOUT),
                 grpc.StatusCode.FAILED_PRECONDITION, "ORDER_NOT_APPROVED")


def test_cancel_of_a_filled_order_is_a_failed_precondition(stack, store):
    order = submit(stack)
    expect_error(
        lambda: stack.oms.CancelOrder(oms_pb2.CancelOrderRequest(order_id=order.order_id), timeout=RPC_TIMEOUT),
        grpc.StatusCode.FAILED_PRECONDITION,
        "ORDER_NOT_OPEN",
    )
    assert store.status(order.order_id) == "FILLED"


def test_cancel_all_for_a_symbol_cancels_that_symbols_open_orders_only(stack, store):
    account = new_account()
    btc = [submit(stack, account=account, order_type=pb.ORDER_TYPE_LIMIT, price=BELOW_MARKET) for _ in range(2)]
    eth = submit(stack, account=account, symbol="ETHUSDT", order_type=pb.ORDER_TYPE_LIMIT, price="3000")

    answer = stack.oms.CancelAllOrders(
        oms_pb2.CancelAllOrdersRequest(symbol="BTCUSDT", account=account), timeout=RPC_TIMEOUT
    )

    assert sorted(o.order_id for o in answer.orders) == sorted(o.order_id for o in btc)
    assert {store.status(o.order_id) for o in btc} == {"CANCELLED"}
    assert store.status(eth.order_id) == "ACCEPTED"


# -- expiry ---------------------------------------------------------------------------------------
def test_a_resting_gtd_order_expires_at_its_time(stack, store):
    expire_at = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=2)
    request = intent(order_type=pb.ORDER_TYPE_LIMIT, price=BELOW_MARKET, time_in_force=pb.TIME_IN_FORCE_GTD)
    request.expire_time.FromDatetime(expire_at)
    answer = stack.risk.ValidateOrder(risk_pb2.ValidateOrderRequest(order=request), timeout=RPC_TIMEOUT)
    order = stack.oms.SubmitOrder(
        oms_pb2.SubmitOrderRequest(order=answer.order, risk_token=answer.risk_token), timeout=RPC_TIMEOUT
    ).order
    assert order.status == pb.ORDER_STATUS_ACCEPTED

    assert wait_until(lambda: store.status(order.order_id) == "EXPIRED", timeout=8.0), path(store, order.order_id)
    assert path(store, order.order_id)[-2:] == ["ACCEPTED", "EXPIRED"]


# -- idempotency ------------------------------------------------------------------------------------
def test_validating_the_same_order_again_returns_the_stored_one(stack, store):
    request = intent(client_order_id="same-order-1")
    first = stack.risk.ValidateOrder(risk_pb2.ValidateOrderRequest(order=request), timeout=RPC_TIMEOUT)
    again = stack.risk.ValidateOrder(risk_pb2.ValidateOrderRequest(order=request), timeout=RPC_TIMEOUT)

    assert again.order.order_id == first.order.order_id
    assert path(store, first.order.order_id) == ["PENDING", "APPROVED"]


def test_the_same_client_order_id_with_other_content_is_already_exists(stack, store):
    request = intent(client_order_id="same-order-2")
    first = stack.risk.ValidateOrder(risk_pb2.ValidateOrderRequest(order=request), timeout=RPC_TIMEOUT)
    changed = intent(client_order_id="same-order-2", account=request.account, quantity="0.02")

    expect_error(
        lambda: stack.risk.ValidateOrder(risk_pb2.ValidateOrderRequest(order=changed), timeout=RPC_TIMEOUT),
        grpc.StatusCode.ALREADY_EXISTS,
        "DUPLICATE_CLIENT_ORDER_ID",
    )
    assert first.order.quantity == "0.01"
    assert store.order(first.order.order_id).quantity == Decimal("0.01")


# -- the kill switch ------------------------------------------------------------------------------
def test_emergency_cancel_all_halts_cancels_and_only_set_trading_state_resumes(stack, store):
    with restoring_active(stack):
        resting = submit(stack, order_type=pb.ORDER_TYPE_LIMIT, price=BELOW_MARKET)
        halted = stack.oms.EmergencyCancelAll(
            oms_pb2.EmergencyCancelAllRequest(operator="alice", reason="venue incident"), timeout=RPC_TIMEOUT
        )
        assert halted.state == pb.TRADING_STATE_HALTED
        assert resting.order_id in [o.order_id for o in halted.orders]
        assert store.status(resting.order_id) == "CANCELLED"

        time.sleep(TRADING_STATE_BOUND)  # Risk obeys the switch the OMS set within this bound
        refused = stack.risk.ValidateOrder(risk_pb2.ValidateOrderRequest(order=intent()), timeout=RPC_TIMEOUT)
        assert refused.order.status == pb.ORDER_STATUS_REJECTED
        assert "TRADING_HALTED" in [v.code for v in refused.violations]

        for operator, reason in (("bob", ""), ("x" * 201, "resume")):  # no reason; a comment too long
            expect_error(
                lambda: stack.risk.SetTradingState(
                    risk_pb2.SetTradingStateRequest(state=pb.TRADING_STATE_ACTIVE, operator=operator, reason=reason),
                    timeout=RPC_TIMEOUT,
                ),
                grpc.StatusCode.INVALID_ARGUMENT,
            )
        state = stack.risk.GetTradingState(risk_pb2.GetTradingStateRequest(), timeout=RPC_TIMEOUT)
        assert state.state == pb.TRADING_STATE_HALTED  # latched

        resumed = stack.risk.SetTradingState(
            risk_pb2.SetTradingStateRequest(state=pb.TRADING_STATE_ACTIVE, operator="bob", reason="incident over"),
            timeout=RPC_TIMEOUT,
        )
        assert (resumed.state, resumed.previous_state) == (pb.TRADING_STATE_ACTIVE, pb.TRADING_STATE_HALTED)
        # Who acted is the caller's principal (the suite's token: "local"); the free text is a comment.
        state = stack.risk.GetTradingState(risk_pb2.GetTradingStateRequest(), timeout=RPC_TIMEOUT)
        assert (state.operator, state.reason) == ("local", "incident over (comment: bob)")
        with store.uow() as uow:
            history = uow.trading_state.history()
        assert [(h.to_state.value, h.operator, h.reason) for h in history[:2]] == [
            ("ACTIVE", "local", "incident over (comment: bob)"),
            ("HALTED", "local", "emergency cancel all: venue incident (comment: alice)")]
        assert submit(stack).status == pb.ORDER_STATUS_FILLED


def test_an_order_approved_before_a_halt_is_refused_at_submission(stack, store):
    with restoring_active(stack):
        approved = approve(stack)
        stack.risk.SetTradingState(
            risk_pb2.SetTradingStateRequest(state=pb.TRADING_STATE_HALTED, operator="carol", reason="drill"),
            timeout=RPC_TIMEOUT,
        )
        expect_error(lambda: stack.oms.SubmitOrder(approved.request(), timeout=RPC_TIMEOUT),
                     grpc.StatusCode.FAILED_PRECONDITION, "TRADING_HALTED")
        assert path(store, approved.order.order_id) == ["PENDING", "APPROVED"]


# -- order-manager batches ------------------------------------------------------------------------------
def create_manager(stack: Stack, identifier: str, account: str) -> oms_pb2.CreateOrderManagerResponse:
    return stack.oms.CreateOrderManager(
        oms_pb2.CreateOrderManagerRequest(unique_identifier=identifier, target_account_uid=account, status="created"),
        timeout=RPC_TIMEOUT,
    )


def test_create_order_manager_is_idempotent_and_another_account_is_a_conflict(stack):
    account = new_account()
    first = create_manager(stack, f"batch-{account}", account)
    again = create_manager(stack, f"batch-{account}", account)

    assert (first.created, again.created) == (True, False)
    assert again.order_manager.id == first.order_manager.id
    expect_error(lambda: create_manager(stack, f"batch-{account}", new_account()), grpc.StatusCode.ALREADY_EXISTS)


def test_batch_rpcs_answer_per_order_and_the_batch_follows_its_orders(stack, store):
    account = new_account()
    identifier = f"batch-{account}"
    create_manager(stack, identifier, account)
    intents = [
        intent(account=account, order_manager_id=identifier),
        intent(account=account, order_manager_id=identifier, symbol="ETHUSDT", quantity="0.5"),
        intent(account=account, order_manager_id=identifier, quantity="100"),  # over max notional
        intent(account=account, order_manager_id=identifier, quantity="-1"),  # malformed
    ]
    checked = stack.risk.ValidateOrders(risk_pb2.ValidateOrdersRequest(orders=intents), timeout=RPC_TIMEOUT)
    outcomes = [r.error.code or pb.OrderStatus.Name(r.order.status) for r in checked.results]
    assert outcomes == ["ORDER_STATUS_APPROVED", "ORDER_STATUS_APPROVED", "ORDER_STATUS_REJECTED", "INVALID_ARGUMENT"]
    assert "quantity" in checked.results[3].error.message

    approved = [r for r in checked.results if r.risk_token]
    submitted = stack.oms.SubmitOrders(
        oms_pb2.SubmitOrdersRequest(
            orders=[oms_pb2.SubmitOrderRequest(order=r.order, risk_token=r.risk_token) for r in approved]
            + [oms_pb2.SubmitOrderRequest(order=approved[0].order, risk_token=approved[0].risk_token)]
        ),
        timeout=RPC_TIMEOUT,
    )
    assert [r.order.status for r in submitted.results[:2]] == [pb.ORDER_STATUS_FILLED] * 2
    # The same order and token twice: sent once, the repeat answered as the first, replayed.
    assert (submitted.results[2].replayed, submitted.results[2].order.status) == (True, pb.ORDER_STATUS_FILLED)
    assert not submitted.results[0].replayed

    batch = stack.oms.GetOrderManager(oms_pb2.GetOrderManagerRequest(unique_identifier=identifier), timeout=RPC_TIMEOUT)
    assert batch.order_manager.status == "completed_with_errors"
    assert batch.order_manager.HasField("order_received_time") and batch.order_manager.HasField("execution_end")
    assert sorted(o.status for o in batch.orders) == sorted(
        [pb.ORDER_STATUS_FILLED, pb.ORDER_STATUS_FILLED, pb.ORDER_STATUS_REJECTED]
    )


def test_tessera_rebalance_runs_a_file_once_and_a_rerun_submits_nothing(stack, store, tmp_path):
    account = new_account()
    plan = tmp_path / "targets.json"
    plan.write_text(json.dumps({"orders": [
        {"symbol": "BTCUSDT", "side": "buy", "quantity": "0.02"},
        {"symbol": "ETHUSDT", "side": "sell", "quantity": "0.4"},
        {"symbol": "SOLUSDT", "side": "buy", "quantity": "3", "type": "limit", "price": "151"},
    ]}))
    args = ["rebalance", str(plan), "--account", account, "--id", f"rebalance-{account}",
            "--risk", stack.addresses["risk"], "--oms", stack.addresses["oms"]]

    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    assert "risk: 3/3" in first.stderr and "submit: 3/3" in first.stderr
    assert f"rebalance-{account}: completed" in first.stdout

    second = run_cli(*args)
    assert second.returncode == 0, second.stderr
    assert "exists: resuming" in second.stderr and "submit: 0/0" in second.stderr
    batch = stack.oms.GetOrderManager(
        oms_pb2.GetOrderManagerRequest(unique_identifier=f"rebalance-{account}"), timeout=RPC_TIMEOUT
    )
    assert len(batch.orders) == 3
    assert sum(len(store.trades(o.order_id)) for o in batch.orders) == 3


def test_tessera_rebalance_exit_status_tells_a_risk_rejection_from_one_on_submission(stack, tmp_path):
    """3 when Risk rejected an order of the file; 5 when Risk approved everything and an
    order ended REJECTED on submission (paper: a post-only BUY above the ask would take)."""
    def run(name: str, orders: list[dict[str, str]]) -> Any:
        account = new_account()
        plan = tmp_path / f"{name}.json"
        plan.write_text(json.dumps({"orders": orders}))
        return run_cli("rebalance", str(plan), "--account", account, "--id", f"{name}-{account}",
                       "--risk", stack.addresses["risk"], "--oms", stack.addresses["oms"])

    filled = {"symbol": "BTCUSDT", "side": "buy", "quantity": "0.01"}
    at_submission = run("venue", [filled, {"symbol": "BTCUSDT", "side": "buy", "quantity": "0.01", "type": "limit",
                                           "price": "65100", "post_only": "true"}])
    assert at_submission.returncode == 5, at_submission.stderr
    by_risk = run("risk", [filled, {"symbol": "BTCUSDT", "side": "buy", "quantity": "10"}])  # notional 650,000
    assert by_risk.returncode == 3, by_risk.stderr


def test_tessera_kill_switch_trips_reports_and_resets(stack, store):
    connection = ["--risk", stack.addresses["risk"], "--oms", stack.addresses["oms"]]
    with restoring_active(stack):
        resting = submit(stack, order_type=pb.ORDER_TYPE_LIMIT, price=BELOW_MARKET)

        refused = run_cli("kill-switch", "trip", *connection)
        assert refused.returncode == 2 and "--reason" in refused.stderr

        tripped = run_cli("kill-switch", "trip", "--operator", "dana", "--reason", "fat finger", *connection)
        assert tripped.returncode == 0, tripped.stderr
        assert "trading HALTED" in tripped.stdout and "fat finger" in tripped.stdout
        assert store.status(resting.order_id) == "CANCELLED"

        status = run_cli("kill-switch", "status", *connection)
        assert "HALTED" in status.stdout and "(comment: dana)" in status.stdout and "local" in status.stdout

        reset = run_cli("kill-switch", "reset", "--comment", "erin", "--reason", "all clear", *connection)
        assert reset.returncode == 0, reset.stderr
        assert "HALTED -> ACTIVE" in reset.stdout and "all clear (comment: erin)" in reset.stdout
