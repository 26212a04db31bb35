"""Protobuf messages to domain objects and back, with input validation.

Everything a client sends passes through here first; a malformed field raises
:class:`~services.domain.errors.InvalidOrder` naming the field, which the servicers
answer with ``INVALID_ARGUMENT``.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import re
from decimal import Decimal
from typing import Any, TypeVar

from google.protobuf import json_format, struct_pb2, timestamp_pb2

import core_ext
from services.domain import (
    LiquiditySide,
    MarketType,
    Order,
    OrderEvent,
    OrderManager,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
    Trade,
    WorkingType,
    utcnow,
)
from services.domain.execution import CancelFailure, ExecutionReport, Fill
from services.domain.errors import DomainError, InvalidOrder
from services.domain.ledger import to_scale
from tessera.common.v1 import types_pb2 as pb

E = TypeVar("E", bound=enum.Enum)

MAX_DECIMAL_LENGTH = 48
# What the store's Numeric(38, 18) columns hold exactly.
MAX_INTEGER_DIGITS = 20
MAX_FRACTION_DIGITS = 18
MAX_LEVERAGE = Decimal(125)
#: A trailing stop's callback rate, in percent: the venue's bounds (``callbackRate``).
MIN_CALLBACK_RATE, MAX_CALLBACK_RATE = Decimal("0.1"), Decimal(5)
_ACCOUNT = re.compile(r"^[A-Za-z0-9._:@-]{1,64}$")
_CLIENT_ORDER_ID = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")  # the venue's own rule
_VENUE = re.compile(r"^[a-z0-9_-]{1,32}$")
_SYMBOL = re.compile(r"^[A-Z0-9]{2,24}$")
_ORDER_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_IDENTIFIER = re.compile(r"^[A-Za-z0-9._:@/-]{1,128}$")
#: The longest value of each identifier (docs/contract.md, "Limits"): longer is TOO_LONG.
MAX_LENGTHS: dict[re.Pattern[str], int] = {
    _ACCOUNT: 64, _CLIENT_ORDER_ID: 36, _VENUE: 32, _SYMBOL: 24, _ORDER_ID: 36, _IDENTIFIER: 128,
}
#: An order manager's metadata: at most this many bytes as compact JSON (UTF-8)...
MAX_METADATA_BYTES = 16 * 1024
#: ...nested at most this deep (an object or list inside the top object is depth 2).
MAX_METADATA_DEPTH = 8
#: A free-text reason (the kill switch, a trading state change): at most this many characters.
MAX_REASON_LENGTH = 500

_ENUM_PREFIXES: dict[type[enum.Enum], tuple[Any, str]] = {
    Side: (pb.Side, "SIDE_"),
    OrderType: (pb.OrderType, "ORDER_TYPE_"),
    TimeInForce: (pb.TimeInForce, "TIME_IN_FORCE_"),
    MarketType: (pb.MarketType, "MARKET_TYPE_"),
    OrderStatus: (pb.OrderStatus, "ORDER_STATUS_"),
    LiquiditySide: (pb.LiquiditySide, "LIQUIDITY_SIDE_"),
    WorkingType: (pb.WorkingType, "WORKING_TYPE_"),
}


# -- scalar helpers -------------------------------------------------------------------
# Wire value <-> domain member, per enum, built once from the contract (None: UNSPECIFIED).
_FROM_WIRE: dict[Any, dict[int, Any]] = {
    domain: {number: (None if name.endswith("_UNSPECIFIED") else domain(name[len(prefix):]))
             for name, number in wrapper.items()}
    for domain, (wrapper, prefix) in _ENUM_PREFIXES.items()
}
_TO_WIRE: dict[Any, int] = {member: number for table in _FROM_WIRE.values()
                            for number, member in table.items() if member is not None}


Problems = list[InvalidOrder]


def _refuse(problems: Problems | None, field: str, problem: str, violation: str) -> None:
    """Raise the field's error, or note it in ``problems`` (then the caller goes on
    with the other fields and raises them all at the end, see :func:`raise_problems`)."""
    error = InvalidOrder(field, problem, violation=violation)
    if problems is None:
        raise error
    problems.append(error)


#: The one character PostgreSQL cannot store in text or jsonb (SQLite would): free text
#: holding it is refused as input on every backend, never failed on at the write.
NUL = "\x00"


def check_storable(value: str, field: str, *, problems: Problems | None = None) -> str:
    """Free text as a client gave it, refused ``INVALID_VALUE`` if it holds a NUL (U+0000)."""
    if NUL in value:
        _refuse(problems, field, "holds a NUL character (U+0000), which cannot be stored", "INVALID_VALUE")
    return value


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return NUL in value
    if isinstance(value, dict):
        return any(NUL in key or _holds_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_holds_nul(item) for item in value)
    return False


def raise_problems(problems: Problems) -> None:
    """Raise every noted problem at once (one ``InvalidOrder`` with all violations)."""
    if problems:
        raise InvalidOrder.of(problems)


def enum_from_proto(domain_enum: type[E], value: int, field: str, *, required: bool = True,
                    problems: Problems | None = None) -> E | None:
    table = _FROM_WIRE[domain_enum]
    if value not in table:
        return _refuse(problems, field, f"unknown value {value}", "UNKNOWN_VALUE")
    member = table[value]
    if member is None and required:
        return _refuse(problems, field, "required", "REQUIRED")
    return member


def enum_to_proto(value: enum.Enum | None) -> int:
    return 0 if value is None else _TO_WIRE[value]


#: Decimal text already parsed (and found within the limits) -> its value; and values
#: already formatted -> their canonical text. The order path sees the same few
#: quantities and prices over and over: a dict lookup instead of the canonical encoder.
#: Both are keyed by what fully decides the result (the text; the value, whose
#: canonical form does not depend on its exponent) and bounded (cleared when full).
_PARSED: dict[str, Decimal] = {}
_FORMATTED: dict[Decimal, str] = {}
_MEMO_SIZE = 4096


def parse_decimal(text: str, field: str, *, required: bool = True, positive: bool = True,
                  problems: Problems | None = None) -> Decimal | None:
    value = _PARSED.get(text)
    if value is None:
        if text == "":
            if required:
                return _refuse(problems, field, "required", "REQUIRED")
            return None
        value = _parse_decimal(text, field, problems)
        if value is None:
            return None
    if positive and value <= 0:
        return _refuse(problems, field, f"must be positive, got {text}", "NOT_POSITIVE")
    return value


def _parse_decimal(text: str, field: str, problems: Problems | None) -> Decimal | None:
    if len(text) > MAX_DECIMAL_LENGTH:
        return _refuse(problems, field, f"longer than {MAX_DECIMAL_LENGTH} characters", "TOO_LONG")
    try:
        canonical = core_ext.canonical_decimal(text)
    except core_ext.CanonicalEncodingError:
        return _refuse(problems, field, f"not a plain decimal number: {text[:32]!r}", "INVALID_FORMAT")
    whole, _, fraction = canonical.lstrip("-").partition(".")
    if len(fraction) > MAX_FRACTION_DIGITS or len(whole) > MAX_INTEGER_DIGITS:
        return _refuse(problems, field, f"at most {MAX_INTEGER_DIGITS} integer and {MAX_FRACTION_DIGITS} decimal "
                                        f"digits, got {text[:32]}", "TOO_MANY_DIGITS")
    value = Decimal(canonical)
    if len(_PARSED) >= _MEMO_SIZE:
        _PARSED.clear()
    _PARSED[text] = value
    return value


def format_decimal(value: Decimal | None) -> str:
    if value is None:
        return ""
    text = _FORMATTED.get(value)
    if text is None:
        text = core_ext.canonical_decimal(format(value, "f"))
        if len(_FORMATTED) >= _MEMO_SIZE:
            _FORMATTED.clear()
        _FORMATTED[value] = text
    return text


def check_text(value: str, pattern: re.Pattern[str], field: str, *, required: bool = True,
               problems: Problems | None = None) -> str | None:
    if value == "":
        if required:
            return _refuse(problems, field, "required", "REQUIRED")
        return None
    limit = MAX_LENGTHS.get(pattern)
    if limit is not None and len(value) > limit:
        return _refuse(problems, field, f"longer than {limit} characters ({len(value)})", "TOO_LONG")
    if not pattern.fullmatch(value):
        shown = value if len(value) <= 40 else value[:40] + "..."
        return _refuse(problems, field, f"invalid value {shown!r} (expected {pattern.pattern})", "INVALID_FORMAT")
    return value


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
#: 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z, a Timestamp's range.
_MIN_SECONDS, _MAX_SECONDS = -62_135_596_800, 253_402_300_799


def timestamp_from_proto(message: Any, name: str, *, problems: Problems | None = None) -> dt.datetime | None:
    """The field as an aware UTC datetime; None when unset.

    Raises
    ------
    InvalidOrder
        Seconds or nanos outside a Timestamp's range (years 1 to 9999).
    """
    if not message.HasField(name):
        return None
    stamp = getattr(message, name)
    seconds, nanos = stamp.seconds, stamp.nanos
    # What Timestamp.ToDatetime accepts, computed without its Python arithmetic.
    if not (_MIN_SECONDS <= seconds <= _MAX_SECONDS and 0 <= nanos < 1_000_000_000):
        return _refuse(problems, name, "not a valid timestamp (years 1 to 9999, nanos below 10^9)", "OUT_OF_RANGE")
    return _EPOCH + dt.timedelta(seconds=seconds, microseconds=nanos // 1000)


_MICROSECOND = dt.timedelta(microseconds=1)


def timestamp_to_proto(value: dt.datetime | None) -> timestamp_pb2.Timestamp | None:
    """A Timestamp of ``value`` (a naive datetime is taken as UTC, as ``FromDatetime``
    takes it), exact to the microsecond, without ``FromDatetime``'s Python arithmetic."""
    if value is None:
        return None
    seconds, nanos = _seconds_and_nanos(value)
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)


