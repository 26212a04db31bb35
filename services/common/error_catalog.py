"""Every reason a Tessera service refuses a call with: its gRPC code, whether and when to
retry, and the metadata its ``google.rpc.ErrorInfo`` carries. One table.

The servers answer from it (:mod:`services.common.errors` takes a refusal's status code,
its ``RetryInfo`` and the metadata keys it may send from here), and ``docs/errors.md``
is generated from it (``python -m services.common.error_catalog --write``; a test fails
when the page is stale). The venue's refusals come from the table of Aster's error codes
(:data:`services.exchange.aster.errors.VENUE_ERROR_CODES`), so a code added there is
documented here without another edit.

A refusal is retryable exactly when its code is UNAVAILABLE, ABORTED or
RESOURCE_EXHAUSTED; its status then carries a ``google.rpc.RetryInfo`` with the delay of
its reason (the venue's own wait when it gave one).
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys

import core_ext
from services.exchange.aster.errors import VENUE_ERROR_CODES

#: The codes whose refusals a client may retry (after the RetryInfo's delay).
RETRYABLE_CODES = frozenset({"UNAVAILABLE", "ABORTED", "RESOURCE_EXHAUSTED"})
#: The delay a retryable refusal carries when its reason names none, per code.
DEFAULT_RETRY_SECONDS = {"UNAVAILABLE": 1.0, "ABORTED": 0.05, "RESOURCE_EXHAUSTED": 1.0}

_ORDER = ("order_id", "status")


@dataclasses.dataclass(frozen=True)
class Reason:
    """One ErrorInfo reason.

    Attributes
    ----------
    name
        The reason (``TOKEN_EXPIRED``), also the first word of the status message.
    code
        The gRPC status code's name.
    meaning
        What it means and what the client does about it.
    metadata
        The ErrorInfo metadata keys it carries (when known to the server).
    retry_seconds
        The RetryInfo delay; None for a reason whose code is not retryable.
    services
        Which services answer it: ``risk``, ``oms``, ``exchange``.
    """

    name: str
    code: str
    meaning: str
    metadata: tuple[str, ...] = ()
    retry_seconds: float | None = None
    services: tuple[str, ...] = ("risk", "oms", "exchange")

    @property
    def retryable(self) -> bool:
        return self.retry_seconds is not None


def _r(name: str, code: str, meaning: str, metadata: tuple[str, ...] = (), services: tuple[str, ...] | None = None,
       retry_seconds: float | None = None) -> Reason:
    if code in RETRYABLE_CODES and retry_seconds is None:
        retry_seconds = DEFAULT_RETRY_SECONDS[code]
    return Reason(name, code, meaning, metadata, retry_seconds, services or ("risk", "oms", "exchange"))


_OMS, _RISK, _EXCHANGE = ("oms",), ("risk",), ("exchange",)
_OMS_EXCHANGE = ("oms", "exchange")

#: Tessera's own reasons, in the order of the docs' table (by code).
_OWN: tuple[Reason, ...] = (
    _r("INVALID_ARGUMENT", "INVALID_ARGUMENT",
       "One or more fields are malformed. The status's google.rpc.BadRequest lists every bad field at once, each "
       "with its own reason (see the field reasons below); the message names them too.", ("field",)),
    _r("MALFORMED_REQUEST", "INVALID_ARGUMENT", "The request's bytes are not a valid message of the method's type."),
    *(_r(name, "UNAUTHENTICATED", meaning, services=_OMS_EXCHANGE) for name, meaning in (
        (core_ext.TOKEN_MISSING, "No risk token: validate the order with RiskService first."),
        (core_ext.TOKEN_MALFORMED, "The risk token is not a token (docs/token.md)."),
        (core_ext.TOKEN_UNKNOWN_KEY, "The token names a signing key this service does not hold."),
        (core_ext.TOKEN_BAD_SIGNATURE, "The token's signature does not verify: it was not issued by Risk."),
        (core_ext.TOKEN_NOT_YET_VALID, "The token is issued in the future beyond the allowed clock skew."),
        (core_ext.TOKEN_EXPIRED, "The token is older than its lifetime (300 s by default, plus 5 s of clock skew): "
                                 "the order it was for expires unsubmitted (validating it again by the same client "
                                 "order id answers it EXPIRED); validate a new order, with a new client order id."),
    )),
    _r("IDENTITY_MISSING", "UNAUTHENTICATED",
       "The call names no caller: present a bearer token (authorization: Bearer <JWT>) or, where the service "
       "requires mutual TLS, a client certificate (docs/access.md)."),
    _r("IDENTITY_INVALID", "UNAUTHENTICATED",
       "The bearer token does not verify; the metadata's problem says why: expired, audience, issuer, signature, "
       "not_yet_valid, claims, algorithm, scheme, malformed. Get a new token.", ("problem",)),
    _r(core_ext.TOKEN_FIELDS_CHANGED, "PERMISSION_DENIED",
       "A signed field of the order differs from what Risk approved: send the order exactly as Risk answered it.",
       services=_OMS_EXCHANGE),
    _r("TOKEN_ALREADY_USED", "PERMISSION_DENIED",
       "The token moved its order already and this request is not a retry of that submission (another token "
       "of the order, or the order past SUBMITTED by other means); the metadata says where the order is: read it "
       "with GetOrder. A retry with the very token that submitted the order is answered with the order instead "
       "(replayed).", _ORDER, _OMS_EXCHANGE),
    _r("CALLER_NOT_OMS", "PERMISSION_DENIED",
       "An Exchange service call without the OMS's credential: clients call the OMS.", ("method",), _EXCHANGE),
    _r("NOT_ENTITLED", "PERMISSION_DENIED",
       "The caller's roles do not admit the method, or not for this account (docs/access.md); an unknown "
       "principal holds no role.", ("principal", "method", "account")),
    _r("SERVICE_CREDENTIAL_EXPIRED", "UNAUTHENTICATED",
       "The OMS's credential for this Exchange call is older than its lifetime (30 s, plus 5 s of clock skew) or "
       "issued in the future: the OMS signs each call afresh, so a late or captured credential.", ("method",),
       _EXCHANGE),
    _r("SERVICE_CREDENTIAL_MISMATCH", "PERMISSION_DENIED",
       "The OMS's credential is genuine but was signed for another method or another request (it binds the "
       "SHA-256 digest of the request's serialized bytes): a credential moved to another call.", ("method",),
       _EXCHANGE),
    _r("SERVICE_CREDENTIAL_REPLAYED", "PERMISSION_DENIED",
       "The OMS's credential was used already: each one is good for one call (the Exchange remembers its nonce "
       "for its lifetime).", ("method",), _EXCHANGE),
    _r("SERVICE_CREDENTIAL_BEFORE_START", "UNAVAILABLE",
       "The OMS's credential was issued before this Exchange service started (its replay cache is in memory: a "
       "credential from before a restart could otherwise be used again). The OMS signs each call afresh and sends "
       "it again after the RetryInfo's delay: a captured credential never passes.", ("method",), _EXCHANGE),
    _r("SERVICE_CREDENTIAL_CACHE_FULL", "UNAVAILABLE",
       "More calls within one credential lifetime than the Exchange remembers (500,000): refused rather than "
       "accepted unremembered; retry after the RetryInfo's delay.", ("method",), _EXCHANGE),
    _r("ORDER_NOT_FOUND", "NOT_FOUND", "No order with this id (or account and client order id).",
       ("order_id", "account", "client_order_id"), ("risk", "oms")),
    _r("ORDER_MANAGER_NOT_FOUND", "NOT_FOUND", "No order manager with this unique_identifier.",
       ("unique_identifier",), _OMS),
    _r("UNKNOWN_ORDER", "NOT_FOUND", "The venue does not know the order (or it is no longer open there).",
       ("order_id",), _OMS_EXCHANGE),
    _r("DUPLICATE_CLIENT_ORDER_ID", "ALREADY_EXISTS",
       "The account's client order id is taken by an order with other fields (a retry with the same fields is "
       "answered with the stored order instead); at the venue, an order with this client order id exists.",
       ("account", "client_order_id", "order_id"), ("risk", "exchange")),
    _r("DUPLICATE_ORDER_ID", "ALREADY_EXISTS", "An order with this order id exists already.", ("order_id",), _RISK),
    _r("CONFLICT", "ALREADY_EXISTS", "The order manager's unique_identifier is taken by another account.",
       ("unique_identifier",), _OMS),
    _r("FAILED_PRECONDITION", "FAILED_PRECONDITION", "Legal input at a moment that does not allow it."),
    _r("ORDER_NOT_APPROVED", "FAILED_PRECONDITION",
       "Only an APPROVED order can be submitted; this one is not (cancelled, expired or rejected).", _ORDER, _OMS),
    _r("ORDER_NOT_OPEN", "FAILED_PRECONDITION", "The order is terminal: nothing to cancel or replace.", _ORDER, _OMS),
    _r("ORDER_NOT_WORKING", "FAILED_PRECONDITION",
       "Only an order working at the venue (ACCEPTED or PARTIALLY_FILLED) can be replaced; this one is not "
       "(still APPROVED, in doubt, a cancel is pending, or another replace of it is under way). ReplaceOrder "
       "cancels the replacement it was given; validate a new one once the order works again.", _ORDER,
       ("risk", "oms")),
    _r("ORDER_CHANGED", "FAILED_PRECONDITION",
       "The order to replace filled after its replacement was approved: the replacement would work more than was "
       "asked. The replacement is cancelled; validate a new one.", (*_ORDER, "replacement_order_id"), _OMS),
    _r("NOT_A_REPLACEMENT", "FAILED_PRECONDITION",
       "ReplaceOrder was given an order that replaces nothing: submit it with SubmitOrder.", ("order_id",), _OMS),
    _r("REPLACEMENT_ORDER", "FAILED_PRECONDITION",
       "SubmitOrder was given a replacement (ValidateReplacement's answer): send it with ReplaceOrder, which "
       "cancels the order it replaces first.", ("order_id", "replaces_order_id"), _OMS),
    _r("ILLEGAL_TRANSITION", "FAILED_PRECONDITION",
       "The order's state machine does not allow the change (docs: Order lifecycle).", ("from_status", "to_status")),
    _r("TRADING_HALTED", "FAILED_PRECONDITION",
       "Trading is HALTED (globally or for the symbol); only RiskService.SetTradingState lifts it. At submission "
       "the order stays APPROVED; an order the OMS had claimed before the halt is refused by the Exchange before "
       "it reaches the venue, and stored REJECTED with this reason.",
       ("symbol",), _OMS_EXCHANGE),
    _r("REDUCING_ONLY", "FAILED_PRECONDITION",
       "Trading is REDUCING and the order would not only reduce the account's position in the order's symbol "
       "and market type.", ("symbol",), _OMS),
    _r("NOT_ACCOUNT_OWNER", "FAILED_PRECONDITION",
       "Another Risk replica decides this account and could not be reached: send the order there.",
       ("account", "owner_replica"), _RISK),
    _r("OVERFILL", "FAILED_PRECONDITION", "A fill would take the order past its quantity.", ("order_id",), _OMS),
    _r("ACCOUNT_NOT_CONFIGURED", "FAILED_PRECONDITION",
       "The order's account is not in the venue accounts (TESSERA_VENUE_ACCOUNTS_FILE): nothing was stored or sent. "
       "Add the account to the registry (it is reloaded within seconds) or use a configured one.",
       ("account",), ("risk", "oms", "exchange")),
    _r("VENUE_NOT_CONFIGURED", "FAILED_PRECONDITION",
       "The order's account trades at another venue, or not in this market (FUTURES, SPOT), in the venue accounts: "
       "nothing was stored or sent.", ("account", "venue"), ("risk", "oms", "exchange")),
    _r("LEVERAGE_NOT_SET", "FAILED_PRECONDITION", "Live mode: set the symbol's leverage before its first order.",
       ("symbol",), _EXCHANGE),
    _r("MARGIN_MODE_NOT_SET", "FAILED_PRECONDITION", "Live mode: set the symbol's margin mode before its first order.",
       ("symbol",), _EXCHANGE),
    _r("LEVERAGE_MISMATCH", "FAILED_PRECONDITION", "The order's leverage differs from the symbol's at the venue.",
       ("symbol",), _EXCHANGE),
    _r("SHADOW_MODE_READ_ONLY", "FAILED_PRECONDITION", "Shadow mode never sends an order to the venue.",
       services=_EXCHANGE),
    _r("VENUE_REJECTED", "FAILED_PRECONDITION", "The venue refused the request with a code Tessera does not map "
       "(a read, a cancel or a setting; such an answer to an order is VENUE_ANSWER_UNKNOWN).",
       ("venue_code", "venue_payload"), _EXCHANGE),
    _r("VENUE_WAF_BLOCKED", "FAILED_PRECONDITION",
       "The venue's web application firewall refused the request (HTTP 403): it did nothing.",
       ("venue_code", "venue_payload"), _EXCHANGE),
    _r("CONCURRENT_UPDATE", "ABORTED", "A concurrent writer changed the order first: read it and retry.",
       ("order_id",), _OMS),
    _r("VENUE_RATE_LIMITED", "RESOURCE_EXHAUSTED",
       "Over the venue's rate limit (HTTP 429, -1003), or over the share of its request weight Tessera "
       "allows (quotes past half of the minute's): retry after the RetryInfo's delay.", services=_EXCHANGE),
    _r("VENUE_IP_BANNED", "RESOURCE_EXHAUSTED",
       "The venue banned this address for a while (HTTP 418): retry after the RetryInfo's delay.",
       services=_EXCHANGE, retry_seconds=60.0),
    _r("VENUE_ORDER_RATE_LIMITED", "RESOURCE_EXHAUSTED",
       "Tessera held the order back: the venue's order-count limit is reached.", services=_EXCHANGE),
    _r("STORE_UNAVAILABLE", "UNAVAILABLE",
       "The order store is unreachable. Retry; where the call may have taken effect, read the order first."),
    _r("REPLICA_UNAVAILABLE", "UNAVAILABLE",
       "The Risk replica that decides the order's account did not answer the replica forwarding to it: retry "
       "(it is restarting, or unreachable from this replica). Also when it refused the forwarding replica's own "
       "service identity (a deployment fault, logged by that replica: the replicas' principal needs the service "
       "role); the caller's own entitlement was checked by the replica it called.",
       ("account", "owner_replica"), _RISK),
    _r("SHARD_MAP_UNSETTLED", "UNAVAILABLE",
       "The Risk replica that decides the order's account does not decide now: a Risk replica started with another "
       "replica count (TESSERA_RISK_SHARDS) is running, so that two replicas could own one account (the message names "
       "it; docs/risk-sharding.md, \"Changing the replica count\"), or this replica has not confirmed the count in the "
       "store for half its lease. Nothing was stored: retry once every replica runs with one count.",
       ("replica", "shards"), _RISK),
    _r("EXCHANGE_UNAVAILABLE", "UNAVAILABLE",
       "The OMS could not reach the Exchange service (restarting) within the call's deadline: nothing was sent and "
       "the order is still APPROVED; retry the same submission.", ("order_id",), _OMS),
    _r("VENUE_UNAVAILABLE", "UNAVAILABLE",
       "No usable answer from the venue (HTTP 5xx, or the Exchange service did not answer the OMS): the request may "
       "or may not have taken effect; read the order before retrying.", services=_OMS_EXCHANGE),
    _r("CANCEL_ALL_INCOMPLETE", "UNAVAILABLE",
       "A venue-wide cancel (CancelAllOrders) went through every account and symbol and some failed (the message "
       "names them): the others were cancelled; send it again. EmergencyCancelAll answers OK instead and lists "
       "the failures in its venue_failures.", ("failures",), _EXCHANGE),
    _r("VENUE_ANSWER_UNKNOWN", "UNAVAILABLE",
       "The venue answered an order with what its docs do not call a refusal (a 4xx without its error code, a "
       "408, a 409, a code Tessera does not map, a success without an order id in it): the order may or may not be at the venue; it stays SUBMITTED "
       "until the reconciler asks the venue. Read the order before retrying.", services=_EXCHANGE),
    _r("VENUE_TIMEOUT", "UNAVAILABLE", "The venue did not answer in time: the request may or may not have taken "
                                       "effect.", services=_EXCHANGE),
    _r("VENUE_UNREACHABLE", "UNAVAILABLE", "The venue could not be reached.", services=_EXCHANGE),
    _r("INTERNAL", "INTERNAL", "An unexpected failure; the server logs it."),
)

_KIND_CODES = {"rejected": "FAILED_PRECONDITION", "cancel_rejected": "FAILED_PRECONDITION",
               "unknown_order": "NOT_FOUND", "rate_limited": "RESOURCE_EXHAUSTED", "in_doubt": "UNAVAILABLE"}
_KIND_MEANINGS = {
    "rejected": "The venue refused the request and did nothing",
    "cancel_rejected": "The venue refused the cancel (the order is filled, cancelled or not cancellable)",
    "unknown_order": "The venue has no such order",
    "rate_limited": "The venue's rate limit: retry after the RetryInfo's delay",
    "in_doubt": "The venue's outcome is unknown: read the order before retrying",
}


def _venue_reasons(own: dict[str, Reason]) -> dict[str, tuple[Reason, tuple[int, ...]]]:
    """The reasons of Aster's error codes, each with its codes; a reason Tessera defines
    itself keeps its own entry (its code wins)."""
    codes: dict[str, list[int]] = {}
    kinds: dict[str, str] = {}
    for venue_code, rule in sorted(VENUE_ERROR_CODES.items(), key=lambda item: -item[0]):
        codes.setdefault(rule.reason, []).append(venue_code)
        kinds.setdefault(rule.reason, rule.kind)
    found = {}
    for name, numbers in codes.items():
        kind = kinds[name]
        metadata = {"rejected": ("venue_code", "venue_payload"),
                    "cancel_rejected": ("venue_code", "order_id", "venue_payload")}.get(kind, ())
        services = _OMS_EXCHANGE if kind == "cancel_rejected" else _EXCHANGE
        entry = own.get(name) or _r(name, _KIND_CODES[kind], f"{_KIND_MEANINGS[kind]}.", metadata, services)
        found[name] = (entry, tuple(numbers))
    return found


_BY_NAME: dict[str, Reason] = {reason.name: reason for reason in _OWN}
_VENUE: dict[str, tuple[Reason, tuple[int, ...]]] = _venue_reasons(_BY_NAME)
#: Every reason, by name.
REASONS: dict[str, Reason] = {**{name: entry for name, (entry, _) in _VENUE.items()}, **_BY_NAME}
#: The Aster error codes behind each reason that has some.
VENUE_CODES: dict[str, tuple[int, ...]] = {name: numbers for name, (_, numbers) in _VENUE.items()}

#: The reasons of ``google.rpc.BadRequest.FieldViolation`` (one per bad field).
FIELD_REASONS: dict[str, str] = {
    "REQUIRED": "The field must be set (for this order type or market, where the comment says so).",
    "INVALID_FORMAT": "The value does not match the field's pattern (a decimal string, an identifier, a UUID).",
    "NOT_POSITIVE": "A quantity or price must be above zero.",
    "OUT_OF_RANGE": "The value is outside the field's range (leverage 1 to 125, a timestamp, a negative page "
                    "size or cursor).",
    "TOO_LONG": "The value is longer than the field allows.",
    "TOO_MANY_DIGITS": "A decimal with more than 20 integer or 18 fraction digits.",
    "UNKNOWN_VALUE": "An enum value the contract does not define.",
    "NOT_ALLOWED": "The field must be empty here (a price on a MARKET order, leverage on SPOT, ...).",
    "IN_THE_PAST": "A time that has already passed (a GTD order's expire_time).",
    "UNKNOWN_REFERENCE": "The identifier names nothing that exists (an order manager to create first).",
    "TOO_MANY_ITEMS": "A batch above its limit (5000 orders).",
    "NO_CHANGE": "A replacement that changes neither the quantity nor the price.",
    "DIFFERS_FROM_APPROVED": "SubmitOrder: a field the risk token does not sign (the order manager, the expiry, "
                             "the order time, the status, a fill, ...) is set to something other than "
                             "the approved order's: send the order as Risk answered it, or leave the field unset.",
    "TOO_LARGE": "The value is larger than the field allows (an order manager's metadata: 16 KiB as JSON, "
                 "nesting depth 8).",
    "INVALID_VALUE": "Any other malformed value; the description says what.",
}


def reason(name: str) -> Reason | None:
    return REASONS.get(name)


# -- the documentation page ------------------------------------------------------------------
_HEADER = """# Errors

