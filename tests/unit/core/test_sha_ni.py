"""The compiled core's HMAC and body digest hashed in step (the x86 SHA extensions, see
``_token_c.sha_ni``) equal :mod:`hmac` / :mod:`hashlib`, and so do the verdicts, on
every message length around the block boundaries, with the in-step path on and off."""

from __future__ import annotations

import hashlib
import hmac
import random

import pytest

from core_ext import load_implementation

SECRET = b"sha-ni-test-secret-0123456789abcdef"
LONG_SECRET = bytes(range(100))       # longer than a block: hashed first (RFC 2104)
# Every length of a header up to four blocks past the pad block, bodies around each
# block boundary (55/56 bytes: where the padding spills into a second block).
HEADER_LENGTHS = range(0, 260)
BODY_LENGTHS = sorted({0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 121, 127, 128, 129, 199, 247, 248, 256, 1000})


@pytest.fixture(params=[True, False], ids=["in-step", "sequential"])
def token_c(request):
    import os

    try:
        from core_ext import _token_c
    except ImportError as exc:
        if os.environ.get("TESSERA_PURE_PYTHON") == "1":
            pytest.skip(f"compiled core_ext not importable and TESSERA_PURE_PYTHON=1 ({exc})")
        raise

    before = _token_c.sha_ni()
    _token_c.sha_ni(request.param)
    yield _token_c
    _token_c.sha_ni(before)


@pytest.mark.parametrize("secret", [SECRET, LONG_SECRET], ids=["secret", "long-secret"])
def test_mac_and_digest_equal_hmac_and_hashlib(token_c, secret):
    ring = token_c.KeyRing("k1", secret)
    rng = random.Random(7)
    for header_length in HEADER_LENGTHS:
        header = rng.randbytes(header_length)
        for body_length in BODY_LENGTHS if header_length % 16 == 0 else (rng.choice(BODY_LENGTHS),):
            body = rng.randbytes(body_length)
            assert token_c.mac_and_digest(ring, header, body) == (
                hmac.new(secret, header, hashlib.sha256).digest(), hashlib.sha256(body).digest()
            ), (header_length, body_length)


def test_sha_ni_can_be_turned_off_and_is_on_where_the_cpu_has_it(token_c):
    import pathlib
    import platform

    assert token_c.sha_ni(False) is False
    cpuinfo = pathlib.Path("/proc/cpuinfo")
    flags = cpuinfo.read_text().split() if cpuinfo.exists() else []
    expected = (token_c.CRYPTO_BACKEND == "legacy" and platform.machine() in ("x86_64", "AMD64")
                and "sha_ni" in flags and "sse4_1" in flags and "ssse3" in flags)
    assert token_c.sha_ni(True) is expected


def test_verdicts_agree_with_the_python_twin_on_either_path(token_c, make_order):
    python = load_implementation("python")
    rings = token_c.KeyRing("k1", SECRET), python.KeyRing("k1", SECRET)
    rng = random.Random(11)
    for length in (0, 1, 30, 60, 120, 300, 900):
        order = make_order(order_id="o" * max(1, length), account="a" * (length // 3 + 1))
        body = python.canonical_order_body(order)
        token = python.sign_token(rings[1], body, 1_700_000_000)
        changed = python.canonical_order_body({**order, "symbol": "ETHUSDT"})
        for candidate_body in (body, changed):
            for candidate in (token, token[:-1] + rng.choice("AQgw")):
                a = token_c.verify_token(rings[0], candidate, candidate_body, 1_700_000_001.0)
                b = python.verify_token(rings[1], candidate, candidate_body, 1_700_000_001.0)
                assert (a.reason, a.key_id, a.issued_at, a.nonce) == (b.reason, b.key_id, b.issued_at, b.nonce)