#: The last time converted and its (seconds, nanos): a batch stamps its orders and events
#: with one clock reading, converted once.
_LAST_STAMP: tuple[dt.datetime | None, int, int] = (None, 0, 0)


def _seconds_and_nanos(value: dt.datetime) -> tuple[int, int]:
    global _LAST_STAMP
    last = _LAST_STAMP
    if last[0] is value:
        return last[1], last[2]
    aware = value if value.tzinfo is not None else value.replace(tzinfo=dt.timezone.utc)
    micros = (aware - _EPOCH) // _MICROSECOND
    seconds, nanos = micros // 1_000_000, micros % 1_000_000 * 1000
    _LAST_STAMP = (value, seconds, nanos)
    return seconds, nanos


def set_timestamp(stamp: timestamp_pb2.Timestamp, value: dt.datetime) -> None:
    """Set a message's Timestamp field in place to ``value`` (see :func:`timestamp_to_proto`)."""
    stamp.seconds, stamp.nanos = _seconds_and_nanos(value)


def struct_to_proto(value: dict[str, Any] | None) -> struct_pb2.Struct | None:
    if not value:
        return None
    message = struct_pb2.Struct()
    message.update(value)
    return message


def struct_from_proto(message: Any, name: str) -> dict[str, Any]:
    if not message.HasField(name):
        return {}
    return json_format.MessageToDict(getattr(message, name))


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def metadata_from_proto(message: Any, name: str, *, problems: Problems | None = None) -> dict[str, Any]:
    """A client's ``Struct`` to store (an order manager's metadata), within its bounds:
    at most :data:`MAX_METADATA_BYTES` as compact JSON and :data:`MAX_METADATA_DEPTH`
    levels deep; past either, ``TOO_LARGE``. A key or text holding a NUL (U+0000) is
    ``INVALID_VALUE``."""
    value = struct_from_proto(message, name)
    if _holds_nul(value):
        _refuse(problems, name, "a key or value holds a NUL character (U+0000), which cannot be stored",
                "INVALID_VALUE")
        return value
    size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_METADATA_BYTES:
        _refuse(problems, name, f"{size} bytes as JSON, at most {MAX_METADATA_BYTES}", "TOO_LARGE")
    elif _depth(value) > MAX_METADATA_DEPTH:
        _refuse(problems, name, f"nested {_depth(value)} levels deep, at most {MAX_METADATA_DEPTH}", "TOO_LARGE")
    return value


