"""Constants of the risk token format (design §3, ``docs/token.md``), shared by both twins.

Everything that defines the wire format and is plain data lives here once: the
field list and its order, the size limits and the verification reason codes.
"""

from __future__ import annotations

__all__ = [
    "BODY_PREFIX",
    "BOOL_FIELDS",
    "DECIMAL_FIELDS",
    "DEFAULT_SKEW_SECONDS",
    "DEFAULT_TTL_SECONDS",
    "MAX_DECIMAL_DIGITS",
    "MAX_ISSUED_AT",
    "MAX_TOKEN_LENGTH",
    "MAX_WINDOW_SECONDS",
    "OK",
    "OPTIONAL_FIELDS",
    "ORDER_FIELDS",
    "REASONS",
    "REQUEST_INVALID",
    "TOKEN_BAD_SIGNATURE",
    "TOKEN_EXPIRED",
    "TOKEN_FIELDS_CHANGED",
    "TOKEN_MALFORMED",
    "TOKEN_MISSING",
    "TOKEN_NOT_YET_VALID",
    "TOKEN_UNKNOWN_KEY",
    "TOKEN_VERSION",
    "WIRE_ENUMS",
    "WIRE_FIELD_NUMBERS",
]

TOKEN_VERSION = "v2"
#: Domain-separation prefix of the canonical order body.
BODY_PREFIX = b"tessera.order.v2"

#: The order fields bound by the token, in canonical (encoding) order.
ORDER_FIELDS: tuple[str, ...] = (
    "order_id",
    "client_order_id",
    "account",
    "venue",
    "market_type",
    "symbol",
    "side",
    "order_type",
    "quantity",
    "price",
    "stop_price",
    "time_in_force",
    "reduce_only",
    "post_only",
    "leverage",
    # Format v2: the conditional and quote-amount orders' fields.
    "close_position",
    "working_type",
    "price_protect",
    "activation_price",
    "callback_rate",
    "quote_order_qty",
)
#: Normalised with ``canonical_decimal``; None or "" encodes as "".
DECIMAL_FIELDS: frozenset[str] = frozenset(
    {"quantity", "price", "stop_price", "leverage", "activation_price", "callback_rate", "quote_order_qty"}
)
#: Encoded "true" / "false".
BOOL_FIELDS: frozenset[str] = frozenset({"reduce_only", "post_only", "close_position", "price_protect"})
#: May be absent from the mapping (encoded as ""); every other field must be present.
OPTIONAL_FIELDS: frozenset[str] = frozenset(
    {"price", "stop_price", "activation_price", "callback_rate", "quote_order_qty"}
)

#: Longest token accepted; a well-formed token is at most 169 characters.
MAX_TOKEN_LENGTH = 256
#: Most digits a canonical decimal may have (a lone leading "0" does not count).
MAX_DECIMAL_DIGITS = 40
#: Largest issued-at (12 decimal digits, year 33658).
MAX_ISSUED_AT = 999_999_999_999
#: Largest accepted ``ttl_seconds`` / ``skew_seconds`` argument.
MAX_WINDOW_SECONDS = 1_000_000_000
DEFAULT_TTL_SECONDS = 300
DEFAULT_SKEW_SECONDS = 5

# Verification reason codes, in the order the checks are made.
OK = "OK"
TOKEN_MISSING = "TOKEN_MISSING"
TOKEN_MALFORMED = "TOKEN_MALFORMED"
TOKEN_UNKNOWN_KEY = "TOKEN_UNKNOWN_KEY"
TOKEN_BAD_SIGNATURE = "TOKEN_BAD_SIGNATURE"
TOKEN_NOT_YET_VALID = "TOKEN_NOT_YET_VALID"
TOKEN_EXPIRED = "TOKEN_EXPIRED"
TOKEN_FIELDS_CHANGED = "TOKEN_FIELDS_CHANGED"
REASONS: tuple[str, ...] = (
    OK,
    TOKEN_MISSING,
    TOKEN_MALFORMED,
    TOKEN_UNKNOWN_KEY,
    TOKEN_BAD_SIGNATURE,
    TOKEN_NOT_YET_VALID,
    TOKEN_EXPIRED,
    TOKEN_FIELDS_CHANGED,
)

