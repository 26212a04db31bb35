"""Test vectors of the risk token format (``docs/token-vectors.json``).

Usage::

    python -m core_ext.vectors > docs/token-vectors.json   # regenerate
    python -m core_ext.vectors --check                      # exit 1 if the file is stale

The vectors are produced by the pure-Python twin from fixed keys, orders, times and
nonces, and every expected verification reason is asserted while generating, so
the file cannot contain a vector the reference implementation disagrees with.
``tests/unit/core/test_token_vectors.py`` replays the file against both twins.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from core_ext import _token_py as ref
from core_ext import token_format as fmt
from core_ext.keys import derive_key_id

__all__ = ["DEFAULT_PATH", "UNSET_V2_FIELDS", "build_vectors", "render"]

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "docs" / "token-vectors.json"

# Test keys only: never use these secrets anywhere else.
SECRET_CURRENT = bytes(range(32))
SECRET_PREVIOUS = b"tessera-test-vector-previous-secret-0001"
SECRET_DERIVED = bytes.fromhex("a5" * 48)
KEY_CURRENT = "k2025-06"
KEY_PREVIOUS = "k2025-01"
KEY_DERIVED = derive_key_id(SECRET_DERIVED)

ISSUED_AT = 1_750_000_000
TTL = fmt.DEFAULT_TTL_SECONDS
SKEW = fmt.DEFAULT_SKEW_SECONDS

#: The fields format v2 added, as an order that uses none of them has them.
UNSET_V2_FIELDS: dict[str, Any] = {
    "close_position": False,
    "working_type": "",
    "price_protect": False,
    "activation_price": None,
    "callback_rate": None,
    "quote_order_qty": None,
}

BASE_ORDER: dict[str, Any] = {
    "order_id": "6f1c1d8e-4b3a-4c2e-9a57-0d6a3b8f2e11",
    "client_order_id": "rebal-20250615-0001",
    "account": "acct-main",
    "venue": "ASTER",
    "market_type": "FUTURES",
    "symbol": "BTCUSDT",
    "side": "BUY",
    "order_type": "LIMIT",
    "quantity": "0.015",
    "price": "64250.5",
    "stop_price": None,
    "time_in_force": "GTC",
    "reduce_only": False,
    "post_only": True,
    "leverage": "5",
    **UNSET_V2_FIELDS,
}


def _order(**changes: Any) -> dict[str, Any]:
    order = dict(BASE_ORDER)
    for name, value in changes.items():
        if value is _ABSENT:
            order.pop(name, None)
        else:
            order[name] = value
    return order


_ABSENT = object()
_B64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

DECIMAL_CASES = [
    "1.50", "001.0", ".5", "5.", "100", "-0.0", "-2.50", "+7", "0", "-0", "0.000100",
    "123456789012345678901234567890.1234567891", "-0000.12345678901234567890123456789012345678900",
    "1e5", "1E-7", " 1", "1 ", "NaN", "Infinity", ".", "-", "", "1.2.3", "0x10", "1_000",
    "12345678901234567890123456789012345678901",
]

SIGNING_CASES: list[tuple[str, str, dict[str, Any], int, str]] = [
    # (name, key id, order, issued_at, nonce)
    ("futures_limit_buy", KEY_CURRENT, _order(), ISSUED_AT, "00112233445566778899aabbccddeeff"),
    ("decimal_normalisation_same_token_as_futures_limit_buy", KEY_CURRENT,
     _order(quantity="0.01500", price="064250.50", leverage="5.0"), ISSUED_AT,
     "00112233445566778899aabbccddeeff"),
    ("spot_market_sell_no_price_no_stop_no_leverage", KEY_CURRENT,
     _order(market_type="SPOT", side="SELL", order_type="MARKET", price=None, stop_price=_ABSENT,
            leverage=None, time_in_force="IOC", post_only=False),
     ISSUED_AT + 1, "0f0e0d0c0b0a09080706050403020100"),
    ("futures_stop_limit_reduce_only", KEY_CURRENT,
     _order(side="SELL", order_type="STOP_LIMIT", quantity="2", price="3010.25", stop_price="3000",
            reduce_only=True, post_only=False, leverage="10"),
     ISSUED_AT + 2, "ffffffffffffffffffffffffffffffff"),
    ("utf8_values_lengths_in_bytes", KEY_CURRENT,
     _order(account="désk-Zürich", client_order_id="ordre-№7-€", symbol="ETHUSDT"),
     ISSUED_AT + 3, "1234567890abcdef1234567890abcdef"),
    ("signed_with_previous_key", KEY_PREVIOUS, _order(client_order_id="rebal-20250615-0002"),
     ISSUED_AT + 4, "aaaaaaaaaaaaaaaabbbbbbbbbbbbbbbb"),
    ("issued_at_zero_and_bool_strings", KEY_CURRENT,
     _order(reduce_only="true", post_only="false", price="+000.000", quantity="1000000"),
     0, "00000000000000000000000000000000"),
    ("forty_digit_quantity", KEY_CURRENT,
     _order(quantity="123456789012345678901234567890.1234567891", price="0.00000001"),
     ISSUED_AT + 5, "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a"),
    ("derived_key_id", KEY_DERIVED, _order(order_id="ord-0009", leverage=""),
     ISSUED_AT + 6, "c0ffeec0ffeec0ffeec0ffeec0ffee00"),
    ("empty_strings_and_long_ids", KEY_CURRENT,
     _order(client_order_id="", order_id="x" * 64, venue="PAPER"),
     ISSUED_AT + 7, "0123456789abcdef0123456789abcdef"),
    ("futures_trailing_stop_market_mark_price", KEY_CURRENT,
     _order(side="SELL", order_type="TRAILING_STOP_MARKET", price=None, post_only=False, working_type="MARK_PRICE",
            activation_price="66000.0", callback_rate="0.50"),
     ISSUED_AT + 8, "7a7a7a7a7a7a7a7a7a7a7a7a7a7a7a7a"),
    ("futures_take_profit_market_close_position", KEY_CURRENT,
     _order(side="SELL", order_type="TAKE_PROFIT_MARKET", quantity=None, price=None, stop_price="70000",
            post_only=False, close_position=True, price_protect="true", working_type="CONTRACT_PRICE"),
     ISSUED_AT + 9, "8b8b8b8b8b8b8b8b8b8b8b8b8b8b8b8b"),
    ("futures_take_profit_limit", KEY_CURRENT,
     _order(side="SELL", order_type="TAKE_PROFIT", price="70010.5", stop_price="70000", post_only=False),
     ISSUED_AT + 10, "9c9c9c9c9c9c9c9c9c9c9c9c9c9c9c9c"),
    ("spot_market_buy_quote_order_qty", KEY_CURRENT,
     _order(market_type="SPOT", order_type="MARKET", quantity="", price=None, post_only=False, leverage=None,
            quote_order_qty="250.00", activation_price=_ABSENT, callback_rate=_ABSENT),
     ISSUED_AT + 11, "adadadadadadadadadadadadadadadad"),
]

_SECRETS = {KEY_CURRENT: SECRET_CURRENT, KEY_PREVIOUS: SECRET_PREVIOUS, KEY_DERIVED: SECRET_DERIVED}


def _ring(signing_key_id: str) -> ref.KeyRing:
    return ref.KeyRing(signing_key_id, _SECRETS[signing_key_id])


def _verifier_ring() -> ref.KeyRing:
    return ref.KeyRing(KEY_CURRENT, SECRET_CURRENT, [(KEY_PREVIOUS, SECRET_PREVIOUS)])


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _flip(text: str, index: int) -> str:
    """Replace one character of a token by another of the same alphabet."""
    char = text[index]
    replacement = "B" if char != "B" else "C"
    if char.isdigit():
        replacement = "1" if char != "1" else "2"
    return text[:index] + replacement + text[index + 1:]


def _decimal_vectors() -> list[dict[str, Any]]:
    vectors = []
    for text in DECIMAL_CASES:
        try:
            vectors.append({"input": text, "canonical": ref.canonical_decimal(text)})
        except ValueError:
            vectors.append({"input": text, "error": True})
    return vectors


def _signing_vectors() -> list[dict[str, Any]]:
    vectors = []
    for name, key_id, order, issued_at, nonce in SIGNING_CASES:
        body = ref.canonical_order_body(order)
        token = ref.sign_token(_ring(key_id), body, issued_at, nonce)
        vectors.append(
            {
                "name": name,
                "key_id": key_id,
                "secret_hex": _SECRETS[key_id].hex(),
                "order": order,
                "canonical_body": body.decode("utf-8"),
                "canonical_body_hex": body.hex(),
                "body_digest": _b64(hashlib.sha256(body).digest()),
                "issued_at": issued_at,
                "nonce": nonce,
                "signing_input": token.rsplit(".", 1)[0],
                "token": token,
            }
        )
    return vectors


def _verification_vectors() -> list[dict[str, Any]]:
    ring = _verifier_ring()
    order = _order()
    body = ref.canonical_order_body(order)
    nonce = "00112233445566778899aabbccddeeff"
    token = ref.sign_token(_ring(KEY_CURRENT), body, ISSUED_AT, nonce)
    old_token = ref.sign_token(_ring(KEY_PREVIOUS), body, ISSUED_AT, nonce)
    other_key = ref.sign_token(_ring(KEY_DERIVED), body, ISSUED_AT, nonce)
    tampered_body = ref.canonical_order_body(_order(quantity="0.15"))
    parts = token.split(".")
    fresh = ISSUED_AT + 10.0
    cases: list[tuple[str, str | None, bytes, float, str]] = [
        ("valid", token, body, fresh, fmt.OK),
        ("valid_previous_key_during_rotation", old_token, body, fresh, fmt.OK),
        ("missing_null", None, body, fresh, fmt.TOKEN_MISSING),
        ("missing_empty", "", body, fresh, fmt.TOKEN_MISSING),
        ("malformed_five_parts", ".".join(parts[:5]), body, fresh, fmt.TOKEN_MALFORMED),
        ("malformed_version_v1", "v1." + token[3:], body, fresh, fmt.TOKEN_MALFORMED),
        ("malformed_uppercase_nonce", ".".join([*parts[:3], nonce.upper(), *parts[4:]]), body,
         fresh, fmt.TOKEN_MALFORMED),
        ("malformed_iat_leading_zero", ".".join([*parts[:2], "0" + parts[2], *parts[3:]]), body,
         fresh, fmt.TOKEN_MALFORMED),
        ("malformed_padded_signature", token + "=", body, fresh, fmt.TOKEN_MALFORMED),
        ("malformed_non_canonical_base64", token[:-1] + _B64_ALPHABET[_B64_ALPHABET.index(token[-1]) | 1], body,
         fresh, fmt.TOKEN_MALFORMED),
        ("malformed_too_long", token + "A" * (fmt.MAX_TOKEN_LENGTH - len(token) + 1), body, fresh,
         fmt.TOKEN_MALFORMED),
        ("unknown_key", other_key, body, fresh, fmt.TOKEN_UNKNOWN_KEY),
        ("bad_signature_one_char", _flip(token, len(token) - 5), body, fresh,
         fmt.TOKEN_BAD_SIGNATURE),
        ("bad_signature_header_changed_iat",
         ".".join([*parts[:2], str(ISSUED_AT + 1), *parts[3:]]), body, fresh,
         fmt.TOKEN_BAD_SIGNATURE),
        ("bad_signature_key_id_swapped", ".".join([parts[0], KEY_PREVIOUS, *parts[2:]]), body, fresh,
         fmt.TOKEN_BAD_SIGNATURE),
        ("not_yet_valid", token, body, float(ISSUED_AT - SKEW - 1), fmt.TOKEN_NOT_YET_VALID),
        ("valid_at_skew_edge_from_the_future", token, body, float(ISSUED_AT - SKEW), fmt.OK),
        ("valid_just_before_expiry", token, body, ISSUED_AT + TTL + SKEW - 0.5, fmt.OK),
        ("expired_at_exact_edge", token, body, float(ISSUED_AT + TTL + SKEW), fmt.TOKEN_EXPIRED),
        ("expired_an_hour_later", token, body, ISSUED_AT + 3600.0, fmt.TOKEN_EXPIRED),
        ("fields_changed_quantity", token, tampered_body, fresh, fmt.TOKEN_FIELDS_CHANGED),
        ("expired_wins_over_fields_changed", token, tampered_body, ISSUED_AT + 3600.0,
         fmt.TOKEN_EXPIRED),
    ]
    vectors = []
    for name, candidate, candidate_body, now, reason in cases:
        result = ref.verify_token(ring, candidate, candidate_body, now, TTL, SKEW)
        if result.reason != reason:
            raise AssertionError(f"vector {name}: expected {reason}, reference gives {result.reason}")
        vectors.append(
            {
                "name": name,
                "token": candidate,
                "canonical_body_hex": candidate_body.hex(),
                "now": now,
                "ttl_seconds": TTL,
                "skew_seconds": SKEW,
                "expected_reason": reason,
            }
        )
    return vectors


# -- requests as they arrive (verify_order_request) ------------------------------------------
_WIRE_VALUES = {name: {text: number for number, text in table.items() if number} for name, table in fmt.WIRE_ENUMS.items()}


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, value: bytes | int) -> bytes:
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    return _varint(number << 3 | 2) + _varint(len(value)) + value


def wire_order(order: dict[str, Any]) -> bytes:
    """A ``tessera.common.v1.Order`` with the bound fields of ``order``, as protobuf
    encodes it (fields in number order, defaults left out)."""
    out = bytearray()
    for name in fmt.ORDER_FIELDS:
        value, number = order.get(name), fmt.WIRE_FIELD_NUMBERS[name]
        if name in fmt.WIRE_ENUMS:
            wire_value = _WIRE_VALUES[name][value] if value else 0
            if wire_value:
                out += _field(number, wire_value)
        elif name in fmt.BOOL_FIELDS:
            if value in (True, "true"):
                out += _field(number, 1)
        elif value not in (None, ""):
            out += _field(number, str(value).encode("utf-8"))
    return bytes(out)


def wire_request(order: dict[str, Any], token: str, extra: bytes = b"") -> bytes:
    """A ``SubmitOrderRequest`` (``ExecuteOrderRequest`` has the same layout)."""
    return _field(fmt.WIRE_ORDER_FIELD, wire_order(order) + extra) + (_field(fmt.WIRE_TOKEN_FIELD, token.encode()) if token else b"")


def _wire_vectors() -> list[dict[str, Any]]:
    ring = _verifier_ring()
    order = _order()
    nonce = "00112233445566778899aabbccddeeff"
    token = ref.sign_token(_ring(KEY_CURRENT), ref.canonical_order_body(order), ISSUED_AT, nonce)
    fresh = ISSUED_AT + 10.0
    request = wire_request(order, token)
    # Fields the token does not bind: status 18, filled_quantity 19, order_time 22 (a Timestamp).
    unsigned = _field(18, 2) + _field(19, b"0") + _field(22, _field(1, ISSUED_AT))
    first, second = wire_order({**order, "quantity": None}), wire_order({"quantity": order["quantity"]})
    trailing = _order(side="SELL", order_type="TRAILING_STOP_MARKET", price=None, post_only=False,
                      working_type="MARK_PRICE", activation_price="66000", callback_rate="0.5")
    trailing_token = ref.sign_token(_ring(KEY_CURRENT), ref.canonical_order_body(trailing), ISSUED_AT, nonce)
    closing = _order(side="SELL", order_type="TAKE_PROFIT_MARKET", quantity=None, price=None, stop_price="70000",
                     post_only=False, close_position=True, price_protect=True)
    closing_token = ref.sign_token(_ring(KEY_CURRENT), ref.canonical_order_body(closing), ISSUED_AT, nonce)
    quoted = _order(market_type="SPOT", order_type="MARKET", quantity=None, price=None, post_only=False,
                    leverage=None, quote_order_qty="250")
    quoted_token = ref.sign_token(_ring(KEY_CURRENT), ref.canonical_order_body(quoted), ISSUED_AT, nonce)
    cases: list[tuple[str, bytes, float, str]] = [
        ("valid", request, fresh, fmt.OK),
        ("valid_decimals_spelled_otherwise", wire_request(_order(quantity="0.01500", price="064250.50"), token),
         fresh, fmt.OK),
        ("valid_with_unsigned_and_unknown_fields", wire_request(order, token, unsigned + _field(99, b"x")), fresh, fmt.OK),
        ("valid_time_in_force_unspecified_is_gtc", wire_request({**order, "time_in_force": None}, token), fresh, fmt.OK),
        ("valid_order_in_two_parts_merged", _field(1, first) + _field(1, second) + _field(2, token.encode()),
         fresh, fmt.OK),
        ("valid_last_token_wins", _field(2, b"v1.garbage") + request, fresh, fmt.OK),
        ("fields_changed_quantity", wire_request(_order(quantity="0.15"), token), fresh, fmt.TOKEN_FIELDS_CHANGED),
        ("fields_changed_account_bytes", wire_request(_order(account="acct-other"), token), fresh,
         fmt.TOKEN_FIELDS_CHANGED),
        ("missing_token", wire_request(order, ""), fresh, fmt.TOKEN_MISSING),
        ("expired", request, ISSUED_AT + 3600.0, fmt.TOKEN_EXPIRED),
        ("valid_trailing_stop_market", wire_request(trailing, trailing_token), fresh, fmt.OK),
        ("valid_close_position", wire_request(closing, closing_token), fresh, fmt.OK),
        ("valid_quote_order_qty_spelled_otherwise", wire_request({**quoted, "quote_order_qty": "250.000"},
                                                                quoted_token), fresh, fmt.OK),
        ("fields_changed_callback_rate", wire_request({**trailing, "callback_rate": "0.6"}, trailing_token), fresh,
         fmt.TOKEN_FIELDS_CHANGED),
        ("fields_changed_activation_price_dropped", wire_request({**trailing, "activation_price": None},
                                                                 trailing_token), fresh, fmt.TOKEN_FIELDS_CHANGED),
        ("fields_changed_working_type_unspecified", wire_request({**trailing, "working_type": ""}, trailing_token),
         fresh, fmt.TOKEN_FIELDS_CHANGED),
        ("fields_changed_close_position_cleared", wire_request({**closing, "close_position": False}, closing_token),
         fresh, fmt.TOKEN_FIELDS_CHANGED),
        ("fields_changed_price_protect_cleared", wire_request({**closing, "price_protect": False}, closing_token),
         fresh, fmt.TOKEN_FIELDS_CHANGED),
        ("fields_changed_quantity_instead_of_quote", wire_request({**quoted, "quantity": "0.004",
                                                                   "quote_order_qty": None}, quoted_token),
         fresh, fmt.TOKEN_FIELDS_CHANGED),
        ("fields_changed_quote_order_qty", wire_request({**quoted, "quote_order_qty": "2500"}, quoted_token), fresh,
         fmt.TOKEN_FIELDS_CHANGED),
        ("invalid_unknown_side", wire_request(order, token, _field(7, 9)), fresh, fmt.REQUEST_INVALID),
        ("invalid_unknown_working_type", wire_request(order, token, _field(30, 3)), fresh, fmt.REQUEST_INVALID),
        ("invalid_callback_rate_not_a_decimal", wire_request({**trailing, "callback_rate": "half"}, trailing_token),
         fresh, fmt.REQUEST_INVALID),
        ("invalid_market_type_unspecified", wire_request({**order, "market_type": None}, token), fresh,
         fmt.REQUEST_INVALID),
        ("invalid_decimal_with_exponent", wire_request(_order(quantity="1.5e-2"), token), fresh, fmt.REQUEST_INVALID),
        ("invalid_truncated", request[:-7], fresh, fmt.REQUEST_INVALID),
        ("invalid_group_wire_type", request + _varint(5 << 3 | 3), fresh, fmt.REQUEST_INVALID),
        # The order's tag 0x0a written in two bytes (0x8a 0x00).
        ("invalid_tag_longer_than_its_shortest_encoding", b"\x8a\x00" + request[1:], fresh, fmt.REQUEST_INVALID),
    ]
    vectors = []
    for name, data, now, reason in cases:
        result = ref.verify_order_request(ring, data, now, TTL, SKEW)
        if result.reason != reason:
            raise AssertionError(f"wire vector {name}: expected {reason}, reference gives {result.reason}")
        vectors.append({"name": name, "request_hex": data.hex(), "now": now, "ttl_seconds": TTL,
                        "skew_seconds": SKEW, "expected_reason": reason})
    return vectors


def build_vectors() -> dict[str, Any]:
    """Return the whole vector document as plain JSON-compatible data."""
    return {
        "format": "tessera risk token v2 (see docs/token.md)",
        "note": "Test keys only. Orders use null for an absent value; a field missing from "
                "'order' is absent from the mapping.",
        "order_fields": list(fmt.ORDER_FIELDS),
        "decimal_vectors": _decimal_vectors(),
        "signing_vectors": _signing_vectors(),
        "verification_key_ring": {
            "current": {"key_id": KEY_CURRENT, "secret_hex": SECRET_CURRENT.hex()},
            "previous": [{"key_id": KEY_PREVIOUS, "secret_hex": SECRET_PREVIOUS.hex()}],
        },
        "verification_vectors": _verification_vectors(),
        "wire_note": "verify_order_request: a serialized SubmitOrderRequest / ExecuteOrderRequest "
                     "(order in field 1, token in field 2), verified with verification_key_ring.",
        "wire_vectors": _wire_vectors(),
    }


def render() -> str:
    """Return the vector file's exact text."""
    return json.dumps(build_vectors(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core_ext.vectors", description=__doc__.split("\n")[0])
    parser.add_argument("--check", nargs="?", const=str(DEFAULT_PATH), metavar="PATH",
                        help=f"compare with PATH (default {DEFAULT_PATH}) instead of printing")
    args = parser.parse_args(argv)
    text = render()
    if args.check is None:
        sys.stdout.buffer.write(text.encode("utf-8"))
        return 0
    path = Path(args.check)
    try:
        current = path.read_text(encoding="utf-8")
    except OSError as exc:
        print(f"{path}: {exc.strerror}", file=sys.stderr)
        return 1
    if current != text:
        print(f"{path} is stale; regenerate with: python -m core_ext.vectors > {path}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
