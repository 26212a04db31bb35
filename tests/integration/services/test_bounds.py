"""Bounds on what a client can make Tessera store (docs/contract.md, "Limits"), over the
real wire path (Risk and the OMS as gRPC servers in this process): each bound at its
limit is taken, one past it is refused INVALID_ARGUMENT with a field violation naming
the field and its reason, and nothing is stored."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any, Awaitable, Callable

import grpc
import pytest
from google.protobuf import struct_pb2
from google.rpc import error_details_pb2, status_pb2

from inprocess_stack import inprocess_stack
from services.common import convert
from svc_harness import LIMITS, MARKET_PRICE
from tessera.common.v1 import types_pb2 as pb
from tessera.oms.v1 import oms_pb2
from tessera.risk.v1 import risk_pb2


def violations(error: grpc.aio.AioRpcError) -> list[tuple[str, str]]:
    """The BadRequest field violations of a refusal: (field, reason)."""
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                bad = error_details_pb2.BadRequest()
                if detail.Unpack(bad):
                    return [(v.field, v.reason) for v in bad.field_violations]
    return []


async def refused(call: Awaitable[Any]) -> list[tuple[str, str]]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    return violations(caught.value)


def intent(**fields: Any) -> pb.OrderIntent:
    values = dict(account="bounds", venue="aster", market_type=pb.MARKET_TYPE_FUTURES, symbol="BTCUSDT",
                  side=pb.SIDE_BUY, order_type=pb.ORDER_TYPE_MARKET, quantity="0.01",
                  time_in_force=pb.TIME_IN_FORCE_GTC)
    values.update(fields)
    return pb.OrderIntent(**values)


def metadata_of_size(size: int) -> struct_pb2.Struct:
    """A Struct whose compact JSON is exactly ``size`` bytes: {"k":"xxx..."}."""
    value = {"k": "x" * (size - len('{"k":""}'))}
    assert len(json.dumps(value, separators=(",", ":")).encode()) == size
    message = struct_pb2.Struct()
    message.update(value)
    return message


def nested(depth: int) -> struct_pb2.Struct:
    value: dict[str, Any] = {}
    inner = value
    for _ in range(depth - 1):
        inner["n"] = {}
        inner = inner["n"]
    message = struct_pb2.Struct()
    message.update(value)
    return message


def run(store: Any, keyring: Any, scenario: Callable[[Any], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        async with inprocess_stack(store, keyring, LIMITS, {"BTCUSDT": MARKET_PRICE}) as stack:
            return await scenario(stack)
    return asyncio.run(main())


def test_identifiers_at_their_limit_are_taken_and_one_past_is_refused_too_long(store, keyring):
    async def scenario(stack):
        answers = {}
        for field, limit in (("account", 64), ("client_order_id", 36)):
            at = await stack.risk.ValidateOrder(risk_pb2.ValidateOrderRequest(order=intent(**{field: "a" * limit})))
            past = await refused(stack.risk.ValidateOrder(
                risk_pb2.ValidateOrderRequest(order=intent(**{field: "a" * (limit + 1)}))))
            answers[field] = (at.order.status, past)
        return answers

    answers = run(store, keyring, scenario)

    for field in ("account", "client_order_id"):
        status, past = answers[field]
        assert status == pb.ORDER_STATUS_APPROVED
        assert past == [(f"order.{field}", "TOO_LONG")]


def test_order_manager_metadata_and_identifier_bounds(store, keyring):
    limit = convert.MAX_METADATA_BYTES

    async def scenario(stack):
        def create(name: str, **fields: Any):
            return stack.oms.CreateOrderManager(oms_pb2.CreateOrderManagerRequest(
                unique_identifier=name, target_account_uid="bounds", **fields))

        run_id = uuid.uuid4().hex[:8]
        at = await create(f"at-{run_id}", metadata=metadata_of_size(limit))
        stored = await stack.oms.GetOrderManager(oms_pb2.GetOrderManagerRequest(unique_identifier=f"at-{run_id}"))
        too_large = await refused(create(f"past-{run_id}", metadata=metadata_of_size(limit + 1)))
        deep = await create(f"deep-{run_id}", metadata=nested(convert.MAX_METADATA_DEPTH))
        too_deep = await refused(create(f"deeper-{run_id}", metadata=nested(convert.MAX_METADATA_DEPTH + 1)))
        long_name = await create("u" * 128)
        too_long = await refused(create("u" * 129))
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await stack.oms.GetOrderManager(oms_pb2.GetOrderManagerRequest(unique_identifier=f"past-{run_id}"))
        return at, stored, too_large, deep, too_deep, long_name, too_long, missing.value

    at, stored, too_large, deep, too_deep, long_name, too_long, missing = run(store, keyring, scenario)

    assert at.created and deep.created and long_name.created
    assert len(stored.order_manager.metadata["k"]) == limit - len('{"k":""}')  # stored as given
    assert too_large == [("metadata", "TOO_LARGE")] and too_deep == [("metadata", "TOO_LARGE")]
    assert too_long == [("unique_identifier", "TOO_LONG")]
    assert missing.code() is grpc.StatusCode.NOT_FOUND  # the refused one was not stored


def test_reasons_at_500_characters_are_taken_and_501_refused(store, keyring):
    async def scenario(stack):
        past_halt = await refused(stack.oms.EmergencyCancelAll(
            oms_pb2.EmergencyCancelAllRequest(reason="r" * 501)))
        state_before = await stack.risk.GetTradingState(risk_pb2.GetTradingStateRequest())
        halted = await stack.oms.EmergencyCancelAll(oms_pb2.EmergencyCancelAllRequest(reason="r" * 500))
        past_reset = await refused(stack.risk.SetTradingState(risk_pb2.SetTradingStateRequest(
            state=pb.TRADING_STATE_ACTIVE, reason="r" * 501)))
        reset = await stack.risk.SetTradingState(risk_pb2.SetTradingStateRequest(
            state=pb.TRADING_STATE_ACTIVE, reason="r" * 500))
        after = await stack.risk.GetTradingState(risk_pb2.GetTradingStateRequest())
        return past_halt, state_before, halted, past_reset, reset, after

    past_halt, state_before, halted, past_reset, reset, after = run(store, keyring, scenario)

    assert past_halt == [("reason", "TOO_LONG")] and past_reset == [("reason", "TOO_LONG")]
    assert state_before.state == pb.TRADING_STATE_ACTIVE  # the refused trip halted nothing
    assert halted.state == pb.TRADING_STATE_HALTED
    assert reset.previous_state == pb.TRADING_STATE_HALTED
    assert (after.state, after.reason) == (pb.TRADING_STATE_ACTIVE, "r" * 500)


def test_free_text_holding_a_nul_character_is_refused_invalid_and_nothing_is_stored(store, keyring):
    # PostgreSQL stores no U+0000 in text or jsonb: every backend refuses it as input.
    def with_nul(**value: Any) -> struct_pb2.Struct:
        message = struct_pb2.Struct()
        message.update(value)
        return message

    async def scenario(stack):
        def create(name: str, **fields: Any):
            return stack.oms.CreateOrderManager(oms_pb2.CreateOrderManagerRequest(
                unique_identifier=name, target_account_uid="bounds", **fields))

        run_id = uuid.uuid4().hex[:8]
        refusals = [
            await refused(create(f"status-{run_id}", status="ready\x00")),
            await refused(create(f"value-{run_id}", metadata=with_nul(note="a\x00b"))),
            await refused(create(f"key-{run_id}", metadata=with_nul(**{"n\x00": "x"}))),
            await refused(create(f"nested-{run_id}", metadata=with_nul(items=["ok", {"deep": "\x00"}]))),
            await refused(stack.oms.EmergencyCancelAll(oms_pb2.EmergencyCancelAllRequest(reason="stop\x00now"))),
            await refused(stack.oms.EmergencyCancelAll(oms_pb2.EmergencyCancelAllRequest(
                reason="stop", operator="ops\x00desk"))),
            await refused(stack.risk.SetTradingState(risk_pb2.SetTradingStateRequest(
                state=pb.TRADING_STATE_REDUCING, reason="\x00"))),
        ]
        stored = []
        for name in ("status", "value", "key", "nested"):
            with pytest.raises(grpc.aio.AioRpcError) as missing:
                await stack.oms.GetOrderManager(oms_pb2.GetOrderManagerRequest(unique_identifier=f"{name}-{run_id}"))
            stored.append(missing.value.code())
        state = await stack.risk.GetTradingState(risk_pb2.GetTradingStateRequest())
        return refusals, stored, state

    refusals, stored, state = run(store, keyring, scenario)

    assert refusals == [[("status", "INVALID_VALUE")], [("metadata", "INVALID_VALUE")],
                        [("metadata", "INVALID_VALUE")], [("metadata", "INVALID_VALUE")],
                        [("reason", "INVALID_VALUE")], [("operator", "INVALID_VALUE")],
                        [("reason", "INVALID_VALUE")]]
    assert stored == [grpc.StatusCode.NOT_FOUND] * 4
    assert state.state == pb.TRADING_STATE_ACTIVE  # neither refused request changed the trading state


def test_batches_of_5000_are_taken_and_5001_refused(store, keyring):
    async def scenario(stack):
        bad = intent(quantity="-1")  # refused item by item, nothing stored: cheap at 5,000
        taken = await stack.risk.ValidateOrders(risk_pb2.ValidateOrdersRequest(orders=[bad] * 5000))
        past = await refused(stack.risk.ValidateOrders(risk_pb2.ValidateOrdersRequest(orders=[bad] * 5001)))
        empty = oms_pb2.SubmitOrderRequest()
        submitted = await stack.oms.SubmitOrders(oms_pb2.SubmitOrdersRequest(orders=[empty] * 5000))
        past_submit = await refused(stack.oms.SubmitOrders(oms_pb2.SubmitOrdersRequest(orders=[empty] * 5001)))
        return taken, past, submitted, past_submit

    taken, past, submitted, past_submit = run(store, keyring, scenario)

    assert len(taken.results) == 5000 and all(r.HasField("error") for r in taken.results)
    assert past == [("orders", "TOO_MANY_ITEMS")]
    assert len(submitted.results) == 5000 and all(r.HasField("error") for r in submitted.results)
    assert past_submit == [("orders", "TOO_MANY_ITEMS")]