def check_reason(value: str, field: str = "reason", *, problems: Problems | None = None) -> str:
    """A required free-text reason, trimmed: at most :data:`MAX_REASON_LENGTH` characters,
    without a NUL (U+0000)."""
    text = value.strip()
    if not text:
        _refuse(problems, field, "required", "REQUIRED")
    elif len(text) > MAX_REASON_LENGTH:
        _refuse(problems, field, f"longer than {MAX_REASON_LENGTH} characters ({len(text)})", "TOO_LONG")
    else:
        check_storable(text, field, problems=problems)
    return text


# -- orders ---------------------------------------------------------------------------
def _order_fields(message: Any, problems: Problems) -> dict[str, Any]:
    """Validate the fields an OrderIntent and an Order share, noting every problem in
    ``problems`` (a field that is wrong is None in the answer)."""
    market_type = enum_from_proto(MarketType, message.market_type, "market_type", problems=problems)
    order_type = enum_from_proto(OrderType, message.order_type, "order_type", problems=problems)
    needs_price = order_type is not None and order_type.needs_price
    needs_stop = order_type is not None and order_type.needs_stop_price
    trailing = order_type is OrderType.TRAILING_STOP_MARKET
    # close_position and quote_order_qty take the quantity's place: the venue decides it.
    sized_by_venue = message.close_position or message.quote_order_qty != ""
    fields: dict[str, Any] = {
        "account": check_text(message.account, _ACCOUNT, "account", problems=problems),
        "venue": check_text(message.venue, _VENUE, "venue", problems=problems),
        "market_type": market_type,
        "symbol": check_text(message.symbol, _SYMBOL, "symbol", problems=problems),
        "side": enum_from_proto(Side, message.side, "side", problems=problems),
        "order_type": order_type,
        "quantity": parse_decimal(message.quantity, "quantity", required=not sized_by_venue, problems=problems),
        "price": parse_decimal(message.price, "price", required=needs_price, problems=problems),
        "stop_price": parse_decimal(message.stop_price, "stop_price", required=needs_stop, problems=problems),
        "time_in_force": enum_from_proto(TimeInForce, message.time_in_force, "time_in_force", required=False,
                                         problems=problems) or TimeInForce.GTC,
        "reduce_only": message.reduce_only,
        "post_only": message.post_only,
        "leverage": parse_decimal(message.leverage, "leverage", required=False, problems=problems),
        "order_manager_id": check_text(message.order_manager_id, _IDENTIFIER, "order_manager_id", required=False,
                                       problems=problems),
        "expire_time": timestamp_from_proto(message, "expire_time", problems=problems),
        "close_position": message.close_position,
        "working_type": enum_from_proto(WorkingType, message.working_type, "working_type", required=False,
                                        problems=problems),
        "price_protect": message.price_protect,
        "activation_price": parse_decimal(message.activation_price, "activation_price", required=False,
                                          problems=problems),
        "callback_rate": parse_decimal(message.callback_rate, "callback_rate", required=trailing, problems=problems),
        "quote_order_qty": parse_decimal(message.quote_order_qty, "quote_order_qty", required=False,
                                         problems=problems),
    }
    if order_type is not None:
        if fields["price"] is not None and not needs_price:
            _refuse(problems, "price", f"must be empty for {order_type.value} orders", "NOT_ALLOWED")
        if fields["stop_price"] is not None and not needs_stop:
            _refuse(problems, "stop_price", f"must be empty for {order_type.value} orders", "NOT_ALLOWED")
        if fields["post_only"] and order_type is not OrderType.LIMIT:
            _refuse(problems, "post_only", "only LIMIT orders can be post-only", "NOT_ALLOWED")
        _conditional_fields(fields, market_type, order_type, problems)
    leverage = fields["leverage"]
    if market_type is MarketType.SPOT:
        if leverage is not None:
            _refuse(problems, "leverage", "must be empty for SPOT orders", "NOT_ALLOWED")
        if fields["reduce_only"]:
            _refuse(problems, "reduce_only", "only FUTURES orders can be reduce-only", "NOT_ALLOWED")
    elif leverage is not None and (leverage != leverage.to_integral_value() or leverage > MAX_LEVERAGE):
        _refuse(problems, "leverage", f"must be a whole number from 1 to {MAX_LEVERAGE}", "OUT_OF_RANGE")
    if fields["time_in_force"] is TimeInForce.GTD:
        if not message.HasField("expire_time"):
            _refuse(problems, "expire_time", "required for GTD orders", "REQUIRED")
    elif fields["expire_time"] is not None:
        _refuse(problems, "expire_time", "only GTD orders take an expire time", "NOT_ALLOWED")
    return fields


