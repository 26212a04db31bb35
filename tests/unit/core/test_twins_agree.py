"""Property-based: the compiled core and the pure-Python twin give identical results.

Identical means the same return value, or the same exception type and message.
"""

from __future__ import annotations

import string
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core_ext import BOOL_FIELDS, DECIMAL_FIELDS, ORDER_FIELDS, ORDER_STATUSES

PROFILE = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SECRET = b"twins-secret-0123456789abcdef-0123"
OLD_SECRET = b"twins-old-secret-0123456789abcdef-01"
IAT = 1_700_000_000
B64 = string.ascii_letters + string.digits + "-_"


@pytest.fixture(scope="module")
def twins(implementations):
    return implementations


@pytest.fixture(scope="module")
def rings(twins):
    compiled, python = twins
    return tuple(m.KeyRing("k1", SECRET, [("k0", OLD_SECRET)]) for m in twins)


def outcome(function, *args, **kwargs):
    """Return ("ok", value) or ("error", type, message) so two calls can be compared."""
    try:
        value = function(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - the point is to compare any failure
        return ("error", type(exc).__name__, str(exc), getattr(exc, "field", None))
    if hasattr(value, "reason"):
        value = (value.ok, value.reason, value.key_id, value.issued_at, value.nonce)
    return ("ok", value)


def agree(twins, name, *args, **kwargs):
    compiled, python = twins
    a = outcome(getattr(compiled, name), *args, **kwargs)
    b = outcome(getattr(python, name), *args, **kwargs)
    assert a == b
    return a


decimal_text = st.one_of(
    st.from_regex(r"[+-]?[0-9]{0,45}(\.[0-9]{0,45})?", fullmatch=True),
    st.decimals(allow_nan=False, allow_infinity=False, places=None).map(str),
    st.text(alphabet="0123456789.+-eE _x\u0661 ", max_size=12),
    st.text(max_size=8),
)
decimal_value = st.one_of(
    decimal_text, st.none(), st.just(""), st.integers(-10**45, 10**45),
    st.decimals(allow_nan=True, allow_infinity=True), st.floats(allow_nan=False), st.booleans(),
)
text_value = st.one_of(
    st.text(alphabet=string.ascii_uppercase + string.digits + "-_", min_size=1, max_size=20),
    st.text(max_size=12), st.integers(), st.none(),
)
bool_value = st.one_of(st.booleans(), st.sampled_from(["true", "false", "True", "1", ""]), st.integers(0, 1))


@st.composite
def orders(draw, valid_only=False):
    order = {}
    for name in ORDER_FIELDS:
        if name in DECIMAL_FIELDS:
            strategy = (st.one_of(st.none(), st.decimals(min_value=0, max_value=10**9, places=6))
                        if valid_only else decimal_value)
        elif name in BOOL_FIELDS:
            strategy = st.booleans() if valid_only else bool_value
        else:
            strategy = (st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x2FFF,
                                                       blacklist_categories=("Cs",)),
                                max_size=24).filter(lambda s: "\x7f" not in s)
                        if valid_only else text_value)
        if valid_only or draw(st.integers(0, 20)) > 0:
            order[name] = draw(strategy)
    return order


@PROFILE
@given(text=decimal_text)
def test_canonical_decimal_agrees_on_random_strings(twins, text):
    agree(twins, "canonical_decimal", text)


@PROFILE
@given(order=orders())
def test_canonical_body_agrees_on_random_orders(twins, order):
    agree(twins, "canonical_order_body", order)


@PROFILE
@given(order=orders(valid_only=True), iat=st.integers(0, 10**12 - 1),
       nonce=st.text(alphabet="0123456789abcdef", min_size=32, max_size=32))
def test_sign_agrees_and_round_trips(twins, rings, order, iat, nonce):
    compiled, python = twins
    body_c = compiled.canonical_order_body(order)
    assert body_c == python.canonical_order_body(order)
    token = compiled.sign_token(rings[0], body_c, iat, nonce)
    assert token == python.sign_token(rings[1], body_c, iat, nonce)
    for module, ring in zip(twins, rings):
        assert module.verify_token(ring, token, body_c, float(iat)).ok


@st.composite
def token_like(draw):
    """Random garbage, near-misses of the token grammar, and tokens with one character changed."""
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return draw(st.one_of(st.text(max_size=300), st.none(), st.integers(), st.binary(max_size=20)))
    kid = draw(st.sampled_from(["k1", "k0", "k9", "", "k" * 33, "k.1"]))
    iat = draw(st.sampled_from(["1700000000", "0", "01", "-5", "1" * 13, "x", ""]))
    nonce = draw(st.text(alphabet="0123456789abcdefABCDEF", min_size=31, max_size=33))
    digest = draw(st.text(alphabet=B64 + "=+/", min_size=42, max_size=44))
    sig = draw(st.text(alphabet=B64 + "=+/", min_size=42, max_size=44))
    version = draw(st.sampled_from(["v2", "v2", "v1", "V2"]))
    return ".".join([version, kid, iat, nonce, digest, sig])


