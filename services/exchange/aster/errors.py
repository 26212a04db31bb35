"""Venue answers to Tessera outcomes: one table from Aster's error codes.

Codes follow Aster's V3 futures and spot docs ("Error Codes"); each venue refusal
becomes one domain error, and so one gRPC status the OMS acts on:

- the venue refused the request and did nothing (margin, filters, bad symbol,
  signature, a timestamp or nonce outside the window, ``-1021``): :class:`VenueRejected`,
  ``FAILED_PRECONDITION``; the OMS rejects the order;
- a refused cancel (``-2011`` CANCEL_REJECTED: the order is already filled, cancelled or
  not cancellable): :class:`VenueCancelRejected`, ``FAILED_PRECONDITION``; the order goes
  back to the state before the cancel, and its fate is read from the venue;
- no such order (``-2013`` NO_SUCH_ORDER): :class:`VenueOrderUnknown`, ``NOT_FOUND``;
- rate limits (HTTP 429, 418, ``-1003``, ``-1015``): :class:`VenueRateLimited`,
  ``RESOURCE_EXHAUSTED``; the transport backs off before sending anything else;
- the venue's firewall refused the request (HTTP 403 without a code: "the WAF Limit
  (Web Application Firewall) has been violated"): :class:`VenueRejected`,
  ``VENUE_WAF_BLOCKED``;
- the outcome is unknown (HTTP 5xx, 503 included: "execution status UNKNOWN",
  ``-1006``, ``-1007``, a timeout): :class:`VenueInDoubt`, ``UNAVAILABLE``; a read may be
  retried, an order stays in doubt (SUBMITTED) until the reconciler asks the venue.

Any other answer to an order placement (a 4xx without the venue's JSON error body, a
408, a 409, a code missing from the table) is in doubt too (``VENUE_ANSWER_UNKNOWN``):
only what the venue's docs say was not executed rejects an order, since a rejected
order the venue in fact took would trade on unseen. Any other answer to another request
(a read, a cancel, a setting) is ``VENUE_REJECTED``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from services.domain.errors import DomainError, OrderNotFound, PreconditionFailed, VenueUnavailable


class VenueRejected(PreconditionFailed):
    """The venue refused the request; nothing happened there (``FAILED_PRECONDITION``)."""

    def __init__(self, message: str, *, reason: str, venue_code: int | None = None,
                 venue_payload: str | None = None) -> None:
        # venue_payload: the request and the venue's answer as exact JSON text (no secret:
        # the authentication parameters are left out), for the order's audit trail.
        super().__init__(message, reason=reason, metadata={"venue_code": venue_code, "venue_payload": venue_payload})
        self.venue_code = venue_code


class VenueCancelRejected(VenueRejected):
    """The venue refused a cancel (``-2011``): the order is not cancellable any more."""


class VenueOrderUnknown(OrderNotFound):
    """The venue has no such order (``NOT_FOUND``)."""

    reason = "UNKNOWN_ORDER"


class VenueRateLimited(DomainError):
    """Over the venue's rate limit, or banned for a while (``RESOURCE_EXHAUSTED``)."""

    reason = "VENUE_RATE_LIMITED"

    def __init__(self, message: str, *, reason: str | None = None, retry_after: float = 0.0) -> None:
        super().__init__(message, reason=reason)
        self.retry_after = retry_after


class VenueInDoubt(VenueUnavailable):
    """No usable answer: the venue may or may not have acted (``UNAVAILABLE``)."""

    reason = "VENUE_UNAVAILABLE"

    def __init__(self, message: str, *, reason: str | None = None, retryable: bool = True) -> None:
        super().__init__(message, reason=reason)
        self.retryable = retryable


@dataclasses.dataclass(frozen=True)
class CodeRule:
    kind: str  # "rejected" | "unknown_order" | "rate_limited" | "in_doubt"
    reason: str


_R, _C, _U, _L, _D = "rejected", "cancel_rejected", "unknown_order", "rate_limited", "in_doubt"

