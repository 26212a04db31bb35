"""Fixtures for the core_ext tests: every test runs against both implementations.

The ``impl`` fixture is parametrized over "cython" and "python". A compiled core
that cannot be imported FAILS the cython case (a broken build must not pass
silently), unless ``TESSERA_PURE_PYTHON=1`` is set, in which case it is skipped.
"""

from __future__ import annotations

import os
import types

import pytest

import core_ext
from core_ext.vectors import UNSET_V2_FIELDS

PURE_PYTHON_REQUESTED = os.environ.get("TESSERA_PURE_PYTHON") == "1"

SECRET = b"unit-test-secret-0123456789abcdef"          # 33 bytes
PREVIOUS_SECRET = b"unit-test-previous-secret-0123456789"
ISSUED_AT = 1_700_000_000
NONCE = "0123456789abcdef0123456789abcdef"


def load_or_fail(name: str) -> types.SimpleNamespace:
    """Load an implementation; a missing compiled core fails unless pure Python was requested."""
    try:
        return core_ext.load_implementation(name)
    except ImportError as exc:
        if PURE_PYTHON_REQUESTED:
            pytest.skip(f"compiled core_ext not importable and TESSERA_PURE_PYTHON=1 ({exc})")
        pytest.fail(
            f"compiled core_ext is not importable ({exc}); build it (pip install -e .) "
            "or set TESSERA_PURE_PYTHON=1 to test the pure-Python twin only",
            pytrace=False,
        )


@pytest.fixture(scope="module")
def implementations() -> tuple[types.SimpleNamespace, types.SimpleNamespace]:
    """The compiled core and the pure-Python twin, for the tests that compare them
    (a missing compiled core as :func:`load_or_fail` treats it)."""
    return load_or_fail("cython"), load_or_fail("python")


@pytest.fixture(params=core_ext.IMPLEMENTATIONS)
def impl(request: pytest.FixtureRequest) -> types.SimpleNamespace:
    """One implementation of the core ("cython" or "python")."""
    return load_or_fail(request.param)


def make_order(**changes: object) -> dict[str, object]:
    """A valid futures limit order; keyword arguments replace fields."""
    order: dict[str, object] = {
        "order_id": "ord-1",
        "client_order_id": "cli-1",
        "account": "acct-1",
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
    order.update(changes)
    return order


@pytest.fixture(name="make_order")
def make_order_fixture():
    """The :func:`make_order` factory (test modules take helpers from fixtures, not imports)."""
    return make_order


@pytest.fixture
def order() -> dict[str, object]:
    return make_order()


@pytest.fixture
def keyring(impl: types.SimpleNamespace):
    """Current key "k1" plus previous key "k0"."""
    return impl.KeyRing("k1", SECRET, [("k0", PREVIOUS_SECRET)])
