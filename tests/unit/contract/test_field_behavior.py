"""The contract documents itself: required fields are marked with
google.api.field_behavior, the marks agree with what the servers refuse, and the
vendored google/api/field_behavior.proto is googleapis' own."""

from __future__ import annotations

import pathlib
import re

import pytest
from google.api import field_behavior_pb2
from google.protobuf import timestamp_pb2

from services.common import convert
from services.domain.errors import InvalidOrder
from tessera.common.v1 import types_pb2 as pb
from tessera.exchange.v1 import exchange_pb2
from tessera.oms.v1 import oms_pb2
from tessera.risk.v1 import risk_pb2

ROOT = pathlib.Path(__file__).resolve().parents[3]
VENDORED = ROOT / "proto" / "google" / "api" / "field_behavior.proto"
REQUIRED = field_behavior_pb2.REQUIRED
OPTIONAL = field_behavior_pb2.OPTIONAL
OUTPUT_ONLY = field_behavior_pb2.OUTPUT_ONLY


def behaviors(message: type, field: str) -> list[int]:
    options = message.DESCRIPTOR.fields_by_name[field].GetOptions()
    return list(options.Extensions[field_behavior_pb2.field_behavior])


def marked(message: type, behavior: int) -> set[str]:
    return {name for name in message.DESCRIPTOR.fields_by_name if behavior in behaviors(message, name)}


def test_the_vendored_field_behavior_proto_is_googleapis_own() -> None:
    """proto/google/api/field_behavior.proto (there so that buf and protoc work offline)
    declares the extension and values the googleapis-common-protos runtime knows."""
    text = VENDORED.read_text(encoding="utf-8")
    assert "package google.api;" in text
    extension = re.search(r"repeated google\.api\.FieldBehavior field_behavior = (\d+)", text)
    assert extension and int(extension.group(1)) == field_behavior_pb2.field_behavior.number
    values = dict(re.findall(r"^\s+([A-Z_]+) = (\d+);", text, re.MULTILINE))
    assert values, "no enum values found"
    for name, number in values.items():
        assert field_behavior_pb2.FieldBehavior.Value(name) == int(number), name


def test_every_request_field_of_the_order_path_is_marked() -> None:
    for message in (pb.OrderIntent, pb.Order, risk_pb2.SetTradingStateRequest, oms_pb2.CancelOrderRequest,
                    oms_pb2.GetOrderRequest, oms_pb2.ListOrdersRequest, oms_pb2.CreateOrderManagerRequest,
                    exchange_pb2.QueryOrderRequest):
        unmarked = {name for name in message.DESCRIPTOR.fields_by_name if not behaviors(message, name)}
        assert not unmarked, f"{message.DESCRIPTOR.full_name}: {sorted(unmarked)} carry no field_behavior"


def test_the_marks_name_what_a_client_must_send() -> None:
    # quantity is required unless close_position or quote_order_qty takes its place: OPTIONAL.
    assert marked(pb.OrderIntent, REQUIRED) == {
        "account", "venue", "market_type", "symbol", "side", "order_type"}
    assert marked(pb.Order, REQUIRED) == marked(pb.OrderIntent, REQUIRED) | {"order_id", "client_order_id"}
    assert marked(pb.Order, OUTPUT_ONLY) == {
        "status", "filled_quantity", "average_fill_price", "remote_order_id", "order_time", "updated_time",
        "reject_reasons", "version", "replaces_order_id", "replaced_by_order_id", "raw_venue_json",
        "venue_executed_quantity"}
    assert marked(risk_pb2.ValidateReplacementRequest, REQUIRED) == {"order_id"}
    assert marked(oms_pb2.ReplaceOrderRequest, REQUIRED) == {"order", "risk_token"}
    assert marked(risk_pb2.ValidateOrderRequest, REQUIRED) == {"order"}
    assert marked(oms_pb2.SubmitOrderRequest, REQUIRED) == {"order", "risk_token"}
    # operator: a comment now; who acted is the caller's authenticated principal.
    assert marked(risk_pb2.SetTradingStateRequest, REQUIRED) == {"state", "reason"}
    assert marked(oms_pb2.EmergencyCancelAllRequest, REQUIRED) == {"reason"}
    # "Either order_id, or account and client_order_id": no field is required alone.
    assert marked(oms_pb2.GetOrderRequest, REQUIRED) == set()


def valid_intent() -> pb.OrderIntent:
    return pb.OrderIntent(
        client_order_id="c-1", account="acct-1", venue="aster", market_type=pb.MARKET_TYPE_FUTURES,
        symbol="BTCUSDT", side=pb.SIDE_BUY, order_type=pb.ORDER_TYPE_LIMIT, quantity="0.5", price="100",
        time_in_force=pb.TIME_IN_FORCE_GTD, leverage="5",
        expire_time=timestamp_pb2.Timestamp(seconds=4_102_444_800),
    )


def convert_intent(intent: pb.OrderIntent):
    return convert.order_from_intent(intent, order_id="6f1c1d8e-4b3a-4c2e-9a57-0d6a3b8f2e11",
                                     client_order_id="generated")


@pytest.mark.parametrize("field", sorted(marked(pb.OrderIntent, REQUIRED)))
def test_a_required_field_left_out_is_refused_by_name(field: str) -> None:
    intent = valid_intent()
    intent.ClearField(field)
    with pytest.raises(InvalidOrder) as refused:
        convert_intent(intent)
    assert refused.value.field == field


def test_optional_fields_may_be_left_out() -> None:
    """A market GTC order with every OPTIONAL field unset is valid, and an unset time in
    force is GTC, as the contract says."""
    intent = pb.OrderIntent(account="acct-1", venue="aster", market_type=pb.MARKET_TYPE_FUTURES,
                            symbol="BTCUSDT", side=pb.SIDE_BUY, order_type=pb.ORDER_TYPE_MARKET, quantity="1")
    assert not any(intent.HasField(f) for f in ("expire_time",))
    order = convert_intent(intent)
    assert order.time_in_force.value == "GTC"
    assert convert.order_to_proto(order).time_in_force == pb.TIME_IN_FORCE_GTC


def test_order_id_must_be_a_uuid() -> None:
    message = convert.order_to_proto(convert_intent(valid_intent()))
    message.order_id = "not-a-uuid"
    with pytest.raises(InvalidOrder) as refused:
        convert.order_from_proto(message)
    assert refused.value.field == "order_id"
