"""HMAC-SHA256 request signing, as Aster (and Binance) define it.

The signature is the hex HMAC-SHA256, keyed with the API secret, of ``totalParams``:
the query string exactly as sent, ending in ``timestamp`` and ``recvWindow``; the API
key travels in the ``X-MBX-APIKEY`` header. Everything here is pure; the secret never
appears in a repr, a log line or an error message.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import urllib.parse

from .requests import VenueRequest

API_KEY_HEADER = "X-MBX-APIKEY"
DEFAULT_RECV_WINDOW_MS = 5000


class Credentials:
    """An API key and its secret; the repr shows neither."""

    __slots__ = ("api_key", "_secret")

    def __init__(self, api_key: str, secret: str) -> None:
        if not api_key or not secret:
            raise ValueError("an API key and its secret are both required")
        self.api_key = api_key
        self._secret = secret.encode()

    def sign(self, payload: str) -> str:
        return hmac.new(self._secret, payload.encode(), hashlib.sha256).hexdigest()

    def __repr__(self) -> str:
        return "Credentials(api_key=<hidden>, secret=<hidden>)"

    __str__ = __repr__


@dataclasses.dataclass(frozen=True)
class SignedRequest:
    """What goes on the wire: method, path, the full query string, the headers."""

    method: str
    path: str
    query: str
    headers: dict[str, str] = dataclasses.field(repr=False)
    request: VenueRequest = dataclasses.field(repr=False)

    @property
    def target(self) -> str:
        return f"{self.path}?{self.query}" if self.query else self.path


def signature_payload(request: VenueRequest, *, timestamp_ms: int, recv_window_ms: int) -> str:
    """``totalParams`` for a signed request: its parameters, then recvWindow and timestamp."""
    params = [*request.params, ("recvWindow", str(recv_window_ms)), ("timestamp", str(timestamp_ms))]
    return urllib.parse.urlencode(params)


def sign_request(
    request: VenueRequest,
    credentials: Credentials | None,
    *,
    timestamp_ms: int,
    recv_window_ms: int = DEFAULT_RECV_WINDOW_MS,
) -> SignedRequest:
    """Add ``recvWindow``, ``timestamp`` and ``signature`` to a signed request.

    Unsigned (public) requests pass through with their parameters only and no API key.

    Raises
    ------
    ValueError
        A signed request without credentials.
    """
    if not request.signed:
        return SignedRequest(request.method, request.path, request.query_string(), {}, request)
    if credentials is None:
        raise ValueError(f"{request.method} {request.path} must be signed, and there are no credentials")
    payload = signature_payload(request, timestamp_ms=timestamp_ms, recv_window_ms=recv_window_ms)
    query = f"{payload}&signature={credentials.sign(payload)}"
    return SignedRequest(request.method, request.path, query, {API_KEY_HEADER: credentials.api_key}, request)