<!-- Generated by `python -m services.common.error_catalog --write` from
services/common/error_catalog.py, the table the servers answer from. Do not edit by hand:
a test fails when this page and the table disagree. -->

A refused call ends with a gRPC status code a client can act on and a message that starts
with a stable reason code (`TOKEN_EXPIRED: the risk token has expired`). The status's
`grpc-status-details-bin` trailer holds a `google.rpc.Status` whose details are:

- one `google.rpc.ErrorInfo`, always: `domain` `tessera`, the `reason`, and `metadata`
  with the keys of the table below (only those the server knows for that call; values
  are text). `TOKEN_ALREADY_USED`, for example, carries the order's `order_id` and its
  current `status`.
- one `google.rpc.BadRequest` for `INVALID_ARGUMENT`: every bad field of the request at
  once, each a field violation with its path (`order.quantity`, `orders[3].venue`), a
  reason of its own (the field reasons below) and a description.
- one `google.rpc.RetryInfo` when the code is retryable (UNAVAILABLE, ABORTED,
  RESOURCE_EXHAUSTED): wait `retry_delay`, then retry. Where the call may have taken
  effect (an UNAVAILABLE submission or cancel), read the order first: a submission
  repeated with the same order and token is answered with the order, never sent twice.

A batch RPC (`ValidateOrders`, `SubmitOrders`) answers per item: a failed item's
`ItemError` carries what the single-item RPC would have answered: `code` (its name),
`status_code` (typed), `reason`, `message`, `metadata`, `field_violations` and, when
retryable, `retry_delay`.

