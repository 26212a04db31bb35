"""Domain errors: each maps to one gRPC status in :mod:`services.common.errors`.

Every error carries a stable ``reason`` (the ``google.rpc.ErrorInfo`` reason a client
acts on: its code, whether to retry and the metadata it carries are listed once, in
:mod:`services.common.error_catalog`), an optional ``metadata`` mapping (the ErrorInfo
metadata: the order's id and status, the field, ...) and a message for people.
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple, Sequence

_NO_METADATA: Mapping[str, str] = {}


class DomainError(Exception):
    """Base of the errors the services translate into gRPC statuses.

    ``reason`` is a stable, machine-readable code (``TOKEN_EXPIRED``); the message is
    for people; ``metadata`` (text values, ``None`` values left out) goes into the
    status's ErrorInfo.
    """

    reason = "ERROR"
    metadata: Mapping[str, str] = _NO_METADATA

    def __init__(self, message: str, *, reason: str | None = None,
                 metadata: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason
        if metadata:
            self.metadata = {key: str(value) for key, value in metadata.items() if value is not None}


class FieldViolation(NamedTuple):
    """One bad field of a request: a ``google.rpc.BadRequest.FieldViolation``.

    ``reason`` is one of :data:`services.common.error_catalog.FIELD_REASONS`
    (``REQUIRED``, ``INVALID_FORMAT``, ...).
    """

    field: str
    reason: str
    description: str


class InvalidOrder(DomainError):
    """Malformed input (INVALID_ARGUMENT): one bad field, or every bad field of a
    request (``violations``); the message names each."""

    reason = "INVALID_ARGUMENT"

    def __init__(self, field: str, problem: str, *, violation: str = "INVALID_VALUE",
                 violations: Sequence[FieldViolation] | None = None) -> None:
        self.violations: list[FieldViolation] = list(violations or [FieldViolation(field, violation, problem)])
        message = "; ".join(f"{v.field}: {v.description}" for v in self.violations)
        super().__init__(message, reason="INVALID_ARGUMENT", metadata={"field": self.violations[0].field})
        self.field = self.violations[0].field

    @classmethod
    def of(cls, errors: Sequence["InvalidOrder"]) -> "InvalidOrder":
        """One error holding the violations of ``errors``, in order."""
        violations = [violation for error in errors for violation in error.violations]
        return cls(violations[0].field, violations[0].description, violations=violations)

    def prefixed(self, prefix: str) -> "InvalidOrder":
        """The same violations with their field paths under ``prefix`` (``order``): the
        path of each in the request. A path already there (``order`` itself) is kept."""

        def path(field: str) -> str:
            if not field or field == prefix:
                return prefix
            return field if field.startswith((prefix + ".", prefix + "[")) else f"{prefix}.{field}"

        return InvalidOrder("", "", violations=[v._replace(field=path(v.field)) for v in self.violations])


def in_request(error: BaseException, prefix: str) -> BaseException:
    """``error`` with its field paths under ``prefix`` when it is an ``InvalidOrder``."""
    return error.prefixed(prefix) if isinstance(error, InvalidOrder) else error


class MalformedRequest(DomainError):
    """Bytes that do not parse as the method's request message (INVALID_ARGUMENT)."""

    reason = "MALFORMED_REQUEST"

    def __init__(self, message_type: str) -> None:
        super().__init__(f"the request is not a valid {message_type} message")


class TokenRejected(DomainError):
    """The risk token is missing, malformed, forged, stale or bound to other fields."""


class TokenReplayed(DomainError):
    """The token moved its order already (PERMISSION_DENIED TOKEN_ALREADY_USED); the
    metadata names the order and its status now."""

    reason = "TOKEN_ALREADY_USED"


class OrderNotFound(DomainError):
    reason = "ORDER_NOT_FOUND"


class Conflict(DomainError):
    """An identifier is taken by something with other content (ALREADY_EXISTS)."""

    reason = "CONFLICT"


class PreconditionFailed(DomainError):
    """Legal input, wrong moment: illegal transition, trading halted (FAILED_PRECONDITION)."""

    reason = "FAILED_PRECONDITION"


def trading_halted(symbol: str, why: str) -> PreconditionFailed:
    """FAILED_PRECONDITION ``TRADING_HALTED``: trading in ``symbol`` is HALTED (the global
    state or the symbol's own), ``why`` the halt's reason. The OMS's claim refuses an
    order with it, and so does the Exchange's record of an execution."""
    return PreconditionFailed(f"trading in {symbol} is halted: {why}", reason="TRADING_HALTED",
                              metadata={"symbol": symbol})


class StaleOrder(DomainError):
    """A compare-and-set lost against a concurrent writer."""

    reason = "CONCURRENT_UPDATE"


class OverfillError(DomainError):
    reason = "OVERFILL"


class VenueUnavailable(DomainError):
    reason = "VENUE_UNAVAILABLE"


class CancelAllIncomplete(VenueUnavailable):
    """A venue-wide cancel went through every account and symbol, and some of them failed
    (UNAVAILABLE ``CANCEL_ALL_INCOMPLETE``: the cancel may be sent again). ``reports``
    are those of the orders that were cancelled; ``failures`` (``CancelFailure``) name
    what was not."""

    reason = "CANCEL_ALL_INCOMPLETE"

    def __init__(self, reports: Sequence[Any], failures: Sequence[Any]) -> None:
        self.reports = list(reports)
        self.failures = list(failures)
        named = "; ".join(failure.describe() for failure in self.failures[:10])
        more = f" and {len(self.failures) - 10} more" if len(self.failures) > 10 else ""
        super().__init__(f"the venue-wide cancel failed for {len(self.failures)} account(s) or symbol(s): "
                         f"{named}{more}", metadata={"failures": len(self.failures)})


class ExchangeUnavailable(DomainError):
    """The OMS could not reach the Exchange service within the call's deadline: the
    order was not claimed and nothing was sent (it is still APPROVED): retry."""

    reason = "EXCHANGE_UNAVAILABLE"


class ReplicaUnavailable(DomainError):
    """The replica a request must be forwarded to (the Risk replica that owns the
    account) did not answer: UNAVAILABLE, worth a retry."""

    reason = "REPLICA_UNAVAILABLE"


class ShardMapUnsettled(DomainError):
    """This Risk replica does not decide: another live replica runs with another replica
    count (the shard map is changing), or this one has not confirmed the count in the
    store lately. UNAVAILABLE, worth a retry."""

    reason = "SHARD_MAP_UNSETTLED"
