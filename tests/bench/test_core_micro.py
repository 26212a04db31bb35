"""Token signing, token verification and the order state transition: the compiled core
and the pure-Python twin in the same run, and a plain OpenSSL HMAC of the same bytes as
the floor. No timing is asserted: ``make bench`` reports, the suite only runs them."""

from __future__ import annotations

import hmac
from decimal import Decimal

import pytest

import core_ext
from services.domain import MarketType, Order, OrderType, Side, TimeInForce
from bench_support import record

KEY_ID = "bench-key"
SECRET = b"bench-secret-0123456789abcdef-0123456789"
ISSUED_AT = 1_790_000_000


def _implementation(name: str):
    try:
        return core_ext.load_implementation(name)
    except ImportError:
        pytest.skip(f"the {name} implementation is not built")


@pytest.fixture(params=["cython", "python"])
def impl(request: pytest.FixtureRequest):
    return _implementation(request.param)


def _order() -> Order:
    return Order(
        order_id="0b5e3b8e-6a51-4c1d-9f3e-2d4b7a9c1e22",
        client_order_id="tsr-bench-000000000000000000000001",
        account="bench-account",
        venue="aster",
        market_type=MarketType.FUTURES,
        symbol="BTCUSDT",
        side=Side.BUY,
        order_type=OrderType.LIMIT,
        quantity=Decimal("0.01"),
        price=Decimal("65000.5"),
        time_in_force=TimeInForce.GTC,
        leverage=Decimal("5"),
    )


def _signed(impl):
    keyring = impl.KeyRing(KEY_ID, SECRET)
    body = impl.canonical_order_body(_order().token_fields())
    return keyring, body, impl.sign_token(keyring, body, ISSUED_AT)


def test_sign_token(benchmark, impl) -> None:
    keyring, body, _ = _signed(impl)
    benchmark.group = "sign_token"
    token = benchmark(impl.sign_token, keyring, body, ISSUED_AT)
    record(benchmark, "sign_token", impl.IMPLEMENTATION)
    assert impl.verify_token(keyring, token, body, float(ISSUED_AT), 300).ok


def test_verify_token(benchmark, impl) -> None:
    keyring, body, token = _signed(impl)
    now = float(ISSUED_AT + 1)
    benchmark.group = "verify_token"
    result = benchmark(impl.verify_token, keyring, token, body, now, 300)
    record(benchmark, "verify_token", impl.IMPLEMENTATION)
    assert result.ok


def test_verify_order_request(benchmark, impl) -> None:
    """The OMS's whole check from the wire: a serialized SubmitOrderRequest -> canonical
    body -> MAC and digest -> verdict (``verify_order_request``)."""
    from services.common.convert import order_to_proto
    from tessera.oms.v1 import oms_pb2

    keyring, _, token = _signed(impl)
    data = oms_pb2.SubmitOrderRequest(order=order_to_proto(_order()), risk_token=token).SerializeToString()
    now = float(ISSUED_AT + 1)
    benchmark.group = "verify_order_request"
    result = benchmark(impl.verify_order_request, keyring, data, now, 300)
    record(benchmark, "verify_order_request", impl.IMPLEMENTATION)
    assert result.ok


def test_transition(benchmark, impl) -> None:
    benchmark.group = "transition"
    assert benchmark(impl.transition, "SUBMITTED", "PARTIALLY_FILLED") == "PARTIALLY_FILLED"
    record(benchmark, "transition", impl.IMPLEMENTATION)


def _signed_bytes() -> bytes:
    """What a verification MACs: the token up to its signature."""
    _, _, token = _signed(_implementation("python"))
    return token.rsplit(".", 1)[0].encode()


def test_hmac_floor(benchmark) -> None:
    """The floor: HMAC-SHA256 of the bytes a verification MACs, on the same pre-keyed
    OpenSSL context the compiled core keeps per key, called from Python with nothing
    else around it (``_token_c.hmac_floor``)."""
    compiled = _implementation("cython")
    from core_ext import _token_c

    keyring = compiled.KeyRing(KEY_ID, SECRET)
    signed = _signed_bytes()
    benchmark.group = "hmac_floor"
    assert benchmark(_token_c.hmac_floor, keyring, signed) == hmac.new(SECRET, signed, "sha256").digest()
    record(benchmark, "hmac_floor", "openssl")


def test_hmac_python(benchmark) -> None:
    """For reference: the same HMAC through Python's hmac, a pre-keyed context copied per
    call (``hmac.new(key, digestmod="sha256")`` once, then ``copy``/``update``/``digest``):
    the three method calls cost more than the MAC."""
    signed = _signed_bytes()
    keyed = hmac.new(SECRET, digestmod="sha256")

    def mac() -> bytes:
        context = keyed.copy()
        context.update(signed)
        return context.digest()

    benchmark.group = "hmac_python"
    assert len(benchmark(mac)) == 32
    record(benchmark, "hmac_python", "hashlib")
