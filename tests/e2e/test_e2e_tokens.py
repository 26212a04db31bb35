"""Risk-token refusals at the OMS and at the Exchange service: the right status, the
right reason code, and nothing submitted or traded behind the refusal."""

from __future__ import annotations

import concurrent.futures
import time

import grpc
import pytest

from tessera.common.v1 import types_pb2 as pb
from tessera.exchange.v1 import exchange_pb2
from tessera.oms.v1 import oms_pb2
from tessera.risk.v1 import risk_pb2

import tessera_e2e as e2e

UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
PERMISSION_DENIED = grpc.StatusCode.PERMISSION_DENIED


def submit(stack, request):
    return lambda: stack.oms.SubmitOrder(request, timeout=e2e.RPC_TIMEOUT)


def execute(stack, order, token):
    request = exchange_pb2.ExecuteOrderRequest(order=order, risk_token=token)
    return lambda: stack.exchange.ExecuteOrder(request, timeout=e2e.RPC_TIMEOUT)


def test_quantity_changed_after_signing(stack, store):
    approved = e2e.approve(stack, quantity="0.01")
    e2e.expect_error(submit(stack, approved.request(quantity="0.02")), PERMISSION_DENIED, "TOKEN_FIELDS_CHANGED")
    store.assert_untouched(approved.order.order_id)


@pytest.mark.parametrize(
    "field, value",
    [("side", pb.SIDE_SELL), ("symbol", "ETHUSDT"), ("account", "someone-else"), ("order_type", pb.ORDER_TYPE_LIMIT)],
)
def test_other_fields_changed_after_signing(stack, store, field, value):
    approved = e2e.approve(stack)
    changes = {field: value}
    if field == "order_type":
        changes["price"] = "60000"
    e2e.expect_error(submit(stack, approved.request(**changes)), PERMISSION_DENIED, "TOKEN_FIELDS_CHANGED")
    store.assert_untouched(approved.order.order_id)


def test_refused_attempt_leaves_the_token_usable(stack, store):
    approved = e2e.approve(stack)
    e2e.expect_error(submit(stack, approved.request(quantity="5")), PERMISSION_DENIED, "TOKEN_FIELDS_CHANGED")
    answer = submit(stack, approved.request())()
    assert answer.order.status == pb.ORDER_STATUS_FILLED
    assert len(store.trades(approved.order.order_id)) == 1


def test_expired_token(stack, store):
    approved = e2e.approve(stack)
    token = e2e.sign(approved.order, int(time.time()) - 400)
    request = oms_pb2.SubmitOrderRequest(order=approved.order, risk_token=token)
    e2e.expect_error(submit(stack, request), UNAUTHENTICATED, "TOKEN_EXPIRED")
    store.assert_untouched(approved.order.order_id)


def test_token_from_the_future(stack, store):
    approved = e2e.approve(stack)
    token = e2e.sign(approved.order, int(time.time()) + 120)
    request = oms_pb2.SubmitOrderRequest(order=approved.order, risk_token=token)
    e2e.expect_error(submit(stack, request), UNAUTHENTICATED, "TOKEN_NOT_YET_VALID")
    store.assert_untouched(approved.order.order_id)


def test_token_signed_with_an_unknown_key(stack, store):
    approved = e2e.approve(stack)
    token = e2e.sign(approved.order, int(time.time()), key_id="not-our-key",
                     secret="another-secret-of-at-least-32-bytes-long")
    request = oms_pb2.SubmitOrderRequest(order=approved.order, risk_token=token)
    e2e.expect_error(submit(stack, request), UNAUTHENTICATED, "TOKEN_UNKNOWN_KEY")
    store.assert_untouched(approved.order.order_id)


def test_token_with_a_tampered_signature_at_the_oms(stack, store):
    approved = e2e.approve(stack)
    request = oms_pb2.SubmitOrderRequest(order=approved.order, risk_token=e2e.tamper_signature(approved.token))
    e2e.expect_error(submit(stack, request), UNAUTHENTICATED, "TOKEN_BAD_SIGNATURE")
    store.assert_untouched(approved.order.order_id)