@PROFILE
@given(token=token_like(), now=st.floats(min_value=0, max_value=2e12, allow_nan=False))
def test_verify_agrees_on_garbage_tokens(twins, rings, token, now):
    compiled, python = twins
    body = b"tessera.order.v2"
    a = outcome(compiled.verify_token, rings[0], token, body, now)
    b = outcome(python.verify_token, rings[1], token, body, now)
    assert a == b
    assert a[0] == "ok"  # hostile tokens never raise


@PROFILE
@given(order=orders(valid_only=True), data=st.data(),
       now_offset=st.one_of(st.floats(min_value=-20, max_value=400), st.sampled_from([-5.0, -6.0, 305.0, 304.999])),
       ttl=st.integers(0, 600), skew=st.integers(0, 30), use_old_key=st.booleans())
def test_verify_agrees_on_single_character_tampering(twins, rings, order, data, now_offset, ttl, skew, use_old_key):
    compiled, python = twins
    body = python.canonical_order_body(order)
    signer = python.KeyRing("k0", OLD_SECRET) if use_old_key else python.KeyRing("k1", SECRET)
    token = python.sign_token(signer, body, IAT)
    tamper = data.draw(st.sampled_from(["none", "token", "field"]))
    if tamper == "token":
        index = data.draw(st.integers(0, len(token) - 1))
        char = data.draw(st.characters(codec="ascii") | st.sampled_from(list(B64)))
        token = token[:index] + char + token[index + 1:]
    elif tamper == "field":
        name = data.draw(st.sampled_from(ORDER_FIELDS))
        value = order.get(name)
        if isinstance(value, bool):
            value = not value
        elif name in DECIMAL_FIELDS:
            value = Decimal(1) + (value or 0)
        elif value:
            index = data.draw(st.integers(0, len(value) - 1))
            value = value[:index] + data.draw(st.sampled_from("aZ9-")) + value[index + 1:]
        else:
            value = "x"
        order = {**order, name: value}
    tampered_body = python.canonical_order_body(order)
    now = IAT + now_offset
    a = outcome(compiled.verify_token, rings[0], token, tampered_body, now, ttl, skew)
    b = outcome(python.verify_token, rings[1], token, tampered_body, now, ttl, skew)
    assert a == b
    if tamper == "none" and -skew <= now_offset < ttl + skew:
        assert a[1][1] == "OK"


# Each end of every character range of the token alphabet and its neighbours outside it
# (@A Z[ `a z{ /0 9: fg ,-. ^_`), other separators, and characters outside ASCII.
SUBSTITUTES = "@AZ[`az{/09:fg,-.^_=+ \x00\x7f\x80\xe9\u20ac"


def test_verify_agrees_on_every_single_character_substitution(twins, rings):
    """Exhaustive, not sampled: each position of a token (the key id, issued_at, the nonce,
    the digest, the signature and their separators) replaced with each character of
    SUBSTITUTES, verified by both twins (the compiled parser folds the fixed-length part's
    character classes without a branch per character)."""
    compiled, python = twins
    body = python.canonical_order_body({
        "order_id": "ord-1", "client_order_id": "cli-1", "account": "acct-1", "venue": "ASTER",
        "market_type": "FUTURES", "symbol": "BTCUSDT", "side": "BUY", "order_type": "LIMIT", "quantity": "0.015",
        "price": "64250.5", "stop_price": None, "time_in_force": "GTC", "reduce_only": False, "post_only": True,
        "leverage": "5", "close_position": False, "working_type": "", "price_protect": False})
    token = python.sign_token(python.KeyRing("k1", SECRET), body, IAT)
    reasons = set()
    for index in range(len(token)):
        for char in SUBSTITUTES:
            candidate = token[:index] + char + token[index + 1:]
            a = outcome(compiled.verify_token, rings[0], candidate, body, IAT + 1.0)
            assert a == outcome(python.verify_token, rings[1], candidate, body, IAT + 1.0), (index, char)
            reasons.add(a[1][1])
    assert {"OK", "TOKEN_MALFORMED", "TOKEN_BAD_SIGNATURE", "TOKEN_UNKNOWN_KEY"} <= reasons


status_like = st.one_of(st.sampled_from(ORDER_STATUSES), st.text(max_size=16), st.none(), st.integers())


@PROFILE
@given(current=status_like, target=status_like, previous=st.one_of(st.none(), status_like))
def test_state_machine_agrees_on_random_transitions(twins, current, target, previous):
    agree(twins, "transition", current, target, previous)
    agree(twins, "can_transition", current, target, previous)
    agree(twins, "is_terminal", current)
