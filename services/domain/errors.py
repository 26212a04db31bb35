"""Domain errors: each maps to one gRPC status in :mod:`services.common.errors`."""

from __future__ import annotations


class DomainError(Exception):
    """Base of the errors the services translate into gRPC statuses.

    ``reason`` is a stable, machine-readable code (``TOKEN_EXPIRED``); the message is
    for people.
    """

    reason = "ERROR"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class InvalidOrder(DomainError):
    """Malformed input; the message names the field (INVALID_ARGUMENT)."""

    reason = "INVALID_ARGUMENT"

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}", reason="INVALID_ARGUMENT")
        self.field = field


class MalformedRequest(DomainError):
    """Bytes that do not parse as the method's request message (INVALID_ARGUMENT)."""

    reason = "MALFORMED_REQUEST"

    def __init__(self, message_type: str) -> None:
        super().__init__(f"the request is not a valid {message_type} message")


class TokenRejected(DomainError):
    """The risk token is missing, malformed, forged, stale or bound to other fields."""


class TokenReplayed(DomainError):
    reason = "TOKEN_ALREADY_USED"


class OrderNotFound(DomainError):
    reason = "ORDER_NOT_FOUND"


class Conflict(DomainError):
    """An identifier is taken by something with other content (ALREADY_EXISTS)."""

    reason = "CONFLICT"


class PreconditionFailed(DomainError):
    """Legal input, wrong moment: illegal transition, trading halted (FAILED_PRECONDITION)."""

    reason = "FAILED_PRECONDITION"


class StaleOrder(DomainError):
    """A compare-and-set lost against a concurrent writer."""

    reason = "CONCURRENT_UPDATE"


class OverfillError(DomainError):
    reason = "OVERFILL"


class VenueUnavailable(DomainError):
    reason = "VENUE_UNAVAILABLE"


class ReplicaUnavailable(DomainError):
    """The replica a request must be forwarded to (the Risk replica that owns the
    account) did not answer: UNAVAILABLE, worth a retry."""

    reason = "REPLICA_UNAVAILABLE"
