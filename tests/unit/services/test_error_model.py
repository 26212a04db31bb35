"""The error model a client decodes: every bad field at once (BadRequest), the ErrorInfo's
metadata, RetryInfo on retryable codes, and the typed ItemError of batch answers."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from services.common import convert, errors
from services.common.errors import StoreUnavailable
from services.domain import errors as domain
from services.exchange.aster.errors import VenueRateLimited, venue_error
from tessera.common.v1 import types_pb2 as pb

Code = grpc.StatusCode


def details_of(error: BaseException) -> dict[str, object]:
    """The decoded details of the status the servers answer ``error`` with, by type."""
    status = errors.status_of(error)
    (blob,) = [value for key, value in status.trailing_metadata if key == rpc_status.GRPC_DETAILS_METADATA_KEY]
    rich = status_pb2.Status.FromString(blob)
    found: dict[str, object] = {}
    for detail in rich.details:
        for kind in (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest, error_details_pb2.RetryInfo):
            message = kind()
            if detail.Unpack(message):
                assert kind.__name__ not in found, f"two {kind.__name__} details"
                found[kind.__name__] = message
    return found


def bad_intent() -> pb.OrderIntent:
    """Three fields missing, one malformed, one not allowed."""
    return pb.OrderIntent(account="acct-1", symbol="BTCUSDT", order_type=pb.ORDER_TYPE_MARKET, quantity="-2",
                          price="100", side=pb.SIDE_BUY)


def test_validation_reports_every_bad_field_at_once_with_a_reason_each():
    with pytest.raises(domain.InvalidOrder) as caught:
        convert.order_from_intent(bad_intent(), order_id="o", client_order_id="c")

    violations = [(v.field, v.reason) for v in caught.value.violations]
    assert violations == [("market_type", "REQUIRED"), ("venue", "REQUIRED"), ("quantity", "NOT_POSITIVE"),
                          ("price", "NOT_ALLOWED")]
    assert str(caught.value) == ("market_type: required; venue: required; quantity: must be positive, got -2; "
                                 "price: must be empty for MARKET orders")


def test_invalid_argument_status_carries_a_bad_request_with_each_field_under_its_request_path():
    with pytest.raises(domain.InvalidOrder) as caught:
        convert.order_from_intent(bad_intent(), order_id="o", client_order_id="c")
    error = caught.value.prefixed("order")

    found = details_of(error)

    assert errors.status_of(error).code is Code.INVALID_ARGUMENT
    info = found["ErrorInfo"]
    assert (info.reason, dict(info.metadata)) == ("INVALID_ARGUMENT", {"field": "order.market_type"})
    bad = found["BadRequest"]
    assert [(v.field, v.reason) for v in bad.field_violations] == [
        ("order.market_type", "REQUIRED"), ("order.venue", "REQUIRED"), ("order.quantity", "NOT_POSITIVE"),
        ("order.price", "NOT_ALLOWED")]
    assert bad.field_violations[2].description == "must be positive, got -2"
    assert "RetryInfo" not in found


def test_a_path_already_under_the_prefix_is_kept():
    error = domain.InvalidOrder("order", "required", violation="REQUIRED").prefixed("order")

    assert [(v.field, v.reason) for v in error.violations] == [("order", "REQUIRED")]


def test_cross_field_problems_do_not_repeat_a_field_that_is_already_malformed():
    intent = pb.OrderIntent(account="a", venue="aster", market_type=pb.MARKET_TYPE_SPOT, symbol="BTCUSDT",
                            side=pb.SIDE_BUY, order_type=pb.ORDER_TYPE_MARKET, quantity="1", price="x",
                            leverage="abc")

    with pytest.raises(domain.InvalidOrder) as caught:
        convert.order_from_intent(intent, order_id="o", client_order_id="c")

    assert [(v.field, v.reason) for v in caught.value.violations] == [("price", "INVALID_FORMAT"),
                                                                     ("leverage", "INVALID_FORMAT")]


@pytest.mark.parametrize(("error", "code", "seconds"), [
    pytest.param(StoreUnavailable("down"), Code.UNAVAILABLE, 1.0, id="store-unavailable"),
    pytest.param(domain.VenueUnavailable("no answer"), Code.UNAVAILABLE, 1.0, id="venue-unavailable"),
    pytest.param(domain.StaleOrder("lost", metadata={"order_id": "o-1"}), Code.ABORTED, 0.05, id="aborted"),
    pytest.param(VenueRateLimited("429", retry_after=7.5), Code.RESOURCE_EXHAUSTED, 7.5, id="rate-limit-own-wait"),
    pytest.param(venue_error(418, {}, what="order"), Code.RESOURCE_EXHAUSTED, 60.0, id="ip-banned"),
])
def test_retryable_codes_carry_retry_info_with_the_reasons_delay(error, code, seconds):
    found = details_of(error)

    assert errors.status_of(error).code is code
    delay = found["RetryInfo"].retry_delay
    assert delay.seconds + delay.nanos / 1e9 == pytest.approx(seconds)


@pytest.mark.parametrize("error", [
    domain.TokenReplayed("used", metadata={"order_id": "o-1", "status": "FILLED"}),
    domain.PreconditionFailed("halted", reason="TRADING_HALTED"),
    domain.OrderNotFound("no order"),
    RuntimeError("boom"),
], ids=lambda e: type(e).__name__)
def test_other_codes_carry_no_retry_info(error):
    assert "RetryInfo" not in details_of(error)


def test_token_already_used_names_the_order_and_its_status_in_the_error_info():
    error = domain.TokenReplayed("risk token already used: the order is FILLED",
                                 metadata={"order_id": "6f1c1d8e-4b3a-4c2e-9a57-0d6a3b8f2e11", "status": "FILLED"})

    info = details_of(error)["ErrorInfo"]

    assert info.reason == "TOKEN_ALREADY_USED"
    assert dict(info.metadata) == {"order_id": "6f1c1d8e-4b3a-4c2e-9a57-0d6a3b8f2e11", "status": "FILLED"}


def test_metadata_keys_the_catalog_does_not_list_never_leave_the_server():
    error = domain.OrderNotFound("no order", metadata={"order_id": "o-1", "secret_thing": "x", "none": None})

    assert dict(details_of(error)["ErrorInfo"].metadata) == {"order_id": "o-1"}


def test_an_unexpected_error_carries_nothing_of_itself():
    error = RuntimeError("password=hunter2")
    error.metadata = {"order_id": "leak"}  # type: ignore[attr-defined]

    found = details_of(error)

    assert dict(found["ErrorInfo"].metadata) == {}
    assert errors.status_of(error).details == "INTERNAL: internal error"


def test_an_illegal_transition_names_both_statuses():
    import core_ext

    info = details_of(core_ext.IllegalTransition("FILLED", "SUBMITTED"))["ErrorInfo"]

    assert dict(info.metadata) == {"from_status": "FILLED", "to_status": "SUBMITTED"}


def test_a_venue_rejection_names_the_venues_code():
    error = venue_error(400, {"code": -2019, "msg": "Margin is insufficient."}, what="order")

    info = details_of(error)["ErrorInfo"]

    assert errors.status_of(error).code is Code.FAILED_PRECONDITION
    assert (info.reason, dict(info.metadata)) == ("MARGIN_INSUFFICIENT", {"venue_code": "-2019"})


def test_the_reason_decides_the_code_whatever_the_class():
    # The venue's duplicate client order id is ALREADY_EXISTS, as ExecuteOrder's contract says.
    error = venue_error(400, {"code": -4116, "msg": "ClientOrderId is duplicated."}, what="order")

    assert errors.status_code_for(error) is Code.ALREADY_EXISTS


def test_item_error_carries_a_typed_code_metadata_violations_and_retry_delay():
    invalid = domain.InvalidOrder("quantity", "required", violation="REQUIRED").prefixed("order")
    item = errors.item_error_proto(invalid, 3)

    assert (item.code, item.status_code, item.reason) == ("INVALID_ARGUMENT", pb.ERROR_CODE_INVALID_ARGUMENT,
                                                          "INVALID_ARGUMENT")
    assert item.message == "orders[3]: order.quantity: required"
    assert [(v.field, v.reason) for v in item.field_violations] == [("orders[3].order.quantity", "REQUIRED")]
    assert dict(item.metadata) == {"field": "order.quantity"}
    assert not item.HasField("retry_delay")

    replayed = errors.item_error_proto(domain.TokenReplayed("used", metadata={"order_id": "o-1", "status": "FILLED"}), 0)
    assert (replayed.status_code, dict(replayed.metadata)) == (pb.ERROR_CODE_PERMISSION_DENIED,
                                                               {"order_id": "o-1", "status": "FILLED"})

    retry = errors.item_error_proto(domain.StaleOrder("lost"), 1)
    assert retry.status_code == pb.ERROR_CODE_ABORTED
    assert retry.retry_delay.ToNanoseconds() == 50_000_000


def test_item_error_in_path_style_names_each_field_under_the_item():
    invalid = domain.InvalidOrder.of([domain.InvalidOrder("quantity", "required", violation="REQUIRED"),
                                      domain.InvalidOrder("venue", "required", violation="REQUIRED")])

    item = errors.item_error_proto(invalid, 2, path_style=True)

    assert item.message == "orders[2].quantity: required; orders[2].venue: required"
    assert [v.field for v in item.field_violations] == ["orders[2].quantity", "orders[2].venue"]


def test_error_codes_number_as_grpc_does():
    for code in Code:
        if code is not Code.OK:
            assert pb.ErrorCode.Value(f"ERROR_CODE_{code.name}") == code.value[0]


def test_a_forwarded_batch_items_error_is_renumbered_everywhere_it_names_its_position():
    from services.risk.servicer import renumber

    invalid = domain.InvalidOrder.of([domain.InvalidOrder("quantity", "required", violation="REQUIRED"),
                                      domain.InvalidOrder("venue", "required", violation="REQUIRED")])
    item = errors.item_error_proto(invalid, 0, path_style=True)  # as the owning replica numbered it

    renumber(item, 7)

    assert item.message == "orders[7].quantity: required; orders[7].venue: required"
    assert [v.field for v in item.field_violations] == ["orders[7].quantity", "orders[7].venue"]
