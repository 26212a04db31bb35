"""docs/token-vectors.json: up to date, and reproduced exactly by both implementations."""

from __future__ import annotations

import json

import pytest

from core_ext import CanonicalEncodingError, vectors

VECTORS = json.loads(vectors.DEFAULT_PATH.read_text(encoding="utf-8"))


def test_vector_file_is_up_to_date():
    assert vectors.DEFAULT_PATH.read_text(encoding="utf-8") == vectors.render(), (
        "regenerate with: python -m core_ext.vectors > docs/token-vectors.json"
    )
    assert vectors.main(["--check"]) == 0


def test_vector_file_covers_the_required_cases():
    assert len(VECTORS["signing_vectors"]) >= 8
    by_name = {v["name"]: v for v in VECTORS["signing_vectors"]}
    assert (by_name["futures_limit_buy"]["token"]
            == by_name["decimal_normalisation_same_token_as_futures_limit_buy"]["token"])
    reasons = {v["expected_reason"] for v in VECTORS["verification_vectors"]}
    assert reasons == {"OK", "TOKEN_MISSING", "TOKEN_MALFORMED", "TOKEN_UNKNOWN_KEY", "TOKEN_BAD_SIGNATURE",
                       "TOKEN_NOT_YET_VALID", "TOKEN_EXPIRED", "TOKEN_FIELDS_CHANGED"}


def test_check_mode_fails_on_a_stale_file(tmp_path):
    stale = tmp_path / "vectors.json"
    stale.write_text(vectors.render().replace("k2025-06", "k2025-07", 1), encoding="utf-8")
    assert vectors.main(["--check", str(stale)]) == 1


@pytest.mark.parametrize("case", VECTORS["decimal_vectors"], ids=lambda c: repr(c["input"]))
def test_decimal_vectors(impl, case):
    if case.get("error"):
        with pytest.raises(CanonicalEncodingError):
            impl.canonical_decimal(case["input"])
    else:
        assert impl.canonical_decimal(case["input"]) == case["canonical"]


@pytest.mark.parametrize("case", VECTORS["signing_vectors"], ids=lambda c: c["name"])
def test_signing_vectors(impl, case):
    body = impl.canonical_order_body(case["order"])
    assert body.hex() == case["canonical_body_hex"]
    assert body.decode("utf-8") == case["canonical_body"]
    ring = impl.KeyRing(case["key_id"], bytes.fromhex(case["secret_hex"]))
    token = impl.sign_token(ring, body, case["issued_at"], case["nonce"])
    assert token == case["token"]
    assert token.rsplit(".", 1)[0] == case["signing_input"]
    assert token.split(".")[4] == case["body_digest"]


@pytest.mark.parametrize("case", VECTORS["verification_vectors"], ids=lambda c: c["name"])
def test_verification_vectors(impl, case):
    config = VECTORS["verification_key_ring"]
    ring = impl.KeyRing(
        config["current"]["key_id"], bytes.fromhex(config["current"]["secret_hex"]),
        [(k["key_id"], bytes.fromhex(k["secret_hex"])) for k in config["previous"]],
    )
    result = impl.verify_token(ring, case["token"], bytes.fromhex(case["canonical_body_hex"]), case["now"],
                               case["ttl_seconds"], case["skew_seconds"])
    assert result.reason == case["expected_reason"]
    assert result.ok is (case["expected_reason"] == "OK")