#: The order types that take ``close_position`` and ``price_protect`` (the venue's rules).
_CLOSING_TYPES = frozenset({OrderType.STOP_MARKET, OrderType.TAKE_PROFIT_MARKET})
_PROTECTED_TYPES = frozenset({OrderType.STOP_MARKET, OrderType.STOP_LIMIT, OrderType.TAKE_PROFIT,
                              OrderType.TAKE_PROFIT_MARKET})


def _conditional_fields(fields: dict[str, Any], market_type: MarketType | None, order_type: OrderType,
                        problems: Problems) -> None:
    """The fields of conditional and quote-amount orders, as the venue allows them
    (close_position, working_type, price_protect, activation_price, callback_rate,
    quote_order_qty): each only with the order types and market it applies to."""
    kind = order_type.value
    spot = market_type is MarketType.SPOT
    if order_type is OrderType.TRAILING_STOP_MARKET and spot:
        _refuse(problems, "order_type", "TRAILING_STOP_MARKET orders are FUTURES only", "NOT_ALLOWED")
    if fields["close_position"]:
        if spot:
            _refuse(problems, "close_position", "only FUTURES orders can close a position", "NOT_ALLOWED")
        elif order_type not in _CLOSING_TYPES:
            _refuse(problems, "close_position", f"only STOP_MARKET and TAKE_PROFIT_MARKET orders close a position, "
                                                f"not {kind}", "NOT_ALLOWED")
        if fields["quantity"] is not None:
            _refuse(problems, "quantity", "must be empty with close_position: the venue closes the whole position",
                    "NOT_ALLOWED")
        if fields["reduce_only"]:
            _refuse(problems, "reduce_only", "cannot go with close_position (which only reduces already)",
                    "NOT_ALLOWED")
    if fields["working_type"] is not None and (spot or not order_type.is_conditional):
        _refuse(problems, "working_type", "only FUTURES conditional orders (STOP_*, TAKE_PROFIT_*, "
                                          f"TRAILING_STOP_MARKET) take a working type, not {'SPOT' if spot else kind}",
                "NOT_ALLOWED")
    if fields["price_protect"] and (spot or order_type not in _PROTECTED_TYPES):
        _refuse(problems, "price_protect", "only FUTURES STOP_MARKET, STOP_LIMIT, TAKE_PROFIT and TAKE_PROFIT_MARKET "
                                           f"orders take price protection, not {'SPOT' if spot else kind}",
                "NOT_ALLOWED")
    trailing = order_type is OrderType.TRAILING_STOP_MARKET
    if fields["activation_price"] is not None and not trailing:
        _refuse(problems, "activation_price", f"only TRAILING_STOP_MARKET orders take one, not {kind}", "NOT_ALLOWED")
    rate = fields["callback_rate"]
    if rate is not None:
        if not trailing:
            _refuse(problems, "callback_rate", f"only TRAILING_STOP_MARKET orders take one, not {kind}", "NOT_ALLOWED")
        elif not MIN_CALLBACK_RATE <= rate <= MAX_CALLBACK_RATE:
            _refuse(problems, "callback_rate", f"must be from {MIN_CALLBACK_RATE} to {MAX_CALLBACK_RATE} (percent), "
                                               f"got {format_decimal(rate)}", "OUT_OF_RANGE")
    if fields["quote_order_qty"] is not None:
        if not spot or order_type is not OrderType.MARKET or fields["side"] is not Side.BUY:
            _refuse(problems, "quote_order_qty", "only SPOT MARKET BUY orders spend a quote amount", "NOT_ALLOWED")
        if fields["quantity"] is not None:
            _refuse(problems, "quantity", "must be empty with quote_order_qty: the venue buys what the quote amount "
                                          "buys", "NOT_ALLOWED")


