"""ReplaceOrder across the three services, in paper, shadow and live mode (the venue
simulator): ValidateReplacement at Risk, then ReplaceOrder at the OMS cancels the working
order at the venue and sends the replacement."""

from __future__ import annotations

from decimal import Decimal

import grpc
import pytest

from tessera.common.v1 import types_pb2 as pb
from tessera.oms.v1 import oms_pb2
from tessera.risk.v1 import risk_pb2

import tessera_e2e as e2e
import venue_harness as vh


def working(stack, **fields):
    """An order resting at the venue (ACCEPTED)."""
    approved = e2e.approve(stack, order_type=pb.ORDER_TYPE_LIMIT, **fields)
    answer = stack.oms.SubmitOrder(approved.request(), timeout=e2e.RPC_TIMEOUT)
    assert answer.order.status == pb.ORDER_STATUS_ACCEPTED, answer.order
    return answer.order


def validate_replacement(stack, order_id, **fields):
    return stack.risk.ValidateReplacement(risk_pb2.ValidateReplacementRequest(order_id=order_id, **fields),
                                          timeout=e2e.RPC_TIMEOUT)


def replace(stack, decision):
    return stack.oms.ReplaceOrder(oms_pb2.ReplaceOrderRequest(order=decision.order, risk_token=decision.risk_token),
                                  timeout=30)


def check_replaced(store, old, new_id):
    assert store.statuses(old.order_id)[-3:] == ["ACCEPTED", "PENDING_CANCEL", "CANCELLED"]
    assert store.order(old.order_id).replaced_by_order_id == new_id
    assert store.statuses(new_id)[:3] == ["PENDING", "APPROVED", "SUBMITTED"]


# -- paper ----------------------------------------------------------------------------------------
def test_paper_a_working_order_is_replaced_and_a_repeat_is_answered_replayed(stack, store):
    old = working(stack, quantity="0.01", price="60000")

    decision = validate_replacement(stack, old.order_id, quantity="0.02", price="61000")
    answer = replace(stack, decision)
    again = replace(stack, decision)

    assert decision.order.status == pb.ORDER_STATUS_APPROVED and decision.risk_token
    assert decision.order.replaces_order_id == old.order_id
    assert (decision.order.quantity, decision.order.price) == ("0.02", "61000")
    assert answer.order.status == pb.ORDER_STATUS_ACCEPTED and not answer.replayed
    assert answer.replaced_order.status == pb.ORDER_STATUS_CANCELLED
    assert answer.replaced_order.replaced_by_order_id == decision.order.order_id
    assert again.replayed and again.order.order_id == answer.order.order_id
    check_replaced(store, old, decision.order.order_id)
    assert store.statuses(decision.order.order_id) == ["PENDING", "APPROVED", "SUBMITTED", "ACCEPTED"]


def test_paper_a_replacement_is_refused_by_submit_order_and_a_filled_order_by_risk(stack, store):
    old = working(stack, quantity="0.01", price="60000")
    decision = validate_replacement(stack, old.order_id, price="60500")

    error = e2e.expect_error(
        lambda: stack.oms.SubmitOrder(oms_pb2.SubmitOrderRequest(order=decision.order, risk_token=decision.risk_token),
                                      timeout=e2e.RPC_TIMEOUT),
        grpc.StatusCode.FAILED_PRECONDITION, "REPLACEMENT_ORDER")
    assert dict(e2e.error_details(error)["ErrorInfo"].metadata) == {
        "order_id": decision.order.order_id, "replaces_order_id": old.order_id}
    filled = e2e.approve(stack)
    stack.oms.SubmitOrder(filled.request(), timeout=e2e.RPC_TIMEOUT)
    error = e2e.expect_error(lambda: validate_replacement(stack, filled.order.order_id, quantity="0.02"),
                             grpc.StatusCode.FAILED_PRECONDITION, "ORDER_NOT_OPEN")
    assert dict(e2e.error_details(error)["ErrorInfo"].metadata) == {"order_id": filled.order.order_id,
                                                                    "status": "FILLED"}
    error = e2e.expect_error(lambda: validate_replacement(stack, old.order_id, quantity="0", price="abc"),
                             grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")
    assert [(v.field, v.reason) for v in e2e.error_details(error)["BadRequest"].field_violations] == [
        ("quantity", "NOT_POSITIVE"), ("price", "INVALID_FORMAT")]


# -- live -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    running = vh.VenueSim(tmp_path_factory.mktemp("replace-sim"), "--balance", "50000")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def live(sim, tmp_path_factory):
    url = e2e.sqlite_url(tmp_path_factory.mktemp("replace-live-db") / "tessera.db")
    running = e2e.start_stack(url, tmp_path_factory.mktemp("replace-live-logs"), **vh.venue_env(sim, "live"))
    view = e2e.StoreView(url)
    vh.set_up_symbol(running, "BTCUSDT")
    yield running, view
    view.close()
    running.stop()


def test_live_the_venue_cancels_the_old_order_then_works_the_replacement_which_fills(live, sim):
    stack, store = live
    old = working(stack, symbol="BTCUSDT", quantity="0.01", price="60000")

    decision = validate_replacement(stack, old.order_id, quantity="0.03", price="61000")
    answer = replace(stack, decision)

    assert answer.order.status == pb.ORDER_STATUS_ACCEPTED, answer.order
    assert answer.replaced_order.status == pb.ORDER_STATUS_CANCELLED
    (venue_old,) = sim.orders(old.client_order_id)
    (venue_new,) = sim.orders(decision.order.client_order_id)
    assert venue_old["status"] == "CANCELED"
    assert (venue_new["status"], Decimal(venue_new["price"]), Decimal(venue_new["origQty"])) == (
        "NEW", Decimal("61000"), Decimal("0.03"))
    check_replaced(store, old, decision.order.order_id)
    sim.set_price("BTCUSDT", "60900")
    try:
        assert e2e.wait_until(lambda: store.status(decision.order.order_id) == "FILLED", 10)
    finally:
        sim.set_price("BTCUSDT", str(e2e.PRICES["BTCUSDT"]))
    assert sum(t.quantity for t in store.trades(decision.order.order_id)) == Decimal("0.03")
    assert store.trades(old.order_id) == []


# -- shadow ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shadow(tmp_path_factory):
    running_sim = vh.VenueSim(tmp_path_factory.mktemp("replace-shadow-sim"))
    running_sim.control("POST", "/_sim/forbid_orders", {"forbid": True})
    url = e2e.sqlite_url(tmp_path_factory.mktemp("replace-shadow-db") / "tessera.db")
    running = e2e.start_stack(url, tmp_path_factory.mktemp("replace-shadow-logs"), **vh.venue_env(running_sim, "shadow"))
    view = e2e.StoreView(url)
    yield running, view, running_sim
    view.close()
    running.stop()
    running_sim.stop()


def test_shadow_a_replace_works_on_the_venues_book_and_never_calls_an_order_endpoint(shadow):
    stack, store, sim = shadow
    old = working(stack, symbol="SOLUSDT", quantity="1", price="140")

    decision = validate_replacement(stack, old.order_id, quantity="2", price="141")
    answer = replace(stack, decision)

    assert answer.order.status == pb.ORDER_STATUS_ACCEPTED
    assert answer.replaced_order.status == pb.ORDER_STATUS_CANCELLED
    check_replaced(store, old, decision.order.order_id)
    assert sim.control("GET", "/_sim/violations") == []
    assert sim.orders() == []
    assert {(r["method"], r["path"]) for r in sim.requests()} <= {("GET", "/fapi/v1/depth")}
