"""Fuzz targets of the risk token's parser and verifier, the canonical encoding and the
OMS call credential: one function per target, each checking its own properties, driven
by hypothesis (``test_fuzz_tokens.py``) and by atheris (``atheris_tokens.py``,
coverage-guided, ``make fuzz``).

Properties:

- the verifier never raises on any token text and answers with a known reason; the
  compiled core and the pure-Python twin give the same answer (reason, key id, issued
  at, nonce); a token is accepted only if it is, character for character, one that was
  signed (a mutated token never verifies);
- ``canonical_decimal`` either returns a canonical spelling (idempotent, the same number)
  or raises ``CanonicalEncodingError``, identically in both twins;
- the OMS call credential check raises nothing but ``TokenRejected`` on any metadata;
- ``verify_order_request`` (a request as it arrives, read off the wire) answers any bytes
  with a known reason, identically in both twins, and accepts a request only when the
  order it carries, parsed by protobuf, is one that was signed (every field of format v2
  bound: an order of each new type is among the signed ones).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import core_ext
from core_ext import CanonicalEncodingError
from core_ext.vectors import UNSET_V2_FIELDS
from services.domain.errors import TokenRejected

SECRET = b"fuzz-secret-0123456789abcdef-0123456789"
OLD_SECRET = b"fuzz-old-secret-0123456789abcdef-012345"
NOW = 1_700_000_000
FIELDS = {
    "order_id": "0b5f2f0e-6d8f-4c9a-9a53-6e2f0a1b2c3d", "client_order_id": "cid-1", "account": "acct-1",
    "venue": "aster", "market_type": "FUTURES", "symbol": "BTCUSDT", "side": "BUY", "order_type": "LIMIT",
    "quantity": "0.5", "price": "65000.1", "stop_price": None, "time_in_force": "GTC", "reduce_only": False,
    "post_only": False, "leverage": None, **UNSET_V2_FIELDS,
}

#: Orders of format v2's new kinds (a trailing stop, a close-position take-profit, a spot
#: quote amount) besides FIELDS: their requests are the wire target's seeds.
WIRE_ORDERS = [
    FIELDS,
    {**FIELDS, "side": "SELL", "order_type": "TRAILING_STOP_MARKET", "price": None, "working_type": "MARK_PRICE",
     "activation_price": "66000", "callback_rate": "0.5"},
    {**FIELDS, "side": "SELL", "order_type": "TAKE_PROFIT_MARKET", "quantity": None, "price": None,
     "stop_price": "66000", "close_position": True, "price_protect": True},
    {**FIELDS, "market_type": "SPOT", "order_type": "MARKET", "quantity": None, "price": None,
     "quote_order_qty": "250"},
]

_IMPLEMENTATIONS: list[Any] = []


def implementations() -> list[Any]:
    """The pure-Python twin, and the compiled core when it is built."""
    if not _IMPLEMENTATIONS:
        _IMPLEMENTATIONS.append(core_ext.load_implementation("python"))
        try:
            _IMPLEMENTATIONS.append(core_ext.load_implementation("cython"))
        except ImportError:
            pass
    return _IMPLEMENTATIONS


class Fixture:
    """Per implementation: a key ring, an order body and a token validly signed for it."""

    def __init__(self, impl: Any) -> None:
        self.impl = impl
        self.ring = impl.KeyRing("k1", SECRET, [("k0", OLD_SECRET)])
        self.body = impl.canonical_order_body(FIELDS)
        self.token = impl.sign_token(self.ring, self.body, NOW - 10, "0" * 32)
        self.old_token = impl.sign_token(impl.KeyRing("k0", OLD_SECRET), self.body, NOW - 10, "1" * 32)


_FIXTURES: list[Fixture] = []


def fixtures() -> list[Fixture]:
    if not _FIXTURES:
        _FIXTURES.extend(Fixture(impl) for impl in implementations())
    return _FIXTURES


def valid_tokens() -> tuple[str, str]:
    first = fixtures()[0]
    return first.token, first.old_token


def _answer(result: Any) -> tuple[Any, ...]:
    return (result.ok, result.reason, result.key_id, result.issued_at, result.nonce)


def check_token(token: Any) -> str:
    """Verify ``token`` with every implementation; returns the reason."""
    answers = []
    for fixture in fixtures():
        result = fixture.impl.verify_token(fixture.ring, token, fixture.body, NOW, 300, 5)
        assert result.reason in core_ext.REASONS, result.reason
        answers.append(_answer(result))
    assert all(a == answers[0] for a in answers), answers
    signed = valid_tokens()
    if answers[0][0]:
        assert token in signed, f"a token nobody signed verified: {token!r}"
    return str(answers[0][1])


def mutate(token: str, operations: list[tuple[int, int, str]]) -> str:
    """Apply (kind, position, text) edits: replace, insert, delete, swap with, truncate at."""
    for kind, position, text in operations:
        if not token:
            token = text
            continue
        at = position % (len(token) + 1)
        kind %= 6
        if kind == 0:
            token = token[:at] + text + token[at + 1:]
        elif kind == 1:
            token = token[:at] + text + token[at:]
        elif kind == 2:
            token = token[:at] + token[at + 1 + len(text):]
        elif kind == 3:
            parts = token.split(".")
            i, j = position % len(parts), (position // 7) % len(parts)
            parts[i], parts[j] = parts[j], parts[i]
            token = ".".join(parts)
        elif kind == 4:
            parts = token.split(".")
            parts[position % len(parts)] = text
            token = ".".join(parts)
        else:
            token = token[:at]
    return token


def check_decimal(text: Any) -> None:
    outcomes = []
    for impl in implementations():
        try:
            outcomes.append(("ok", impl.canonical_decimal(text)))
        except CanonicalEncodingError as error:
            outcomes.append(("refused", str(error)))
    assert all(o == outcomes[0] for o in outcomes), outcomes
    if outcomes[0][0] == "ok":
        canonical = outcomes[0][1]
        assert implementations()[0].canonical_decimal(canonical) == canonical  # idempotent
        assert Decimal(canonical) == Decimal(text.lstrip("+") or "0")  # the same number


def check_order_body(fields: dict[str, Any]) -> None:
    outcomes = []
    for impl in implementations():
        try:
            outcomes.append(("ok", impl.canonical_order_body(fields)))
        except (CanonicalEncodingError, TypeError, ValueError) as error:
            outcomes.append(("refused", type(error).__name__, str(error)))
    assert all(o == outcomes[0] for o in outcomes), outcomes


RING = core_ext.KeyRing("k1", SECRET)

_WIRE: list[tuple[bytes, frozenset[bytes]]] = []


def wire_requests() -> tuple[list[bytes], frozenset[bytes]]:
    """Valid SubmitOrderRequests of :data:`WIRE_ORDERS`, and the signed bodies."""
    if not _WIRE:
        from core_ext import vectors

        python = implementations()[0]
        ring = python.KeyRing("k1", SECRET)
        bodies = [python.canonical_order_body(order) for order in WIRE_ORDERS]
        requests = [vectors.wire_request(order, python.sign_token(ring, body, NOW - 10, "2" * 32))
                    for order, body in zip(WIRE_ORDERS, bodies)]
        _WIRE.extend(zip(requests, [frozenset(bodies)] * len(requests)))
    return [request for request, _ in _WIRE], _WIRE[0][1]


def _parsed_body(data: bytes) -> bytes | None:
    """The canonical body of the order protobuf parses out of ``data`` (None: no message)."""
    from google.protobuf.message import DecodeError

    from core_ext import token_format
    from tessera.oms.v1 import oms_pb2

    try:
        order = oms_pb2.SubmitOrderRequest.FromString(data).order
    except DecodeError:
        return None
    fields: dict[str, Any] = {}
    for name in token_format.ORDER_FIELDS:
        value = getattr(order, name)
        fields[name] = token_format.WIRE_ENUMS[name].get(value) if name in token_format.WIRE_ENUMS else value
    try:
        return implementations()[0].canonical_order_body(fields)
    except (CanonicalEncodingError, TypeError):
        return None


def check_wire_request(data: bytes) -> str:
    """Verify ``data`` from the wire with every implementation; returns the reason."""
    answers = []
    for fixture in fixtures():
        result = fixture.impl.verify_order_request(fixture.ring, data, NOW, 300, 5)
        assert result.reason in core_ext.REASONS or result.reason == core_ext.REQUEST_INVALID, result.reason
        answers.append(_answer(result))
    assert all(a == answers[0] for a in answers), answers
    if answers[0][0]:
        signed = wire_requests()[1]
        assert _parsed_body(data) in signed, f"a request whose order nobody signed verified: {data.hex()}"
    return str(answers[0][1])


def check_call_credential(metadata: Any, method: str, genuine: set[str]) -> bool:
    """Check a call's metadata the way the Exchange does; ``genuine`` holds the credentials
    the OMS made for ``method``. Accepted only if the one presented (the last) is one of them."""
    from services.common.tokens import OMS_CREDENTIAL_METADATA, verify_oms_call

    try:
        verify_oms_call(RING, metadata, method)
    except TokenRejected as error:
        # A genuine credential for another call is refused as such; anything else is not the OMS's.
        assert error.reason in ("CALLER_NOT_OMS", "SERVICE_CREDENTIAL_MISMATCH", "SERVICE_CREDENTIAL_EXPIRED"), error.reason
        return False
    presented = [v for k, v in metadata if k == OMS_CREDENTIAL_METADATA]
    assert presented and presented[-1] in genuine, f"accepted a credential the OMS never made: {metadata!r}"
    return True