def test_garbage_token(stack, store):
    approved = e2e.approve(stack)
    request = oms_pb2.SubmitOrderRequest(order=approved.order, risk_token="not-a-token")
    e2e.expect_error(submit(stack, request), UNAUTHENTICATED, "TOKEN_MALFORMED")
    store.assert_untouched(approved.order.order_id)


def test_a_repeated_submission_is_answered_with_the_order_replayed(stack, store):
    approved = e2e.approve(stack)
    first = submit(stack, approved.request())()
    assert first.order.status == pb.ORDER_STATUS_FILLED and not first.replayed
    again = submit(stack, approved.request())()  # the client lost the first answer
    assert again.replayed and again.order == first.order
    assert [t.trade_id for t in again.trades] == [t.trade_id for t in first.trades]
    order_id = approved.order.order_id
    assert store.status(order_id) == "FILLED"
    assert store.statuses(order_id) == ["PENDING", "APPROVED", "SUBMITTED", "FILLED"]
    assert len(store.trades(order_id)) == 1


def test_another_token_of_a_submitted_order_is_refused_naming_the_order_and_its_status(stack, store):
    account = e2e.new_account()
    intent = e2e.intent(account=account, client_order_id=f"twice-{account}")
    first = stack.risk.ValidateOrder(risk_pb2.ValidateOrderRequest(order=intent), timeout=e2e.RPC_TIMEOUT)
    second = stack.risk.ValidateOrder(risk_pb2.ValidateOrderRequest(order=intent), timeout=e2e.RPC_TIMEOUT)
    assert first.risk_token and second.risk_token and first.risk_token != second.risk_token
    submit(stack, oms_pb2.SubmitOrderRequest(order=first.order, risk_token=first.risk_token))()
    error = e2e.expect_error(submit(stack, oms_pb2.SubmitOrderRequest(order=second.order, risk_token=second.risk_token)),
                             PERMISSION_DENIED, "TOKEN_ALREADY_USED")
    info = e2e.error_details(error)["ErrorInfo"]
    assert dict(info.metadata) == {"order_id": first.order.order_id, "status": "FILLED"}
    assert "RetryInfo" not in e2e.error_details(error)
    assert store.statuses(first.order.order_id) == ["PENDING", "APPROVED", "SUBMITTED", "FILLED"]


def test_no_token_at_the_oms(stack, store):
    approved = e2e.approve(stack)
    request = oms_pb2.SubmitOrderRequest(order=approved.order, risk_token="")
    e2e.expect_error(submit(stack, request), UNAUTHENTICATED, "TOKEN_MISSING")
    store.assert_untouched(approved.order.order_id)


def test_tampered_token_straight_to_the_exchange(stack, store):
    approved = e2e.approve(stack)
    e2e.expect_error(execute(stack, approved.order, e2e.tamper_signature(approved.token)),
                     UNAUTHENTICATED, "TOKEN_BAD_SIGNATURE")
    store.assert_untouched(approved.order.order_id)
    reports = e2e.execution_reports(stack, seconds=0.5)
    assert [r for r in reports if r.order_id == approved.order.order_id] == []


def test_no_token_straight_to_the_exchange(stack, store):
    approved = e2e.approve(stack)
    e2e.expect_error(execute(stack, approved.order, ""), UNAUTHENTICATED, "TOKEN_MISSING")
    store.assert_untouched(approved.order.order_id)
    reports = e2e.execution_reports(stack, seconds=0.5)
    assert [r for r in reports if r.order_id == approved.order.order_id] == []


def test_changed_quantity_straight_to_the_exchange(stack, store):
    approved = e2e.approve(stack, quantity="0.01")
    changed = pb.Order()
    changed.CopyFrom(approved.order)
    changed.quantity = "1"
    e2e.expect_error(execute(stack, changed, approved.token), PERMISSION_DENIED, "TOKEN_FIELDS_CHANGED")
    store.assert_untouched(approved.order.order_id)


