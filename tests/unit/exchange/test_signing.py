"""HMAC-SHA256 signing: Aster's published examples, parameter order, and secrets kept out of sight."""

from __future__ import annotations

import urllib.parse

import pytest

from services.exchange.aster.requests import VenueRequest, prepare_cancel_all, prepare_ticker_price
from services.exchange.aster.signing import API_KEY_HEADER, Credentials, sign_request

# The worked examples in Aster's API documentation (futures v1 and spot v1).
FUTURES_KEY = "dbefbc809e3e83c283a984c3a1459732ea7db1360ca80c5c2c8867408d28cc83"
FUTURES_SECRET = "2b5eb11e18796d12d88f13dc27dbbd02c2cc51ff7059765ed9821957d82bb4d9"
SPOT_KEY = "4452d7e2ed4da80b74105e02d06328c71a34488c9fdd60a5a0900d42d584b795"
SPOT_SECRET = "fdde510a2b71fa43a43bff3e3cf7819c8c66df34633d338050f4f59664b3b313"


def test_futures_documentation_example_signs_to_the_published_signature():
    request = VenueRequest(
        "POST",
        "/fapi/v1/order",
        (("symbol", "BTCUSDT"), ("side", "BUY"), ("type", "LIMIT"), ("quantity", "1"), ("price", "9000"),
         ("timeInForce", "GTC")),
        signed=True,
    )

    signed = sign_request(request, Credentials(FUTURES_KEY, FUTURES_SECRET), timestamp_ms=1591702613943)

    assert signed.query == (
        "symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=1&price=9000&timeInForce=GTC&recvWindow=5000"
        "&timestamp=1591702613943&signature=3c661234138461fcc7a7d8746c6558c9842d4e10870d2ecbedf7777cad694af9"
    )
    assert signed.headers == {API_KEY_HEADER: FUTURES_KEY}
    assert (signed.method, signed.path) == ("POST", "/fapi/v1/order")


def test_spot_documentation_example_signs_to_the_published_signature():
    request = VenueRequest(
        "POST",
        "/api/v1/order",
        (("symbol", "BNBUSDT"), ("side", "BUY"), ("type", "LIMIT"), ("timeInForce", "GTC"), ("quantity", "5"),
         ("price", "1.1")),
        signed=True,
    )

    signed = sign_request(request, Credentials(SPOT_KEY, SPOT_SECRET), timestamp_ms=1756187806000)

    assert signed.query.endswith("&signature=e09169bf6c02ec4b29fa1bdc3a967f92c8c6cfcde0551ba1d477b2d3cf4c51b0")


def test_recv_window_and_timestamp_come_last_before_the_signature():
    signed = sign_request(prepare_cancel_all("ETHUSDT"), Credentials("k", "s"), timestamp_ms=123, recv_window_ms=2500)

    names = [name for name, _ in urllib.parse.parse_qsl(signed.query)]
    assert names == ["symbol", "recvWindow", "timestamp", "signature"]


def test_client_order_ids_are_percent_encoded_and_the_signature_covers_the_encoded_form():
    request = VenueRequest("DELETE", "/fapi/v1/order", (("symbol", "BTCUSDT"), ("origClientOrderId", "a:b/c")), True)

    signed = sign_request(request, Credentials("k", "s"), timestamp_ms=1)

    payload, _, signature = signed.query.rpartition("&signature=")
    assert "origClientOrderId=a%3Ab%2Fc" in payload
    assert signature == Credentials("k", "s").sign(payload)


def test_public_requests_are_sent_without_key_or_signature():
    signed = sign_request(prepare_ticker_price("BTCUSDT"), None, timestamp_ms=1)

    assert signed.query == "symbol=BTCUSDT"
    assert signed.headers == {}


def test_a_signed_request_without_credentials_is_refused():
    with pytest.raises(ValueError):
        sign_request(prepare_cancel_all("BTCUSDT"), None, timestamp_ms=1)


def test_credentials_never_show_the_key_or_the_secret():
    credentials = Credentials(FUTURES_KEY, FUTURES_SECRET)
    signed = sign_request(prepare_cancel_all("BTCUSDT"), credentials, timestamp_ms=1)

    for text in (repr(credentials), str(credentials), repr(signed)):
        assert FUTURES_SECRET not in text
        assert FUTURES_KEY not in text
