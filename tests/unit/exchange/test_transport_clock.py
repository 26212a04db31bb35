"""The transport's clock: V3 nonces and V1 timestamps on the venue's time, measured before
the first signed request and again after a ``-1021``.

The HTTP session is a stand-in that answers each request from a script and keeps what
was sent, so the exact nonce and timestamp of every request can be read back; the local
clock is injected (no sleeps).
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from typing import Any, Callable

import pytest

from services.exchange.aster.credentials import HmacCredentials, NonceSource, WalletCredentials
from services.exchange.aster.errors import VenueRejected
from services.exchange.aster.requests import VenueRequest, prepare_open_orders
from services.exchange.aster.transport import AsterTransport

USER = "0x63DD5aCC6b1aa0f563956C0e534DD30B6dcF7C4e"
SIGNER = "0x21cF8Ae13Bb72632562c6Fff438652Ba1a151bb0"
PRIVATE_KEY = "0x4fd0a42218f3eae43a6ce26d22544e986139a01e5b34a62db53757ffca81bae1"


class Clock:
    """Wall time in seconds, set by the test."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Response:
    def __init__(self, status: int, text: str) -> None:
        self.status, self._text, self.headers = status, text, {}

    async def text(self) -> str:
        return self._text

    async def __aenter__(self) -> "Response":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        return None


class Venue:
    """The HTTP session: ``venue_ms()`` is the venue's clock; ``answer`` gives each non-time
    request's (status, body); every request is kept as (method, path, parameters)."""

    closed = False

    def __init__(self, venue_ms: Callable[[], int],
                 answer: Callable[[str, dict[str, str]], tuple[int, str]] | None = None) -> None:
        self.venue_ms = venue_ms
        self.answer = answer or (lambda path, params: (200, "[]"))
        self.sent: list[tuple[str, str, dict[str, str]]] = []

    def request(self, method: str, url: Any, headers: Any = None, data: bytes | None = None) -> Response:
        path = url.path
        params = dict(urllib.parse.parse_qsl(url.query_string + ("&" + data.decode() if data else "")))
        self.sent.append((method, path, params))
        if path.endswith("/time"):
            return Response(200, json.dumps({"serverTime": self.venue_ms()}))
        return Response(*self.answer(path, params))

    async def close(self) -> None:
        return None


def transport(clock: Clock, venue: Venue, credentials: Any) -> AsterTransport:
    sender = AsterTransport(futures_url="https://venue.test", credentials=credentials, clock=clock,
                            retry_backoff=0.0, sleep=lambda seconds: asyncio.sleep(0))
    sender._session_now = lambda: venue  # type: ignore[method-assign]
    return sender


def signed_nonces(venue: Venue) -> list[int]:
    return [int(params["nonce"]) for _, path, params in venue.sent if "nonce" in params]


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_v3_nonces_follow_the_venue_clock_the_transport_measured():
    clock = Clock(1_000.0)
    venue = Venue(lambda: 1_030_000)  # the venue's clock is 30 s ahead of ours
    sender = transport(clock, venue, WalletCredentials(USER, SIGNER, PRIVATE_KEY, nonces=NonceSource()))

    async def scenario() -> None:
        await sender.sync_clock()
        await sender.send(prepare_open_orders("BTCUSDT"))

    run(scenario())

    assert signed_nonces(venue) == [1_030_000_000]  # the venue's time, in microseconds


def test_the_first_signed_request_measures_the_venue_clock_before_it_is_signed():
    clock = Clock(1_000.0)
    venue = Venue(lambda: 1_030_000)
    sender = transport(clock, venue, WalletCredentials(USER, SIGNER, PRIVATE_KEY, nonces=NonceSource()))

    run(sender.send(prepare_open_orders("BTCUSDT")))

    assert [path for _, path, _ in venue.sent] == ["/fapi/v3/time", "/fapi/v3/openOrders"]
    assert signed_nonces(venue) == [1_030_000_000]


def test_a_restarted_exchange_whose_clock_stepped_back_signs_nonces_above_its_last_ones():
    venue_ms = [1_000_000]
    venue = Venue(lambda: venue_ms[0])
    before = transport(Clock(1_000.0), venue, WalletCredentials(USER, SIGNER, PRIVATE_KEY, nonces=NonceSource()))
    run(before.send(prepare_open_orders("BTCUSDT")))
    # A new process (its own nonce source) on a wall clock that stepped back 20 s meanwhile,
    # half a second later by the venue's clock.
    venue_ms[0] = 1_000_500
    after = transport(Clock(980.5), venue, WalletCredentials(USER, SIGNER, PRIVATE_KEY, nonces=NonceSource()))
    run(after.send(prepare_open_orders("BTCUSDT")))

    first, second = signed_nonces(venue)
    assert second > first
    assert second == 1_000_500_000

def test_credentials_of_one_user_loaded_again_go_on_from_its_last_nonce():
    clock = Clock(1_000.0)
    venue = Venue(lambda: 1_000_000)
    sender = transport(clock, venue, None)
    user = "0x" + "42" * 20  # a user no other test signs for: its nonces start here
    signer_key = "0x" + "07" * 32
    from eth_account import Account

    signer = Account.from_key(signer_key).address
    loaded = WalletCredentials(user, signer, signer_key)
    run(sender.send(prepare_open_orders("BTCUSDT"), loaded))
    clock.now = 997.0  # the wall clock steps back 3 s; the measured offset does not know it yet
    reloaded = WalletCredentials(user, signer, signer_key)  # the venue accounts registry reloaded
    run(sender.send(prepare_open_orders("BTCUSDT"), reloaded))

    first, second = signed_nonces(venue)
    assert second == first + 1

def test_an_order_refused_for_its_timestamp_measures_the_clock_again_and_is_not_resent():
    clock = Clock(1_000.0)
    venue_ms = [1_000_000]
    refusals = [1]

    def answer(path: str, params: dict[str, str]) -> tuple[int, str]:
        if path.endswith("/order") and refusals:
            refusals.pop()
            return 400, json.dumps({"code": -1021, "msg": "Timestamp for this request is outside of the recvWindow."})
        return 200, json.dumps({"orderId": 1, "status": "NEW"})

    venue = Venue(lambda: venue_ms[0], answer)
    sender = transport(clock, venue, HmacCredentials("key", "secret"))
    order = VenueRequest("POST", "/fapi/v1/order", (("symbol", "BTCUSDT"), ("newClientOrderId", "c1")),
                         signed=True, places_order=True)
    run(sender.sync_clock())
    venue_ms[0] = 1_060_000  # the venue's clock is now a minute ahead of ours

    with pytest.raises(VenueRejected) as refused:
        run(sender.send(order))
    run(sender.send(order))

    assert refused.value.reason == "VENUE_TIMESTAMP_OUTSIDE_RECV_WINDOW"
    sent = [(method, path, params.get("timestamp")) for method, path, params in venue.sent]
    assert sent == [
        ("GET", "/fapi/v1/time", None),
        ("POST", "/fapi/v1/order", "1000000"),
        ("GET", "/fapi/v1/time", None),  # measured again at once; the refused order is not resent
        ("POST", "/fapi/v1/order", "1060000"),
    ]