def order_from_intent(intent: pb.OrderIntent, *, order_id: str, client_order_id: str) -> Order:
    """A new PENDING order from a client's intent (validated).

    Raises
    ------
    InvalidOrder
        With a violation for every bad field.
    """
    problems: Problems = []
    given = check_text(intent.client_order_id, _CLIENT_ORDER_ID, "client_order_id", required=False, problems=problems)
    fields = _order_fields(intent, problems)
    if problems:
        raise InvalidOrder.of(problems)
    return Order(order_id=order_id, client_order_id=given or client_order_id, **fields)


def order_from_proto(message: pb.Order) -> Order:
    """An order as a client presents it for submission (validated; status not trusted).

    Raises
    ------
    InvalidOrder
        With a violation for every bad field.
    """
    problems: Problems = []
    order_id = check_text(message.order_id, _ORDER_ID, "order_id", problems=problems)
    client_order_id = check_text(message.client_order_id, _CLIENT_ORDER_ID, "client_order_id", problems=problems)
    fields = _order_fields(message, problems)
    if problems:
        raise InvalidOrder.of(problems)
    return Order(order_id=order_id, client_order_id=client_order_id, **fields)  # type: ignore[arg-type]


def _by_number(domain_enum: type[E]) -> dict[int, E]:
    """Wire value -> domain member, for the values the domain has (not UNSPECIFIED)."""
    wrapper, prefix = _ENUM_PREFIXES[domain_enum]
    return {number: domain_enum(name[len(prefix):]) for name, number in wrapper.items()
            if not name.endswith("_UNSPECIFIED")}


