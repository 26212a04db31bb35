"""The happy path through Risk -> OMS -> Exchange, and a risk rejection, on SQLite."""

from __future__ import annotations

from decimal import Decimal

import grpc

from tessera.common.v1 import types_pb2 as pb
from tessera.oms.v1 import oms_pb2
from tessera.risk.v1 import risk_pb2

import tessera_e2e as e2e


def test_market_order_is_filled_and_stored(stack, store):
    e2e.check_happy_path(stack, store)


def test_oversized_order_is_rejected_not_an_error(stack, store):
    answer = stack.risk.ValidateOrder(
        risk_pb2.ValidateOrderRequest(order=e2e.intent(quantity="10")), timeout=e2e.RPC_TIMEOUT
    )
    assert answer.order.status == pb.ORDER_STATUS_REJECTED
    assert answer.risk_token == ""
    assert "MAX_NOTIONAL_EXCEEDED" in [v.code for v in answer.violations]
    assert "MAX_NOTIONAL_EXCEEDED" in answer.order.reject_reasons
    assert store.status(answer.order.order_id) == "REJECTED"
    assert store.statuses(answer.order.order_id) == ["PENDING", "REJECTED"]
    # A rejected order cannot be submitted: there is no token to present.
    e2e.expect_error(
        lambda: stack.oms.SubmitOrder(oms_pb2.SubmitOrderRequest(order=answer.order), timeout=e2e.RPC_TIMEOUT),
        grpc.StatusCode.UNAUTHENTICATED,
        "TOKEN_MISSING",
    )
    assert store.trades(answer.order.order_id) == []


def test_limit_order_is_stored_with_its_price(stack, store):
    approved = e2e.approve(stack, symbol="ETHUSDT", side=pb.SIDE_SELL, order_type=pb.ORDER_TYPE_LIMIT,
                           quantity="1.50", price="3100")
    assert approved.order.quantity == "1.5"  # decimals are normalised
    answer = stack.oms.SubmitOrder(
        oms_pb2.SubmitOrderRequest(order=approved.order, risk_token=approved.token), timeout=e2e.RPC_TIMEOUT
    )
    # A marketable paper limit order (sell at 3100, market 3200) fills at once.
    assert answer.order.status == pb.ORDER_STATUS_FILLED, answer.order
    stored = store.order(approved.order.order_id)
    assert stored.price == Decimal("3100")
    assert stored.filled_quantity == Decimal("1.5")
    assert [t.quantity for t in store.trades(approved.order.order_id)] == [Decimal("1.5")]


def test_every_submit_answer_carries_its_trade(stack, store):
    """SubmitOrder answers the order *plus its trades*, whichever path (the synchronous
    answer of the exchange or the execution-report stream) recorded the fill first."""
    missing = []
    for _ in range(15):
        approved = e2e.approve(stack, symbol="SOLUSDT", quantity="2")
        answer = stack.oms.SubmitOrder(
            oms_pb2.SubmitOrderRequest(order=approved.order, risk_token=approved.token), timeout=e2e.RPC_TIMEOUT
        )
        assert answer.order.status == pb.ORDER_STATUS_FILLED
        assert len(store.trades(approved.order.order_id)) == 1
        if [t.quantity for t in answer.trades] != ["2"]:
            missing.append(approved.order.order_id)
    assert not missing, f"{len(missing)} of 15 FILLED answers came without their trade: {missing}"


def test_batch_submit_answers_carry_their_trades(stack, store):
    approved = [e2e.approve(stack, symbol=symbol, quantity="1") for symbol in ("ETHUSDT", "SOLUSDT") * 4]
    answer = stack.oms.SubmitOrders(
        oms_pb2.SubmitOrdersRequest(orders=[a.request() for a in approved]), timeout=e2e.RPC_TIMEOUT
    )
    assert len(answer.results) == len(approved)
    missing = []
    for item, result in zip(approved, answer.results):
        assert not result.error.code, result.error
        assert result.order.order_id == item.order.order_id
        assert result.order.status == pb.ORDER_STATUS_FILLED
        assert len(store.trades(item.order.order_id)) == 1
        if len(result.trades) != 1:
            missing.append(item.order.order_id)
    assert not missing, f"{len(missing)} of {len(approved)} FILLED results came without their trade"