#: Aster's error codes (futures and spot share them) and what each means for Tessera.
VENUE_ERROR_CODES: dict[int, CodeRule] = {
    -1000: CodeRule(_D, "VENUE_UNKNOWN_ERROR"),
    -1001: CodeRule(_D, "VENUE_DISCONNECTED"),
    -1002: CodeRule(_R, "VENUE_UNAUTHORIZED"),
    -1003: CodeRule(_L, "VENUE_RATE_LIMITED"),
    -1006: CodeRule(_D, "VENUE_UNEXPECTED_RESPONSE"),
    -1007: CodeRule(_D, "VENUE_TIMEOUT"),
    -1014: CodeRule(_R, "VENUE_UNSUPPORTED_ORDER"),
    -1015: CodeRule(_L, "VENUE_TOO_MANY_ORDERS"),
    -1016: CodeRule(_D, "VENUE_SHUTTING_DOWN"),
    -1020: CodeRule(_R, "VENUE_UNSUPPORTED_OPERATION"),
    # The timestamp (V1) or nonce (V3) is outside the venue's window: refused unprocessed.
    -1021: CodeRule(_R, "VENUE_TIMESTAMP_OUTSIDE_RECV_WINDOW"),
    -1022: CodeRule(_R, "VENUE_SIGNATURE_REJECTED"),
    -1100: CodeRule(_R, "VENUE_BAD_REQUEST"),
    -1101: CodeRule(_R, "VENUE_BAD_REQUEST"),
    -1102: CodeRule(_R, "VENUE_BAD_REQUEST"),
    -1103: CodeRule(_R, "VENUE_BAD_REQUEST"),
    -1104: CodeRule(_R, "VENUE_BAD_REQUEST"),
    -1105: CodeRule(_R, "VENUE_BAD_REQUEST"),
    -1106: CodeRule(_R, "VENUE_BAD_REQUEST"),
    -1111: CodeRule(_R, "VENUE_BAD_PRECISION"),
    -1115: CodeRule(_R, "VENUE_BAD_TIME_IN_FORCE"),
    -1116: CodeRule(_R, "VENUE_BAD_ORDER_TYPE"),
    -1117: CodeRule(_R, "VENUE_BAD_SIDE"),
    -1121: CodeRule(_R, "SYMBOL_NOT_AT_VENUE"),
    -1125: CodeRule(_R, "VENUE_INVALID_LISTEN_KEY"),
    -1130: CodeRule(_R, "VENUE_BAD_REQUEST"),
    -2010: CodeRule(_R, "ORDER_REJECTED_BY_VENUE"),
    -2011: CodeRule(_C, "CANCEL_REJECTED"),
    -2013: CodeRule(_U, "UNKNOWN_ORDER"),
    -2014: CodeRule(_R, "VENUE_API_KEY_REJECTED"),
    -2015: CodeRule(_R, "VENUE_API_KEY_REJECTED"),
    -2018: CodeRule(_R, "BALANCE_INSUFFICIENT"),
    -2019: CodeRule(_R, "MARGIN_INSUFFICIENT"),
    -2020: CodeRule(_R, "UNABLE_TO_FILL"),
    -2021: CodeRule(_R, "ORDER_WOULD_IMMEDIATELY_TRIGGER"),
    -2022: CodeRule(_R, "REDUCE_ONLY_REJECTED"),
    -2023: CodeRule(_R, "ACCOUNT_IN_LIQUIDATION"),
    -2024: CodeRule(_R, "POSITION_NOT_SUFFICIENT"),
    -2025: CodeRule(_R, "MAX_OPEN_ORDERS"),
    -2026: CodeRule(_R, "REDUCE_ONLY_ORDER_TYPE_NOT_SUPPORTED"),
    -2027: CodeRule(_R, "MAX_LEVERAGE_RATIO"),
    -2028: CodeRule(_R, "MIN_LEVERAGE_RATIO"),
    -4001: CodeRule(_R, "ORDER_NOT_REPRESENTABLE"),
    -4002: CodeRule(_R, "ORDER_NOT_REPRESENTABLE"),
    -4003: CodeRule(_R, "ORDER_NOT_REPRESENTABLE"),
    -4004: CodeRule(_R, "ORDER_NOT_REPRESENTABLE"),
    -4005: CodeRule(_R, "ORDER_NOT_REPRESENTABLE"),
    -4013: CodeRule(_R, "ORDER_NOT_REPRESENTABLE"),
    -4014: CodeRule(_R, "PRICE_NOT_ON_TICK"),
    -4015: CodeRule(_R, "CLIENT_ORDER_ID_INVALID"),
    -4016: CodeRule(_R, "PRICE_OUTSIDE_PERCENT_BAND"),
    -4023: CodeRule(_R, "QUANTITY_NOT_ON_STEP"),
    -4024: CodeRule(_R, "PRICE_OUTSIDE_PERCENT_BAND"),
    -4028: CodeRule(_R, "INVALID_LEVERAGE"),
    -4031: CodeRule(_R, "INVALID_WORKING_TYPE"),
    -4045: CodeRule(_R, "MAX_STOP_ORDERS"),
    -4046: CodeRule(_R, "MARGIN_MODE_UNCHANGED"),
    -4047: CodeRule(_R, "MARGIN_MODE_LOCKED_BY_OPEN_ORDERS"),
    -4048: CodeRule(_R, "MARGIN_MODE_LOCKED_BY_POSITION"),
    -4059: CodeRule(_R, "POSITION_MODE_UNCHANGED"),
    -4060: CodeRule(_R, "INVALID_POSITION_SIDE"),
    -4061: CodeRule(_R, "POSITION_SIDE_MISMATCH"),
    -4062: CodeRule(_R, "REDUCE_ONLY_CONFLICT"),
    -4067: CodeRule(_R, "POSITION_MODE_LOCKED_BY_OPEN_ORDERS"),
    -4068: CodeRule(_R, "POSITION_MODE_LOCKED_BY_POSITION"),
    -4087: CodeRule(_R, "VENUE_REDUCE_ONLY_PERMISSION"),
    -4088: CodeRule(_R, "VENUE_NO_ORDER_PERMISSION"),
    -4116: CodeRule(_R, "DUPLICATE_CLIENT_ORDER_ID"),
    -4118: CodeRule(_R, "REDUCE_ONLY_REJECTED"),
    -4131: CodeRule(_R, "PRICE_OUTSIDE_PERCENT_BAND"),
    -4135: CodeRule(_R, "INVALID_ACTIVATION_PRICE"),
    # closePosition=true with a quantity, or (the venue's wording) without reduce-only.
    -4137: CodeRule(_R, "CLOSE_POSITION_CONFLICT"),
    -4138: CodeRule(_R, "CLOSE_POSITION_CONFLICT"),
    -4140: CodeRule(_R, "SYMBOL_NOT_OPEN_FOR_POSITIONS"),
    -4141: CodeRule(_R, "SYMBOL_CLOSED"),
    -4142: CodeRule(_R, "ORDER_WOULD_IMMEDIATELY_TRIGGER"),
    -4161: CodeRule(_R, "INVALID_LEVERAGE"),
    -4164: CodeRule(_R, "MIN_NOTIONAL"),
    -4183: CodeRule(_R, "PRICE_OUTSIDE_STOP_BAND"),
    -4184: CodeRule(_R, "PRICE_OUTSIDE_STOP_BAND"),
    # V3: the nonce was already used or is older than the last 100 (the Noop example's
    # "Nonce Expired"): refused unprocessed.
    -4225: CodeRule(_R, "VENUE_NONCE_EXPIRED"),
    -5022: CodeRule(_R, "POST_ONLY_WOULD_TAKE"),
}