def test_concurrent_repeats_submit_exactly_once_and_each_is_answered(stack, store):
    approved = e2e.approve(stack)
    request = approved.request()

    def attempt():
        try:
            return stack.oms.SubmitOrder(request, timeout=e2e.RPC_TIMEOUT)
        except grpc.RpcError as error:
            return error

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(lambda _: attempt(), range(8)))
    assert not [o for o in outcomes if isinstance(o, grpc.RpcError)], outcomes
    firsts = [o for o in outcomes if not o.replayed]
    assert len(firsts) == 1, outcomes  # one submission went through; the others are answered with it
    assert firsts[0].order.status == pb.ORDER_STATUS_FILLED
    # A repeat answers the order as it was when it asked: the first still under way, or done.
    assert {o.order.status for o in outcomes if o.replayed} <= {pb.ORDER_STATUS_SUBMITTED, pb.ORDER_STATUS_FILLED}
    order_id = approved.order.order_id
    assert store.statuses(order_id) == ["PENDING", "APPROVED", "SUBMITTED", "FILLED"]
    assert len(store.trades(order_id)) == 1


def test_valid_token_straight_to_the_exchange_is_refused(stack, store):
    """A client holds risk tokens: one alone must not reach a venue behind the OMS. The
    Exchange service serves only calls the OMS signed (CALLER_NOT_OMS otherwise)."""
    approved = e2e.approve(stack)
    e2e.expect_error(execute(stack, approved.order, approved.token), PERMISSION_DENIED, "CALLER_NOT_OMS")
    store.assert_untouched(approved.order.order_id)
    assert [r for r in e2e.execution_reports(stack, seconds=0.5) if r.order_id == approved.order.order_id] == []
    # The refused attempt did not burn the token: the OMS still submits the order.
    answer = submit(stack, approved.request())()
    assert answer.order.status == pb.ORDER_STATUS_FILLED
    assert len(store.trades(approved.order.order_id)) == 1


def test_execution_report_stream_is_for_the_oms_only(stack):
    stream = stack.exchange.StreamExecutionReports(
        exchange_pb2.StreamExecutionReportsRequest(after_sequence=0), timeout=5
    )
    e2e.expect_error(lambda: next(iter(stream)), PERMISSION_DENIED, "CALLER_NOT_OMS")


# -- the fields of format v2: each one bound on the wire ------------------------------------------
TRAILING = {"order_type": pb.ORDER_TYPE_TRAILING_STOP_MARKET, "side": pb.SIDE_SELL, "callback_rate": "1",
            "activation_price": "66000", "working_type": pb.WORKING_TYPE_MARK_PRICE}
CLOSING = {"order_type": pb.ORDER_TYPE_TAKE_PROFIT_MARKET, "side": pb.SIDE_SELL, "stop_price": "66000",
           "quantity": "", "close_position": True, "price_protect": True}
QUOTED = {"market_type": pb.MARKET_TYPE_SPOT, "quantity": "", "quote_order_qty": "100"}


@pytest.mark.parametrize(
    "approved_as, changes",
    [(TRAILING, {"callback_rate": "2"}), (TRAILING, {"activation_price": "66500"}),
     (TRAILING, {"activation_price": ""}), (TRAILING, {"working_type": pb.WORKING_TYPE_CONTRACT_PRICE}),
     (TRAILING, {"working_type": 0}), (CLOSING, {"close_position": False, "quantity": "0.01"}),
     (CLOSING, {"price_protect": False}), (QUOTED, {"quote_order_qty": "1000"}),
     (QUOTED, {"quote_order_qty": "", "quantity": "0.03"})],
    ids=["callback-rate", "activation-price", "activation-price-dropped", "working-type",
         "working-type-unspecified", "close-position-for-a-quantity", "price-protect-cleared", "quote-amount",
         "quote-amount-for-a-quantity"],
)
def test_each_field_of_the_new_order_types_changed_after_signing(stack, store, approved_as, changes):
    approved = e2e.approve(stack, **approved_as)
    e2e.expect_error(submit(stack, approved.request(**changes)), PERMISSION_DENIED, "TOKEN_FIELDS_CHANGED")
    store.assert_untouched(approved.order.order_id)
    # At the Exchange service too (it checks the token again, from the wire).
    changed = approved.request(**changes).order
    e2e.expect_error(execute(stack, changed, approved.token), PERMISSION_DENIED, "TOKEN_FIELDS_CHANGED")
