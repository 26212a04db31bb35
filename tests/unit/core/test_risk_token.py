"""Signing and verifying the risk token: round trip, every reason code, the check order."""

from __future__ import annotations

import re

import pytest

from core_ext import (
    OK,
    TOKEN_BAD_SIGNATURE,
    TOKEN_EXPIRED,
    TOKEN_FIELDS_CHANGED,
    TOKEN_MALFORMED,
    TOKEN_MISSING,
    TOKEN_NOT_YET_VALID,
    TOKEN_UNKNOWN_KEY,
)

IAT = 1_700_000_000
NONCE = "0123456789abcdef0123456789abcdef"
SECRET = b"unit-test-secret-0123456789abcdef"
TOKEN_SHAPE = re.compile(r"v2\.k1\.(\d+)\.([0-9a-f]{32})\.([A-Za-z0-9_-]{43})\.([A-Za-z0-9_-]{43})")


@pytest.fixture
def body(impl, order):
    return impl.canonical_order_body(order)


@pytest.fixture
def token(impl, keyring, body):
    return impl.sign_token(keyring, body, IAT, NONCE)


def test_signed_token_has_the_documented_shape(impl, keyring, body):
    token = impl.sign_token(keyring, body, IAT)
    match = TOKEN_SHAPE.fullmatch(token)
    assert match and match.group(1) == str(IAT)
    assert impl.sign_token(keyring, body, IAT) != token  # random nonce


def test_sign_verify_round_trip_is_ok(impl, keyring, body, token):
    result = impl.verify_token(keyring, token, body, IAT + 1.0)
    assert result.ok is True and bool(result) is True
    assert (result.reason, result.key_id, result.issued_at, result.nonce) == (OK, "k1", IAT, NONCE)


def test_verify_result_is_immutable(impl, keyring, body, token):
    result = impl.verify_token(keyring, token, body, IAT + 1.0)
    with pytest.raises(AttributeError):
        result.ok = False
    assert result == impl.verify_token(keyring, token, body, IAT + 2.0)
    assert "reason='OK'" in repr(result)


@pytest.mark.parametrize("missing", [None, ""])
def test_missing_token_is_rejected_with_reason_missing(impl, keyring, body, missing):
    result = impl.verify_token(keyring, missing, body, IAT)
    assert (result.ok, result.reason, result.key_id) == (False, TOKEN_MISSING, None)


def _malformed_variants(token: str) -> list[object]:
    parts = token.split(".")
    return [
        "garbage", ".", "v2", token + ".", "." + token, ".".join(parts[:5]),
        "v1" + token[2:], "v3" + token[2:], "V2" + token[2:], token.replace("k1", "k 1", 1), token.replace("k1", "k1!", 1),
        ".".join([parts[0], "", *parts[2:]]), ".".join([parts[0], "k" * 33, *parts[2:]]),
        ".".join([*parts[:2], "0" + parts[2], *parts[3:]]), ".".join([*parts[:2], "-1", *parts[3:]]),
        ".".join([*parts[:2], "1" * 13, *parts[3:]]), ".".join([*parts[:2], "1.5", *parts[3:]]),
        ".".join([*parts[:2], "", *parts[3:]]),
        ".".join([*parts[:3], parts[3].upper(), *parts[4:]]), ".".join([*parts[:3], parts[3][:-1], *parts[4:]]),
        token[:-1], token + "A", token + "=", token[:-1] + "B", token[:-1] + "+",
        ".".join([*parts[:4], parts[4][:-1] + "/", parts[5]]), token.replace("1", "\u0661", 1),
        token + "é", token + " ", " " + token, token + "\n", "x" * 257, token + "A" * 300,
        b"v1.bytes", 12345, ["v1"], "\ud800",
    ]


def test_malformed_tokens_are_rejected_with_reason_malformed(impl, keyring, body, token):
    for candidate in _malformed_variants(token):
        result = impl.verify_token(keyring, candidate, body, IAT + 1.0)
        assert result.reason == TOKEN_MALFORMED, candidate
        assert (result.ok, result.key_id, result.issued_at, result.nonce) == (False, None, None, None)


def test_unknown_key_id_is_rejected(impl, body):
    other = impl.KeyRing("k9", SECRET)
    token = impl.sign_token(other, body, IAT, NONCE)
    ring = impl.KeyRing("k1", SECRET)
    result = impl.verify_token(ring, token, body, IAT + 1.0)
    assert (result.ok, result.reason, result.key_id) == (False, TOKEN_UNKNOWN_KEY, "k9")


def test_every_single_character_change_of_the_signed_part_is_caught(impl, keyring, body, token):
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for index in range(len(token)):
        for replacement in ("0", "A", "f", "_"):
            if replacement == token[index]:
                continue
            tampered = token[:index] + replacement + token[index + 1:]
            result = impl.verify_token(keyring, tampered, body, IAT + 1.0)
            assert not result.ok, (index, replacement)
    signature_start = token.rindex(".") + 1
    for index in range(signature_start, len(token) - 1):
        char = alphabet[(alphabet.index(token[index]) + 1) % 64]
        tampered = token[:index] + char + token[index + 1:]
        assert impl.verify_token(keyring, tampered, body, IAT + 1.0).reason == TOKEN_BAD_SIGNATURE


def test_wrong_secret_with_the_same_key_id_is_a_bad_signature(impl, body, token):
    impostor = impl.KeyRing("k1", b"another-secret-of-at-least-32-bytes!")
    forged = impl.sign_token(impostor, body, IAT, NONCE)
    ring = impl.KeyRing("k1", SECRET)
    assert impl.verify_token(ring, forged, body, IAT + 1.0).reason == TOKEN_BAD_SIGNATURE