A risk rejection is not an error: `ValidateOrder` answers the order `REJECTED` with its
violations (`RiskViolation.code`, listed by `GetLimits`).

## Reasons

| reason | code | retryable | metadata keys | answered by | meaning |
|---|---|---|---|---|---|
"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown() -> str:
    """``docs/errors.md``: the reasons and the field reasons."""
    order = {code: index for index, code in enumerate((
        "INVALID_ARGUMENT", "UNAUTHENTICATED", "PERMISSION_DENIED", "NOT_FOUND", "ALREADY_EXISTS",
        "FAILED_PRECONDITION", "ABORTED", "RESOURCE_EXHAUSTED", "UNAVAILABLE", "INTERNAL"))}
    rows = []
    for entry in sorted(REASONS.values(), key=lambda r: (order[r.code], r.name not in _BY_NAME, r.name)):
        retry = f"yes, after {entry.retry_seconds:g} s" if entry.retryable else "no"
        keys = ", ".join(f"`{key}`" for key in entry.metadata) or "-"
        meaning = entry.meaning
        numbers = VENUE_CODES.get(entry.name)
        if numbers:
            meaning += " Aster codes: " + ", ".join(str(n) for n in numbers) + "."
        rows.append(f"| `{entry.name}` | {entry.code} | {retry} | {keys} | {', '.join(entry.services)} | "
                    f"{_cell(meaning)} |")
    fields = "\n".join(f"| `{name}` | {_cell(meaning)} |" for name, meaning in FIELD_REASONS.items())
    return (_HEADER + "\n".join(rows) + "\n\n## Field reasons\n\n"
            "The `reason` of each `google.rpc.BadRequest.FieldViolation` (and of `ItemError.field_violations`):\n\n"
            "| field reason | meaning |\n|---|---|\n" + fields + "\n")


DOCS_PAGE = pathlib.Path(__file__).resolve().parents[2] / "docs" / "errors.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print, write or check docs/errors.md from the error table.")
    parser.add_argument("--write", action="store_true", help=f"write {DOCS_PAGE.name}")
    parser.add_argument("--check", action="store_true", help=f"exit 1 when {DOCS_PAGE.name} is stale")
    args = parser.parse_args(argv)
    text = markdown()
    if args.write:
        DOCS_PAGE.write_text(text)
        return 0
    if args.check:
        current = DOCS_PAGE.read_text() if DOCS_PAGE.exists() else ""
        if current != text:
            print(f"{DOCS_PAGE} is stale: run python -m services.common.error_catalog --write", file=sys.stderr)
            return 1
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
