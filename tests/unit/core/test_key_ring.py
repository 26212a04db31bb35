"""Key ring: construction rules, rotation, and reading AIS_RISK_HMAC_* from the environment."""

from __future__ import annotations

import hashlib
import pickle

import pytest

from core_ext import OK, TOKEN_UNKNOWN_KEY, KeyConfigError

SECRET = b"current-secret-0123456789abcdefgh"      # 33 bytes
OLD_SECRET = b"previous-secret-0123456789abcdefg"
IAT = 1_700_000_000


def test_key_ids_and_current_key(impl):
    ring = impl.KeyRing("k1", SECRET, [("k0", OLD_SECRET)])
    assert ring.current_key_id == "k1"
    assert ring.key_ids() == ("k1", "k0")


def test_repr_and_pickle_never_show_secrets(impl):
    ring = impl.KeyRing("k1", SECRET, [("k0", OLD_SECRET)])
    assert repr(ring) == "KeyRing(current_key_id='k1', key_ids=('k1', 'k0'))"
    assert "secret" not in repr(ring)
    with pytest.raises(TypeError):
        pickle.dumps(ring)


@pytest.mark.parametrize("key_id", ["", "k" * 33, "k.1", "k 1", "ké", None, 7])
def test_invalid_key_id_is_refused(impl, key_id):
    with pytest.raises(KeyConfigError, match="key id"):
        impl.KeyRing(key_id, SECRET)


@pytest.mark.parametrize("secret", [b"", b"x" * 31, "a-str-secret-of-more-than-32-bytes!!"])
def test_short_or_non_bytes_secret_is_refused_without_echoing_it(impl, secret):
    with pytest.raises(KeyConfigError) as caught:
        impl.KeyRing("k1", secret)
    if secret:
        assert str(secret) not in str(caught.value) and "x" * 31 not in str(caught.value)


def test_duplicate_key_ids_are_refused(impl):
    with pytest.raises(KeyConfigError, match="duplicate key id 'k1'"):
        impl.KeyRing("k1", SECRET, [("k1", OLD_SECRET)])


def test_token_signed_with_previous_key_verifies_during_rotation(impl, order):
    body = impl.canonical_order_body(order)
    old_ring = impl.KeyRing("k0", OLD_SECRET)
    token = old_ring and impl.sign_token(old_ring, body, IAT)
    rotated = impl.KeyRing("k1", SECRET, [("k0", OLD_SECRET)])
    result = impl.verify_token(rotated, token, body, IAT + 1.0)
    assert (result.reason, result.key_id) == (OK, "k0")
    assert impl.sign_token(rotated, body, IAT).split(".")[1] == "k1"
    after_rotation = impl.KeyRing("k1", SECRET)
    assert impl.verify_token(after_rotation, token, body, IAT + 1.0).reason == TOKEN_UNKNOWN_KEY


def _env(**values: str) -> dict[str, str]:
    return {f"AIS_RISK_HMAC_{name}": value for name, value in values.items()}


def test_from_env_reads_current_and_previous_keys(impl, order):
    ring = impl.KeyRing.from_env(_env(SECRET=SECRET.decode(), KEY_ID="k2025",
                                      SECRET_PREVIOUS=OLD_SECRET.decode(), KEY_ID_PREVIOUS="k2024"))
    assert ring.key_ids() == ("k2025", "k2024")
    body = impl.canonical_order_body(order)
    token = impl.sign_token(ring, body, IAT)
    assert impl.verify_token(impl.KeyRing("k2025", SECRET), token, body, IAT + 1.0).ok


def test_from_env_derives_key_ids_from_the_secrets(impl):
    ring = impl.KeyRing.from_env(_env(SECRET=SECRET.decode(), SECRET_PREVIOUS=OLD_SECRET.decode()))
    assert ring.key_ids() == (
        "k" + hashlib.sha256(SECRET).hexdigest()[:8],
        "k" + hashlib.sha256(OLD_SECRET).hexdigest()[:8],
    )


def test_from_env_reads_file_variants(impl, tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_bytes(SECRET + b"\n")
    id_file = tmp_path / "kid"
    id_file.write_text("k-file\n")
    ring = impl.KeyRing.from_env(_env(SECRET_FILE=str(secret_file), KEY_ID_FILE=str(id_file)))
    assert ring.key_ids() == ("k-file",)
    assert ring.key_ids() == impl.KeyRing.from_env(_env(SECRET=SECRET.decode(), KEY_ID="k-file")).key_ids()


def test_empty_optional_variables_count_as_unset(impl):
    ring = impl.KeyRing.from_env(_env(SECRET=SECRET.decode(), SECRET_PREVIOUS="", KEY_ID="", KEY_ID_PREVIOUS=""))
    assert len(ring.key_ids()) == 1


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({}, "AIS_RISK_HMAC_SECRET"),
        (_env(SECRET=""), "AIS_RISK_HMAC_SECRET"),
        (_env(SECRET="too-short-secret"), "AIS_RISK_HMAC_SECRET"),
        (_env(SECRET=SECRET.decode(), KEY_ID="bad id"), "AIS_RISK_HMAC_KEY_ID"),
        (_env(SECRET=SECRET.decode(), SECRET_PREVIOUS="short-previous-secret"), "AIS_RISK_HMAC_SECRET_PREVIOUS"),
        (_env(SECRET=SECRET.decode(), SECRET_PREVIOUS=OLD_SECRET.decode(), KEY_ID_PREVIOUS="b@d"),
         "AIS_RISK_HMAC_KEY_ID_PREVIOUS"),
        (_env(SECRET=SECRET.decode(), KEY_ID="k1", SECRET_PREVIOUS=OLD_SECRET.decode(), KEY_ID_PREVIOUS="k1"),
         "AIS_RISK_HMAC_KEY_ID_PREVIOUS"),
        (_env(SECRET=SECRET.decode(), KEY_ID_PREVIOUS="k0"), "AIS_RISK_HMAC_KEY_ID_PREVIOUS"),
        (_env(SECRET=SECRET.decode(), SECRET_FILE="/nonexistent"), "AIS_RISK_HMAC_SECRET"),
        (_env(SECRET_FILE="/nonexistent/secret"), "AIS_RISK_HMAC_SECRET_FILE"),
    ],
)
def test_from_env_errors_name_the_variable_and_never_the_secret(impl, environ, variable):
    with pytest.raises(KeyConfigError) as caught:
        impl.KeyRing.from_env(environ)
    message = str(caught.value)
    assert variable in message
    assert caught.value.variable == variable
    for value in environ.values():
        if "secret" in value and "/" not in value:
            assert value not in message


def test_from_env_defaults_to_os_environ(impl, monkeypatch):
    monkeypatch.setenv("AIS_RISK_HMAC_SECRET", SECRET.decode())
    monkeypatch.setenv("AIS_RISK_HMAC_KEY_ID", "k-env")
    for name in ("AIS_RISK_HMAC_SECRET_PREVIOUS", "AIS_RISK_HMAC_KEY_ID_PREVIOUS", "AIS_RISK_HMAC_SECRET_FILE",
                 "AIS_RISK_HMAC_KEY_ID_FILE", "AIS_RISK_HMAC_SECRET_PREVIOUS_FILE",
                 "AIS_RISK_HMAC_KEY_ID_PREVIOUS_FILE"):
        monkeypatch.delenv(name, raising=False)
    assert impl.KeyRing.from_env().key_ids() == ("k-env",)