#: ``verify_order_request``'s verdict when the request's order has no canonical
#: encoding (a malformed wire format, a group or a tag in more bytes than its shortest
#: encoding included, an unknown or unspecified enum, a decimal field that is not a
#: plain decimal). Not a token verdict: the caller validates the order
#: field by field to say what is wrong. (The string fields go into the body as the
#: bytes that arrived: bytes Risk never signed, invalid UTF-8 or a control character,
#: simply do not verify.)
REQUEST_INVALID = "REQUEST_INVALID"

#: The enums the token binds, as ``tessera.common.v1.Order`` carries them on the wire
#: (field number -> {wire value: canonical name}). An unspecified time in force (0) is
#: GTC, as for every order Tessera accepts; the other enums have no default.
WIRE_ENUMS: dict[str, dict[int, str]] = {
    "market_type": {1: "FUTURES", 2: "SPOT"},
    "side": {1: "BUY", 2: "SELL"},
    "order_type": {1: "MARKET", 2: "LIMIT", 3: "STOP_MARKET", 4: "STOP_LIMIT", 5: "TAKE_PROFIT",
                   6: "TAKE_PROFIT_MARKET", 7: "TRAILING_STOP_MARKET"},
    "time_in_force": {0: "GTC", 1: "GTC", 2: "IOC", 3: "FOK", 4: "GTD"},
    # Unspecified is its own value: nothing is sent to the venue (which uses CONTRACT_PRICE).
    "working_type": {0: "", 1: "MARK_PRICE", 2: "CONTRACT_PRICE"},
}
#: The bound fields' numbers in ``tessera.common.v1.Order`` (and so in
#: ``SubmitOrderRequest.order`` and ``ExecuteOrderRequest.order``, both field 1, with
#: the token as field 2): 1 to 15 for the fields of format v1, 29 to 34 for v2's.
WIRE_FIELD_NUMBERS: dict[str, int] = {
    **{name: index + 1 for index, name in enumerate(ORDER_FIELDS[:15])},
    **{name: 29 + index for index, name in enumerate(ORDER_FIELDS[15:])},
}
WIRE_ORDER_FIELD = 1
WIRE_TOKEN_FIELD = 2

# Error messages built on the error path by both twins, so they match exactly.
NOT_A_DECIMAL = "not a plain decimal number"
TOO_MANY_DIGITS = f"more than {MAX_DECIMAL_DIGITS} significant digits"


def preview(value: object) -> str:
    """Return a short printable rendering of a rejected value for an error message."""
    if isinstance(value, str) and len(value) > 48:
        return repr(value[:48]) + "..."
    return repr(value)


def type_name(value: object) -> str:
    """Return the type name used in "must be ..., got X" messages."""
    return type(value).__name__


def check_verify_window(now: object, ttl_seconds: object, skew_seconds: object) -> float:
    """Validate the caller-supplied time arguments of ``verify_token``; return ``now`` as float.

    Raises
    ------
    TypeError
        ``now`` is not an int or float, or a window is not an int.
    ValueError
        ``now`` is not finite, or a window is outside ``[0, MAX_WINDOW_SECONDS]``.
    """
    if isinstance(now, bool) or not isinstance(now, (int, float)):
        raise TypeError(f"now must be an int or float, got {type_name(now)}")
    now_f = float(now)
    if now_f != now_f or now_f in (float("inf"), float("-inf")):
        raise ValueError("now must be finite")
    for name, value in (("ttl_seconds", ttl_seconds), ("skew_seconds", skew_seconds)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {type_name(value)}")
        if not 0 <= value <= MAX_WINDOW_SECONDS:
            raise ValueError(f"{name} must be between 0 and {MAX_WINDOW_SECONDS}")
    return now_f


def check_issued_at(issued_at: object) -> int:
    """Validate the ``issued_at`` argument of ``sign_token``.

    Raises
    ------
    TypeError, ValueError
        Not an int, or outside ``[0, MAX_ISSUED_AT]``.
    """
    if isinstance(issued_at, bool) or not isinstance(issued_at, int):
        raise TypeError(f"issued_at must be an int, got {type_name(issued_at)}")
    if not 0 <= issued_at <= MAX_ISSUED_AT:
        raise ValueError(f"issued_at must be between 0 and {MAX_ISSUED_AT}")
    return int(issued_at)


NONCE_ERROR = "nonce must be 32 lowercase hex characters"
BATCH_ERROR = "not a valid batch of order requests"