def test_signature_compare_does_not_short_circuit_on_a_shared_prefix(impl, keyring, body, token):
    # behavioural check of the constant-time compare: differing only in the last
    # significant signature character is rejected just like differing in the first
    head, signature = token.rsplit(".", 1)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet[(alphabet.index(signature[-1]) + 4) % 64]
    first = alphabet[(alphabet.index(signature[0]) + 1) % 64]
    for tampered in (f"{head}.{signature[:-1]}{last}", f"{head}.{first}{signature[1:]}"):
        assert impl.verify_token(keyring, tampered, body, IAT + 1.0).reason == TOKEN_BAD_SIGNATURE


@pytest.mark.parametrize(
    ("now", "reason"),
    [
        (IAT - 5 - 1, TOKEN_NOT_YET_VALID),
        (IAT - 5 - 0.001, TOKEN_NOT_YET_VALID),
        (IAT - 5, OK),
        (IAT, OK),
        (IAT + 300 + 5 - 0.001, OK),
        (IAT + 300 + 5, TOKEN_EXPIRED),
        (IAT + 10**6, TOKEN_EXPIRED),
    ],
)
def test_time_window_is_iat_minus_skew_up_to_iat_plus_ttl_plus_skew(impl, keyring, body, token, now, reason):
    assert impl.verify_token(keyring, token, body, now).reason == reason


def test_ttl_and_skew_are_configurable(impl, keyring, body, token):
    assert impl.verify_token(keyring, token, body, IAT + 60.0, ttl_seconds=60, skew_seconds=0).reason == TOKEN_EXPIRED
    assert impl.verify_token(keyring, token, body, IAT - 30.0, skew_seconds=30).reason == OK
    assert impl.verify_token(keyring, token, body, IAT + 1, ttl_seconds=0, skew_seconds=0).reason == TOKEN_EXPIRED


def test_changed_order_field_is_rejected_with_reason_fields_changed(impl, keyring, token, make_order):
    tampered = impl.canonical_order_body(make_order(quantity="1.5"))
    result = impl.verify_token(keyring, token, tampered, IAT + 1.0)
    assert (result.ok, result.reason, result.key_id) == (False, TOKEN_FIELDS_CHANGED, "k1")


def test_normalised_decimals_verify_against_the_same_token(impl, keyring, token, make_order):
    same = impl.canonical_order_body(make_order(quantity="0.0150", price="64250.50", leverage="5.0"))
    assert impl.verify_token(keyring, token, same, IAT + 1.0).ok


def test_check_order_signature_before_time_before_fields(impl, keyring, token, make_order):
    tampered = impl.canonical_order_body(make_order(side="SELL"))
    bad_signature = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    assert impl.verify_token(keyring, bad_signature, tampered, IAT + 10**6).reason == TOKEN_BAD_SIGNATURE
    assert impl.verify_token(keyring, token, tampered, IAT - 100.0).reason == TOKEN_NOT_YET_VALID
    assert impl.verify_token(keyring, token, tampered, IAT + 10**6).reason == TOKEN_EXPIRED
    assert impl.verify_token(keyring, token, tampered, IAT + 1.0).reason == TOKEN_FIELDS_CHANGED
    assert impl.verify_token(keyring, "", tampered, IAT + 1.0).reason == TOKEN_MISSING


def test_unix_epoch_and_integer_now_are_accepted(impl, keyring, body):
    token = impl.sign_token(keyring, body, 0, NONCE)
    assert token.split(".")[2] == "0"
    assert impl.verify_token(keyring, token, body, 1).ok


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [({"now": float("nan")}, ValueError), ({"now": float("inf")}, ValueError), ({"now": "1"}, TypeError),
     ({"now": True}, TypeError), ({"ttl_seconds": -1}, ValueError), ({"ttl_seconds": 1.5}, TypeError),
     ({"skew_seconds": 10**10}, ValueError), ({"skew_seconds": None}, TypeError)],
)
def test_caller_errors_in_time_arguments_raise(impl, keyring, body, token, kwargs, error):
    arguments = {"now": IAT + 1.0, **kwargs}
    with pytest.raises(error):
        impl.verify_token(keyring, token, body, **arguments)


@pytest.mark.parametrize(
    ("issued_at", "nonce", "error"),
    [(-1, None, ValueError), (10**12, None, ValueError), (1.5, None, TypeError), (True, None, TypeError),
     (IAT, "0123", ValueError), (IAT, NONCE.upper(), ValueError), (IAT, "g" * 32, ValueError),
     (IAT, b"0" * 32, ValueError), (IAT, "é" * 32, ValueError)],
)
def test_sign_rejects_bad_issued_at_and_nonce(impl, keyring, body, issued_at, nonce, error):
    with pytest.raises(error):
        impl.sign_token(keyring, body, issued_at, nonce)


def test_body_must_be_bytes(impl, keyring, token):
    with pytest.raises(TypeError):
        impl.verify_token(keyring, token, "text", IAT)
    with pytest.raises(TypeError):
        impl.sign_token(keyring, None, IAT)


def test_keyring_of_the_other_twin_is_refused(impl, body):
    from core_ext import IMPLEMENTATIONS, load_implementation

    other_name = next(n for n in IMPLEMENTATIONS if n != impl.IMPLEMENTATION)
    try:
        other = load_implementation(other_name)
    except ImportError:
        pytest.skip("other implementation not built")
    with pytest.raises(TypeError):
        impl.sign_token(other.KeyRing("k1", SECRET), body, IAT)
