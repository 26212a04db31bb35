"""Venue answers to Tessera outcomes: one table from Aster's error codes.

Each venue refusal becomes one domain error, and so one gRPC status the OMS acts on:

- the venue refused the request and did nothing (margin, filters, bad symbol,
  signature): :class:`VenueRejected`, ``FAILED_PRECONDITION``; the OMS rejects the order;
- no such order (``-2011`` on a cancel, ``-2013`` on a query): :class:`VenueOrderUnknown`,
  ``NOT_FOUND``;
- rate limits (HTTP 429, 418, ``-1003``, ``-1015``): :class:`VenueRateLimited`,
  ``RESOURCE_EXHAUSTED``; the transport backs off before sending anything else;
- the outcome is unknown (HTTP 5xx, ``-1006``, ``-1007``, a timeout) or the clock is off
  (``-1021``): :class:`VenueUnavailable`, ``UNAVAILABLE``; a read may be retried, an
  order stays in doubt (SUBMITTED) until the reconciler asks the venue.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from services.domain.errors import DomainError, OrderNotFound, PreconditionFailed, VenueUnavailable


class VenueRejected(PreconditionFailed):
    """The venue refused the request; nothing happened there (``FAILED_PRECONDITION``)."""

    def __init__(self, message: str, *, reason: str, venue_code: int | None = None) -> None:
        super().__init__(message, reason=reason)
        self.venue_code = venue_code


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


_R, _U, _L, _D = "rejected", "unknown_order", "rate_limited", "in_doubt"

#: Aster's error codes (futures and spot share them) and what each means for Tessera.
VENUE_ERROR_CODES: dict[int, CodeRule] = {
    -1000: CodeRule(_D, "VENUE_UNKNOWN_ERROR"),
    -1001: CodeRule(_D, "VENUE_DISCONNECTED"),
    -1003: CodeRule(_L, "VENUE_RATE_LIMITED"),
    -1006: CodeRule(_D, "VENUE_UNEXPECTED_RESPONSE"),
    -1007: CodeRule(_D, "VENUE_TIMEOUT"),
    -1015: CodeRule(_L, "VENUE_TOO_MANY_ORDERS"),
    -1016: CodeRule(_D, "VENUE_SHUTTING_DOWN"),
    -1021: CodeRule(_D, "VENUE_TIMESTAMP_OUTSIDE_RECV_WINDOW"),
    -1022: CodeRule(_R, "VENUE_SIGNATURE_REJECTED"),
    -1102: CodeRule(_R, "VENUE_BAD_REQUEST"),
    -1111: CodeRule(_R, "VENUE_BAD_PRECISION"),
    -1116: CodeRule(_R, "VENUE_BAD_ORDER_TYPE"),
    -1117: CodeRule(_R, "VENUE_BAD_SIDE"),
    -1121: CodeRule(_R, "SYMBOL_NOT_AT_VENUE"),
    -2010: CodeRule(_R, "ORDER_REJECTED_BY_VENUE"),
    -2011: CodeRule(_U, "UNKNOWN_ORDER"),
    -2013: CodeRule(_U, "UNKNOWN_ORDER"),
    -2014: CodeRule(_R, "VENUE_API_KEY_REJECTED"),
    -2015: CodeRule(_R, "VENUE_API_KEY_REJECTED"),
    -2018: CodeRule(_R, "BALANCE_INSUFFICIENT"),
    -2019: CodeRule(_R, "MARGIN_INSUFFICIENT"),
    -2020: CodeRule(_R, "UNABLE_TO_FILL"),
    -2021: CodeRule(_R, "ORDER_WOULD_IMMEDIATELY_TRIGGER"),
    -2022: CodeRule(_R, "REDUCE_ONLY_REJECTED"),
    -2024: CodeRule(_R, "POSITION_NOT_SUFFICIENT"),
    -2025: CodeRule(_R, "MAX_OPEN_ORDERS"),
    -2027: CodeRule(_R, "MAX_LEVERAGE_RATIO"),
    -4003: CodeRule(_R, "ORDER_NOT_REPRESENTABLE"),
    -4004: CodeRule(_R, "ORDER_NOT_REPRESENTABLE"),
    -4005: CodeRule(_R, "ORDER_NOT_REPRESENTABLE"),
    -4013: CodeRule(_R, "ORDER_NOT_REPRESENTABLE"),
    -4014: CodeRule(_R, "ORDER_NOT_REPRESENTABLE"),
    -4023: CodeRule(_R, "ORDER_NOT_REPRESENTABLE"),
    -4028: CodeRule(_R, "INVALID_LEVERAGE"),
    -4046: CodeRule(_R, "MARGIN_MODE_UNCHANGED"),
    -4047: CodeRule(_R, "MARGIN_MODE_LOCKED_BY_OPEN_ORDERS"),
    -4048: CodeRule(_R, "MARGIN_MODE_LOCKED_BY_POSITION"),
    -4116: CodeRule(_R, "DUPLICATE_CLIENT_ORDER_ID"),
    -4164: CodeRule(_R, "MIN_NOTIONAL"),
    -5022: CodeRule(_R, "POST_ONLY_WOULD_TAKE"),
}


def venue_error(http_status: int, payload: Any, *, what: str, retry_after: float = 0.0) -> DomainError:
    """The domain error for an unsuccessful answer (``payload`` is the decoded body, if any)."""
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
        return VenueRejected(detail, reason="VENUE_REJECTED", venue_code=code if isinstance(code, int) else None)
    if rule.kind == _U:
        return VenueOrderUnknown(detail, reason=rule.reason)
    if rule.kind == _L:
        return VenueRateLimited(detail, reason=rule.reason, retry_after=retry_after)
    if rule.kind == _D:
        return VenueInDoubt(detail, reason=rule.reason)
    return VenueRejected(detail, reason=rule.reason, venue_code=code)
