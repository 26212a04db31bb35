"""Malformed orders get INVALID_ARGUMENT with a message naming the field, at Risk and at
the OMS, and leave nothing behind."""

from __future__ import annotations

import grpc
import pytest

from tessera.oms.v1 import oms_pb2
from tessera.risk.v1 import risk_pb2

import tessera_e2e as e2e

INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT

CASES = [
    pytest.param("quantity", {"quantity": ""}, id="missing-quantity"),
    pytest.param("quantity", {"quantity": "-1"}, id="negative-quantity"),
    pytest.param("quantity", {"quantity": "0"}, id="zero-quantity"),
    pytest.param("quantity", {"quantity": "abc"}, id="non-numeric-quantity"),
    pytest.param("quantity", {"quantity": "1e3"}, id="exponent-quantity"),
    pytest.param("quantity", {"quantity": "NaN"}, id="nan-quantity"),
    pytest.param("side", {"side": 99}, id="unknown-side"),
    pytest.param("side", {"side": 0}, id="unspecified-side"),
    pytest.param("order_type", {"order_type": 42}, id="unknown-order-type"),
    pytest.param("symbol", {"symbol": "X" * 10_000}, id="huge-symbol"),
    pytest.param("symbol", {"symbol": ""}, id="missing-symbol"),
    pytest.param("price", {"order_type": 2}, id="limit-without-price"),
]


def check_message(error: grpc.RpcError, field: str) -> None:
    message = error.details()
    assert field in message, f"the message should name {field!r}: {message!r}"
    assert len(message) < 1000, f"the message should not echo a huge input ({len(message)} characters)"


@pytest.mark.parametrize("field, changes", CASES)
def test_risk_validate_order(stack, field, changes):
    request = risk_pb2.ValidateOrderRequest(order=e2e.intent(**changes))
    error = e2e.expect_error(lambda: stack.risk.ValidateOrder(request, timeout=e2e.RPC_TIMEOUT), INVALID_ARGUMENT)
    check_message(error, field)


def test_risk_validate_order_without_an_order(stack):
    error = e2e.expect_error(
        lambda: stack.risk.ValidateOrder(risk_pb2.ValidateOrderRequest(), timeout=e2e.RPC_TIMEOUT), INVALID_ARGUMENT
    )
    check_message(error, "order")


@pytest.mark.parametrize("field, changes", CASES)
def test_oms_submit_order(stack, store, field, changes):
    approved = e2e.approve(stack)
    request = approved.request(**changes)
    error = e2e.expect_error(lambda: stack.oms.SubmitOrder(request, timeout=e2e.RPC_TIMEOUT), INVALID_ARGUMENT)
    check_message(error, field)
    store.assert_untouched(approved.order.order_id)


def test_oms_submit_order_without_an_order(stack):
    request = oms_pb2.SubmitOrderRequest(risk_token="v1.x.1.2.3.4")
    error = e2e.expect_error(lambda: stack.oms.SubmitOrder(request, timeout=e2e.RPC_TIMEOUT), INVALID_ARGUMENT)
    check_message(error, "order")


def test_oms_submit_order_with_a_bad_order_id(stack, store):
    approved = e2e.approve(stack)
    request = approved.request(order_id="not-a-uuid")
    error = e2e.expect_error(lambda: stack.oms.SubmitOrder(request, timeout=e2e.RPC_TIMEOUT), INVALID_ARGUMENT)
    check_message(error, "order_id")
    store.assert_untouched(approved.order.order_id)


def test_validate_order_reports_every_bad_field_at_once_with_a_reason_each(stack):
    # The fields a first-time client forgets together: one answer names them all.
    request = risk_pb2.ValidateOrderRequest(order=e2e.intent(market_type=0, venue="", quantity="-1", side=7))
    error = e2e.expect_error(lambda: stack.risk.ValidateOrder(request, timeout=e2e.RPC_TIMEOUT), INVALID_ARGUMENT,
                             "INVALID_ARGUMENT")
    found = e2e.error_details(error)
    violations = [(v.field, v.reason) for v in found["BadRequest"].field_violations]
    assert violations == [("order.market_type", "REQUIRED"), ("order.venue", "REQUIRED"),
                          ("order.side", "UNKNOWN_VALUE"), ("order.quantity", "NOT_POSITIVE")]
    assert dict(found["ErrorInfo"].metadata) == {"field": "order.market_type"}
    for field in ("market_type", "venue", "side", "quantity"):
        assert field in error.details()


def test_submit_order_names_every_bad_field_under_its_path(stack, store):
    approved = e2e.approve(stack)
    request = approved.request(quantity="abc", symbol="")
    error = e2e.expect_error(lambda: stack.oms.SubmitOrder(request, timeout=e2e.RPC_TIMEOUT), INVALID_ARGUMENT)
    violations = [(v.field, v.reason) for v in e2e.error_details(error)["BadRequest"].field_violations]
    assert violations == [("order.symbol", "REQUIRED"), ("order.quantity", "INVALID_FORMAT")]
    store.assert_untouched(approved.order.order_id)