_MARKET_TYPES = _by_number(MarketType)
_SIDES = _by_number(Side)
_ORDER_TYPES = _by_number(OrderType)
_TIMES_IN_FORCE = {0: TimeInForce.GTC, **_by_number(TimeInForce)}
_WORKING_TYPES: dict[int, WorkingType | None] = {0: None, **_by_number(WorkingType)}


def order_from_signed_proto(message: pb.Order) -> Order:
    """An order whose risk token verified against this very message: its signed fields
    are the ones Risk validated and signed, so they are taken as they are; the fields
    the token does not sign are validated as usual.

    Raises
    ------
    InvalidOrder
        An unsigned field is malformed (``expire_time``, ``filled_quantity``).
    """
    return Order(
        order_id=message.order_id,
        client_order_id=message.client_order_id,
        account=message.account,
        venue=message.venue,
        market_type=_MARKET_TYPES[message.market_type],
        symbol=message.symbol,
        side=_SIDES[message.side],
        order_type=_ORDER_TYPES[message.order_type],
        quantity=Decimal(message.quantity) if message.quantity else None,
        price=Decimal(message.price) if message.price else None,
        stop_price=Decimal(message.stop_price) if message.stop_price else None,
        time_in_force=_TIMES_IN_FORCE[message.time_in_force],
        reduce_only=message.reduce_only,
        post_only=message.post_only,
        leverage=Decimal(message.leverage) if message.leverage else None,
        close_position=message.close_position,
        working_type=_WORKING_TYPES[message.working_type],
        price_protect=message.price_protect,
        activation_price=Decimal(message.activation_price) if message.activation_price else None,
        callback_rate=Decimal(message.callback_rate) if message.callback_rate else None,
        quote_order_qty=Decimal(message.quote_order_qty) if message.quote_order_qty else None,
        expire_time=timestamp_from_proto(message, "expire_time"),
        status=enum_from_proto(OrderStatus, message.status, "status", required=False) or OrderStatus.PENDING,
        filled_quantity=parse_decimal(message.filled_quantity, "filled_quantity", required=False, positive=False)
        or Decimal(0),
    )


def order_as_approved(message: pb.Order) -> Order | None:
    """The order as Risk stored it at approval, from a message whose risk token verified:
    the signed fields as they are, the unsigned ones Risk also stored (its id's order
    time, the order manager, the expiry) as the message gives them, everything else as
    an order has it before its first event. None when an unsigned field is missing or
    malformed: the claim then reads the stored order instead of trusting the message
    (see :class:`services.store.order_sets.Claims`, which checks every unsigned value
    against the stored one in its compare-and-set)."""
    try:
        order = order_from_signed_proto(message)
        order_time = timestamp_from_proto(message, "order_time")
    except (DomainError, KeyError, ArithmeticError, ValueError):
        return None
    if order_time is None:
        return None
    order.status = OrderStatus.PENDING
    order.filled_quantity = Decimal(0)
    order.order_manager_id = message.order_manager_id or None
    order.order_time = order.updated_time = order_time
    return order


#: The reason of a field the client sent that differs from the approved order's.
DIFFERS = "DIFFERS_FROM_APPROVED"


def check_output_fields_as_approved(message: pb.Order) -> None:
    """Refuse an order message whose output-only fields (which the risk token does not
    sign) say something an approved order cannot be: a status other than APPROVED, a
    fill, a venue id, reject reasons, a replacement. Unset is fine (a client may send
    only what it chose); set, it must be what Risk answered. No store access.

    Raises
    ------
    InvalidOrder
        ``DIFFERS_FROM_APPROVED`` for each such field, named.
    """
    problems: Problems = []
    if message.status not in (pb.ORDER_STATUS_UNSPECIFIED, pb.ORDER_STATUS_APPROVED):
        _refuse(problems, "status", "an order is submitted as Risk approved it: APPROVED or unset", DIFFERS)
    if message.filled_quantity:
        try:
            filled = Decimal(message.filled_quantity)
        except ArithmeticError:
            filled = None
        if filled is None or not filled.is_finite() or filled != 0:
            _refuse(problems, "filled_quantity", "an approved order has filled nothing: 0 or unset", DIFFERS)
    for name in ("average_fill_price", "remote_order_id", "replaced_by_order_id", "venue_executed_quantity"):
        if getattr(message, name):
            _refuse(problems, name, "an approved order has none: leave it unset", DIFFERS)
    if message.reject_reasons:
        _refuse(problems, "reject_reasons", "an approved order has none: leave it empty", DIFFERS)
    raise_problems(problems)