def venue_error(http_status: int, payload: Any, *, what: str, retry_after: float = 0.0,
                venue_payload: str | None = None, places_order: bool = False) -> DomainError:
    """The domain error for an unsuccessful answer (``payload`` is the decoded body, if any;
    ``venue_payload`` the request and answer as exact JSON text, kept on a refusal;
    ``places_order``: the answer to an order placement, which an answer this table does
    not know leaves in doubt)."""
    code = payload.get("code") if isinstance(payload, dict) else None
    message = payload.get("msg") if isinstance(payload, dict) else None
    detail = f"{what}: venue answered HTTP {http_status}" + (f" code {code}" if code is not None else "")
    if message:
        detail += f" ({str(message)[:200]})"
    if http_status == 418:
        return VenueRateLimited(detail, reason="VENUE_IP_BANNED", retry_after=retry_after)
    if http_status == 429:
        return VenueRateLimited(detail, reason="VENUE_RATE_LIMITED", retry_after=retry_after)
    if http_status >= 500:
        return VenueInDoubt(detail, reason="VENUE_UNAVAILABLE")
    rule = VENUE_ERROR_CODES.get(code) if isinstance(code, int) else None
    if rule is None:
        if http_status == 403:
            return VenueRejected(detail, reason="VENUE_WAF_BLOCKED", venue_code=code if isinstance(code, int) else None,
                                 venue_payload=venue_payload)
        if places_order:
            return VenueInDoubt(detail, reason="VENUE_ANSWER_UNKNOWN")
        return VenueRejected(detail, reason="VENUE_REJECTED", venue_code=code if isinstance(code, int) else None,
                             venue_payload=venue_payload)
    if rule.kind == _U:
        return VenueOrderUnknown(detail, reason=rule.reason)
    if rule.kind == _C:
        return VenueCancelRejected(detail, reason=rule.reason, venue_code=code, venue_payload=venue_payload)
    if rule.kind == _L:
        return VenueRateLimited(detail, reason=rule.reason, retry_after=retry_after)
    if rule.kind == _D:
        return VenueInDoubt(detail, reason=rule.reason)
    return VenueRejected(detail, reason=rule.reason, venue_code=code, venue_payload=venue_payload)
