"""Venue error codes to Tessera outcomes and gRPC statuses."""

from __future__ import annotations

import grpc
import pytest

from services.common.errors import status_code_for
from services.exchange.aster.errors import (
    VenueCancelRejected,
    VenueInDoubt,
    VenueOrderUnknown,
    VenueRateLimited,
    VenueRejected,
    venue_error,
)


@pytest.mark.parametrize(
    ("http", "code", "kind", "reason", "status"),
    [
        (400, -2019, VenueRejected, "MARGIN_INSUFFICIENT", grpc.StatusCode.FAILED_PRECONDITION),
        (400, -2018, VenueRejected, "BALANCE_INSUFFICIENT", grpc.StatusCode.FAILED_PRECONDITION),
        (400, -1121, VenueRejected, "SYMBOL_NOT_AT_VENUE", grpc.StatusCode.FAILED_PRECONDITION),
        (400, -4164, VenueRejected, "MIN_NOTIONAL", grpc.StatusCode.FAILED_PRECONDITION),
        (400, -5022, VenueRejected, "POST_ONLY_WOULD_TAKE", grpc.StatusCode.FAILED_PRECONDITION),
        (401, -1022, VenueRejected, "VENUE_SIGNATURE_REJECTED", grpc.StatusCode.FAILED_PRECONDITION),
        # -2011 CANCEL_REJECTED: the venue refused the cancel; the order exists.
        (400, -2011, VenueCancelRejected, "CANCEL_REJECTED", grpc.StatusCode.FAILED_PRECONDITION),
        (400, -2013, VenueOrderUnknown, "UNKNOWN_ORDER", grpc.StatusCode.NOT_FOUND),
        # Outside the receive window (V1 timestamp, V3 nonce): refused unprocessed, not in doubt.
        (400, -1021, VenueRejected, "VENUE_TIMESTAMP_OUTSIDE_RECV_WINDOW", grpc.StatusCode.FAILED_PRECONDITION),
        (400, -4225, VenueRejected, "VENUE_NONCE_EXPIRED", grpc.StatusCode.FAILED_PRECONDITION),
        (400, -4061, VenueRejected, "POSITION_SIDE_MISMATCH", grpc.StatusCode.FAILED_PRECONDITION),
        (400, -2022, VenueRejected, "REDUCE_ONLY_REJECTED", grpc.StatusCode.FAILED_PRECONDITION),
        (400, -4023, VenueRejected, "QUANTITY_NOT_ON_STEP", grpc.StatusCode.FAILED_PRECONDITION),
        (400, -4014, VenueRejected, "PRICE_NOT_ON_TICK", grpc.StatusCode.FAILED_PRECONDITION),
        (400, -4016, VenueRejected, "PRICE_OUTSIDE_PERCENT_BAND", grpc.StatusCode.FAILED_PRECONDITION),
        (400, -4024, VenueRejected, "PRICE_OUTSIDE_PERCENT_BAND", grpc.StatusCode.FAILED_PRECONDITION),
        (400, -1125, VenueRejected, "VENUE_INVALID_LISTEN_KEY", grpc.StatusCode.FAILED_PRECONDITION),
        (400, -1007, VenueInDoubt, "VENUE_TIMEOUT", grpc.StatusCode.UNAVAILABLE),
        (503, None, VenueInDoubt, "VENUE_UNAVAILABLE", grpc.StatusCode.UNAVAILABLE),
        (500, -1000, VenueInDoubt, "VENUE_UNAVAILABLE", grpc.StatusCode.UNAVAILABLE),
        # An unmapped code: refused here, where the answer is not to an order placement (to
        # one it is in doubt, see below).
        (400, -9999, VenueRejected, "VENUE_REJECTED", grpc.StatusCode.FAILED_PRECONDITION),
    ],
)
def test_venue_answers_map_to_one_outcome_and_status(http, code, kind, reason, status):
    payload = {"code": code, "msg": "venue says no"} if code is not None else None

    error = venue_error(http, payload, what="POST /fapi/v1/order")

    assert isinstance(error, kind)
    assert error.reason == reason
    assert status_code_for(error) == status
    assert "venue says no" in str(error) or payload is None


@pytest.mark.parametrize(("http", "reason"), [(429, "VENUE_RATE_LIMITED"), (418, "VENUE_IP_BANNED")])
def test_rate_limit_answers_are_rate_limited_with_their_retry_after(http, reason):
    error = venue_error(http, {"code": -1003, "msg": "Too many requests"}, what="GET /x", retry_after=7)

    assert isinstance(error, VenueRateLimited)
    assert error.reason == reason
    assert error.retry_after == 7


def test_too_many_orders_code_is_rate_limited():
    assert isinstance(venue_error(400, {"code": -1015, "msg": "Too many new orders"}, what="POST"), VenueRateLimited)


