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
