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
- the OMS call credential check raises nothing but ``TokenRejected`` on any metadata.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import core_ext
from core_ext import CanonicalEncodingError
from services.domain.errors import TokenRejected

SECRET = b"fuzz-secret-0123456789abcdef-0123456789"
OLD_SECRET = b"fuzz-old-secret-0123456789abcdef-012345"
NOW = 1_700_000_000
FIELDS = {
    "order_id": "0b5f2f0e-6d8f-4c9a-9a53-6e2f0a1b2c3d", "client_order_id": "cid-1", "account": "acct-1",
    "venue": "aster", "market_type": "FUTURES", "symbol": "BTCUSDT", "side": "BUY", "order_type": "LIMIT",
    "quantity": "0.5", "price": "65000.1", "stop_price": None, "time_in_force": "GTC", "reduce_only": False,
    "post_only": False, "leverage": None, "close_position": False, "working_type": "", "price_protect": False,
    "activation_price": None, "callback_rate": None, "quote_order_qty": None,
}

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