def unsigned_fields_sent(message: pb.Order) -> dict[str, Any]:
    """The unsigned fields Risk stored with the approved order that the message sets
    (the order manager, the expiry, the order time), as the order holds them: a claim
    compares each with the stored order (see :class:`services.store.order_sets.Claims`).
    A malformed value is left out here: the token's checks or the order's conversion
    refuse it. Not the version: validating the same client order id again re-issues the
    token and moves the approved order's version on, and an answer from before is as
    good as the new one (its own token still verifies)."""
    sent: dict[str, Any] = {}
    if message.order_manager_id:
        sent["order_manager_id"] = message.order_manager_id
    for name in ("expire_time", "order_time"):
        if message.HasField(name):
            try:
                sent[name] = timestamp_from_proto(message, name)
            except DomainError:
                pass
    return sent


def order_to_proto(order: Order) -> pb.Order:
    """The order as the contract carries it (the fields an order does not have left unset)."""
    wire = _TO_WIRE
    message = pb.Order(
        order_id=order.order_id,
        client_order_id=order.client_order_id,
        account=order.account,
        venue=order.venue,
        market_type=wire[order.market_type],
        symbol=order.symbol,
        side=wire[order.side],
        order_type=wire[order.order_type],
        quantity=format_decimal(order.quantity),
        time_in_force=wire[order.time_in_force],
        status=wire[order.status],
        filled_quantity=format_decimal(order.filled_quantity),
        version=order.version,
    )
    # Set one by one, only when present: most orders have no price, leverage, manager...
    if order.price is not None:
        message.price = format_decimal(order.price)
    if order.stop_price is not None:
        message.stop_price = format_decimal(order.stop_price)
    if order.reduce_only:
        message.reduce_only = True
    if order.post_only:
        message.post_only = True
    if order.leverage is not None:
        message.leverage = format_decimal(order.leverage)
    if order.order_type is not _LIMIT:  # a LIMIT order has none of them
        _set_conditional_fields(message, order)
    if order.order_manager_id:
        message.order_manager_id = order.order_manager_id
    if order.average_fill_price is not None:  # at the store's scale, as every read of the order gives it
        message.average_fill_price = format_decimal(to_scale(order.average_fill_price))
    if order.remote_order_id:
        message.remote_order_id = order.remote_order_id
    if order.reject_reasons:
        message.reject_reasons.extend(order.reject_reasons)
    if order.replaces_order_id:
        message.replaces_order_id = order.replaces_order_id
    if order.replaced_by_order_id:
        message.replaced_by_order_id = order.replaced_by_order_id
    if order.raw_venue_json:
        message.raw_venue_json = order.raw_venue_json
    if order.venue_executed_quantity is not None:
        message.venue_executed_quantity = format_decimal(order.venue_executed_quantity)
    if order.expire_time is not None:
        set_timestamp(message.expire_time, order.expire_time)
    set_timestamp(message.order_time, order.order_time)
    set_timestamp(message.updated_time, order.updated_time)
    return message


_LIMIT = OrderType.LIMIT


def _set_conditional_fields(message: pb.Order, order: Order) -> None:
    """The fields of conditional and quote-amount orders, those the order has."""
    if order.close_position:
        message.close_position = True
    if order.working_type is not None:
        message.working_type = _TO_WIRE[order.working_type]
    if order.price_protect:
        message.price_protect = True
    if order.activation_price is not None:
        message.activation_price = format_decimal(order.activation_price)
    if order.callback_rate is not None:
        message.callback_rate = format_decimal(order.callback_rate)
    if order.quote_order_qty is not None:
        message.quote_order_qty = format_decimal(order.quote_order_qty)


def event_to_proto(event: OrderEvent, *, cursor: int = 0, account: str = "", symbol: str = "") -> pb.OrderEvent:
    return pb.OrderEvent(
        order_id=event.order_id,
        sequence=event.sequence,
        event_time=timestamp_to_proto(event.event_time),
        from_status=enum_to_proto(event.from_status),
        to_status=enum_to_proto(event.to_status),
        reason=event.reason,
        payload=struct_to_proto(event.payload),
        cursor=cursor,
        account=account,
        symbol=symbol,
        raw_venue_json=event.raw_venue_json or "",
    )