def test_the_rejection_keeps_the_venue_code():
    error = venue_error(400, {"code": -2019, "msg": "Margin is insufficient."}, what="POST /fapi/v1/order")

    assert error.venue_code == -2019
    assert str(error).startswith("POST /fapi/v1/order: venue answered HTTP 400 code -2019")


def test_a_refused_cancel_is_not_an_unknown_order():
    error = venue_error(400, {"code": -2011, "msg": "CANCEL_REJECTED"}, what="DELETE /fapi/v3/order")

    assert isinstance(error, VenueRejected) and not isinstance(error, VenueOrderUnknown)
    assert error.venue_code == -2011


def test_a_503_is_in_doubt_never_a_refusal():
    # "It is important to NOT treat this as a failure operation; the execution status is UNKNOWN".
    error = venue_error(503, {"code": -1007, "msg": "Timeout waiting for response"}, what="POST /fapi/v3/order")

    assert isinstance(error, VenueInDoubt)


# -- an order placement's answer: refused only when the venue's docs say nothing was done ---------
@pytest.mark.parametrize(
    ("http", "payload"),
    [
        (400, None),  # a 4xx without the venue's JSON error body (a proxy's page, an empty answer)
        (404, None),
        (408, None),  # Request Timeout: the request may have reached the matching engine
        (409, None),
        (401, None),  # no venue code: Aster's docs define no 401
        (400, {"code": -9999, "msg": "venue says no"}),  # a code Tessera does not map
        (409, {"code": -9999, "msg": "venue says no"}),
        (400, {"msg": "venue says no"}),  # JSON, but no code
        (200, {"code": -9999, "msg": "venue says no"}),  # a 200 carrying an unknown error code
    ],
)
def test_an_order_placement_answered_with_an_unmapped_4xx_is_in_doubt_not_rejected(http, payload):
    error = venue_error(http, payload, what="POST /fapi/v3/order", places_order=True,
                        venue_payload='{"request": {}, "status": %d}' % http)

    assert isinstance(error, VenueInDoubt) and not isinstance(error, VenueRejected)
    assert error.reason == "VENUE_ANSWER_UNKNOWN"
    assert status_code_for(error) == grpc.StatusCode.UNAVAILABLE
    assert f"HTTP {http}" in str(error)


@pytest.mark.parametrize(
    ("http", "payload", "kind", "reason", "status"),
    [
        # "HTTP 4XX return codes are used for malformed requests": with the venue's code, refused.
        (400, {"code": -2019, "msg": "Margin is insufficient."}, VenueRejected, "MARGIN_INSUFFICIENT",
         grpc.StatusCode.FAILED_PRECONDITION),
        (401, {"code": -1022, "msg": "Signature for this request is not valid."}, VenueRejected,
         "VENUE_SIGNATURE_REJECTED", grpc.StatusCode.FAILED_PRECONDITION),
        (409, {"code": -2022, "msg": "ReduceOnly Order is rejected."}, VenueRejected, "REDUCE_ONLY_REJECTED",
         grpc.StatusCode.FAILED_PRECONDITION),
        # "HTTP 403 return code is used when the WAF Limit (Web Application Firewall) has been violated."
        (403, None, VenueRejected, "VENUE_WAF_BLOCKED", grpc.StatusCode.FAILED_PRECONDITION),
        # 429 a rate limit broken, 418 an IP banned: refused, nothing sent on.
        (429, {"code": -1003, "msg": "Too many requests."}, VenueRateLimited, "VENUE_RATE_LIMITED",
         grpc.StatusCode.RESOURCE_EXHAUSTED),
        (418, None, VenueRateLimited, "VENUE_IP_BANNED", grpc.StatusCode.RESOURCE_EXHAUSTED),
        # 5xx, and a known code of an unknown outcome: in doubt as before.
        (503, None, VenueInDoubt, "VENUE_UNAVAILABLE", grpc.StatusCode.UNAVAILABLE),
        (400, {"code": -1007, "msg": "Timeout waiting for response"}, VenueInDoubt, "VENUE_TIMEOUT",
         grpc.StatusCode.UNAVAILABLE),
    ],
)
def test_an_order_placement_is_refused_only_for_what_the_venue_documents_as_not_executed(http, payload, kind, reason,
                                                                                          status):
    error = venue_error(http, payload, what="POST /fapi/v3/order", places_order=True)

    assert isinstance(error, kind)
    assert error.reason == reason
    assert status_code_for(error) == status


def test_an_unmapped_4xx_to_another_request_stays_a_refusal():
    """A read or a cancel is not an order placement: an unmapped answer to it is still
    VENUE_REJECTED (nothing at the venue depends on reading it as in doubt)."""
    error = venue_error(409, None, what="DELETE /fapi/v3/order")

    assert isinstance(error, VenueRejected) and error.reason == "VENUE_REJECTED"