def trade_to_proto(trade: Trade) -> pb.Trade:
    return pb.Trade(
        trade_id=trade.trade_id,
        venue=trade.venue,
        order_id=trade.order_id,
        client_order_id=trade.client_order_id or "",
        account=trade.account,
        symbol=trade.symbol,
        side=enum_to_proto(trade.side),
        quantity=format_decimal(trade.quantity),
        price=format_decimal(trade.price),
        commission=format_decimal(trade.commission),
        commission_asset=trade.commission_asset or "",
        liquidity_side=enum_to_proto(trade.liquidity_side),
        trade_time=timestamp_to_proto(trade.trade_time),
        raw_payload=struct_to_proto(trade.raw_payload),
        raw_venue_json=trade.raw_venue_json or "",
    )


def order_manager_to_proto(manager: OrderManager) -> pb.OrderManager:
    return pb.OrderManager(
        id=manager.id,
        unique_identifier=manager.unique_identifier,
        target_account_uid=manager.target_account_uid,
        target_time=timestamp_to_proto(manager.target_time),
        order_received_time=timestamp_to_proto(manager.order_received_time),
        execution_end=timestamp_to_proto(manager.execution_end),
        status=manager.status,
        metadata=struct_to_proto(manager.metadata),
    )


IDENTIFIER_PATTERN = _IDENTIFIER
ACCOUNT_PATTERN = _ACCOUNT
CLIENT_ORDER_ID_PATTERN = _CLIENT_ORDER_ID
ORDER_ID_PATTERN = _ORDER_ID
SYMBOL_PATTERN = _SYMBOL


# -- execution reports ------------------------------------------------------------------
def report_to_proto(report: ExecutionReport) -> pb.ExecutionReport:
    fill = report.fill
    return pb.ExecutionReport(
        sequence=report.sequence,
        order_id=report.order_id,
        client_order_id=report.client_order_id,
        remote_order_id=report.remote_order_id or "",
        venue=report.venue,
        account=report.account,
        symbol=report.symbol,
        side=enum_to_proto(report.side),
        order_status=enum_to_proto(report.order_status),
        trade_id=fill.trade_id if fill else "",
        last_quantity=format_decimal(fill.quantity) if fill else "",
        last_price=format_decimal(fill.price) if fill else "",
        commission=format_decimal(fill.commission) if fill else "",
        commission_asset=(fill.commission_asset or "") if fill else "",
        liquidity_side=enum_to_proto(fill.liquidity_side) if fill else 0,
        cumulative_quantity=format_decimal(report.cumulative_quantity),
        transact_time=timestamp_to_proto(report.transact_time),
        reason=report.reason,
        raw_payload=struct_to_proto(report.raw_payload),
        raw_venue_json=report.raw_json or "",
    )


def report_from_proto(message: pb.ExecutionReport) -> ExecutionReport:
    fill = None
    if message.trade_id:
        fill = Fill(
            trade_id=message.trade_id,
            quantity=parse_decimal(message.last_quantity, "last_quantity"),
            price=parse_decimal(message.last_price, "last_price"),
            commission=parse_decimal(message.commission, "commission", required=False, positive=False)
            or Decimal(0),
            commission_asset=message.commission_asset or None,
            liquidity_side=enum_from_proto(LiquiditySide, message.liquidity_side, "liquidity_side", required=False),
        )
    return ExecutionReport(
        order_id=message.order_id,
        client_order_id=message.client_order_id,
        venue=message.venue,
        account=message.account,
        symbol=message.symbol,
        side=enum_from_proto(Side, message.side, "side"),
        order_status=enum_from_proto(OrderStatus, message.order_status, "order_status"),
        transact_time=timestamp_from_proto(message, "transact_time") or utcnow(),
        remote_order_id=message.remote_order_id or None,
        fill=fill,
        cumulative_quantity=parse_decimal(message.cumulative_quantity, "cumulative_quantity", required=False, positive=False),
        reason=message.reason,
        raw_payload=struct_from_proto(message, "raw_payload") or None,
        sequence=message.sequence,
        raw_json=message.raw_venue_json or None,
    )


def cancel_failure_to_proto(failure: CancelFailure) -> pb.VenueCancelFailure:
    return pb.VenueCancelFailure(account=failure.account, market_type=enum_to_proto(failure.market_type),
                                 symbol=failure.symbol, reason=failure.reason, message=failure.message)


def cancel_failure_from_proto(message: pb.VenueCancelFailure) -> CancelFailure:
    return CancelFailure(message.account, enum_from_proto(MarketType, message.market_type, "market_type",
                                                          required=False),
                         message.symbol, message.reason, message.message)
